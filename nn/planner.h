// The memory planner: liveness over the whole forward+backward schedule, in-place reuse, two placement
// heuristics (best-fit sweep with coalescing, greedy-by-size over interval conflicts) keeping the smaller
// peak, overlap verification, a named report, and a budget with degradation (DESIGN.md, Memory planner).
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "nn/graph.h"

namespace ctdet {

struct CudaContext;

// One block the planner places: live from node `first` to node `last`, inclusive.
struct BufferReq {
  size_t bytes = 0;
  int first = 0;
  int last = 0;
};

struct Placement {
  std::vector<size_t> offset;  // per buffer
  size_t peak = 0;             // bytes from 0 to the end of the highest buffer
};

size_t align_up(size_t x, size_t a);
// Sweep in schedule order with a best-fit free list whose neighbours coalesce.
Placement place_best_fit_sweep(const std::vector<BufferReq>& bufs, size_t alignment);
// Largest first; each at the lowest offset that fits between the buffers it overlaps in time.
Placement place_greedy_by_size(const std::vector<BufferReq>& bufs, size_t alignment);
// The same best-fit placement in other orders (the planner tries them all and keeps the smallest peak):
//   Area: bytes x lifetime, largest first;  Lifetime: longest-lived first (then larger);
//   SizeEarlyFirst: largest first, ties by earlier first use.
enum class GreedyOrder { Size, Area, Lifetime, SizeEarlyFirst };
Placement place_greedy(const std::vector<BufferReq>& bufs, size_t alignment, GreedyOrder order);
const char* greedy_order_name(GreedyOrder order);
// The largest sum of (aligned) live bytes at any node: no placement can beat it. *at_node gets that node.
size_t live_lower_bound(const std::vector<BufferReq>& bufs, size_t alignment, int* at_node = nullptr);
// Empty when no two buffers live at the same time overlap in memory; otherwise a description of one pair.
std::string find_overlap(const std::vector<BufferReq>& bufs, const std::vector<size_t>& offset);

struct PlanOptions {
  Device device = Device::CPU;
  CudaContext* cuda = nullptr;        // for cuDNN workspace queries (may be null)
  size_t workspace_cap = size_t(256) << 20;
  size_t alignment = 256;
  bool inplace = true;
  bool verify = true;                 // run the overlap check (cheap; on by default)
  // CUDA plans: while the busiest node's own workspace is over 1 MiB, cap that node's workspace at an eighth,
  // re-plan and go on with the next busiest (at most 16 rounds); the plan with the smallest arena seen is returned.
  // A trimmed convolution runs the best cuDNN algorithm that fits. CPU workspaces (im2col) cannot shrink, so CPU
  // plans never change.
  bool trim_peak_workspace = true;
  // plan_with_budget only: forward-node segments it may checkpoint (apply_segment_recompute) as its last resort,
  // e.g. backbone_recompute_segments of a detector's training graph. Empty: that step is skipped.
  std::vector<std::pair<int, int>> recompute_segments;
};

struct MemoryPlan {
  // Per value: byte offset into the arena, or -1 when the value is not planned (parameters, their gradients).
  std::vector<int64_t> value_offset;
  std::vector<int> value_buffer;       // buffer index per planned value (-1 otherwise)
  std::vector<int> value_last_use;     // last node reading or writing the value (-1 when none)
  std::vector<int64_t> node_ws_offset; // per node: workspace offset (-1 when none)
  std::vector<size_t> node_ws_bytes;
  std::vector<BufferReq> buffers;
  std::vector<std::string> buffer_names;
  std::vector<size_t> buffer_offset;

  size_t arena_bytes = 0;     // the planned peak
  size_t no_reuse_bytes = 0;  // every buffer its own memory
  size_t lower_bound = 0;     // largest live sum at a node
  int lower_bound_node = -1;
  std::string heuristic;      // which placement won
  size_t sweep_peak = 0, greedy_peak = 0;
  int inplace_reuses = 0;
  int trimmed_workspaces = 0;  // nodes whose workspace trim_peak_workspace capped
  size_t workspace_cap = 0;
  size_t max_workspace = 0;
  size_t param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0;
  size_t arena_grad_bytes = 0;  // parameter gradients planned in the arena (param_gradients_to_arena), in arena_bytes

  size_t total_bytes() const { return arena_bytes + param_bytes + grad_bytes + optimizer_bytes; }
  // The human-readable report: totals, and the largest values live at the peak node by name.
  std::string report(const Graph& g, int top = 10) const;
};

MemoryPlan plan_memory(const Graph& g, const PlanOptions& opt);

// Plans within `budget` bytes (parameters, gradients, optimizer state and arena together), degrading in
// DESIGN.md's order: a smaller workspace cap, then recomputation of cheap activations in backward, then (when
// opt.recompute_segments names some) recomputation of those whole segments, with the workspace cap reset.
// If nothing fits, throws ctdet::Error before anything runs, with the report of the smallest plan found.
// The graph may be rewritten (recomputation nodes appended to the backward part).
MemoryPlan plan_with_budget(Graph& g, PlanOptions opt, size_t budget, std::string* log = nullptr);

// Rewrites backward readers of cheap forward activations (relu, scale, add...) to read a recomputed copy
// made just before the first backward use. Returns the number of recomputed values.
int apply_recompute(Graph& g);

// Gradient checkpointing over segments of forward nodes ([begin, end) node index ranges, after backward()).
// Of the values a segment produces, only those read by forward nodes outside it (or by the caller) are kept
// for backward; the others that backward reads are recomputed by copies of their producer nodes, inserted once
// per segment just before the first backward node that reads one of them. Costs one more forward pass of the
// segments; on the CPU the recomputed values, and so the gradients, are bit-identical. Returns the number of
// nodes copied. Only for segments of deterministic, side-effect-free forward ops (every graph op is).
int apply_segment_recompute(Graph& g, const std::vector<std::pair<int, int>>& segments);

// "1.50 GiB" style formatting.
std::string format_bytes(size_t b);
// Parses "8GiB", "512MiB", "3.5G", "1000000" into bytes; throws naming the text on bad input.
size_t parse_bytes(const std::string& s);

// Plans cached per key (shape bucket, batch, train/infer): plan once, replay.
class PlanCache {
 public:
  const MemoryPlan* find(const std::string& key) const;
  const MemoryPlan& put(const std::string& key, MemoryPlan p);
  size_t size() const { return plans_.size(); }

 private:
  std::map<std::string, MemoryPlan> plans_;
};

}  // namespace ctdet
