// Recomputation in backward: trade compute for memory (DESIGN.md, degrade order step 2).
// apply_recompute: a forward value made by a cheap op (relu, scale, add, frozen-BN affine...) that backward
// reads is recomputed, with its chain of cheap producers, just before its first backward reader, from the
// nearest non-cheap ancestors. Whether it pays off is decided by re-planning (plan_with_budget).
// apply_segment_recompute: whole segments of forward nodes (gradient checkpointing): only the values a segment
// hands to later forward nodes are kept; what backward reads inside it is recomputed, once per segment, just
// before backward first needs it.
#include <algorithm>
#include <functional>
#include <map>

#include "nn/op_registry.h"
#include "nn/planner.h"

namespace ctdet {
namespace {

// The new schedule: `nodes` (the old one, inputs possibly rewired) with insert_before[j] run just before node j.
void splice_schedule(Graph& g, std::vector<Node> nodes, std::map<int, std::vector<Node>>& insert_before) {
  size_t extra = 0;
  for (const auto& [j, v] : insert_before) extra += v.size();
  std::vector<Node> out;
  out.reserve(nodes.size() + extra);
  for (int j = 0; j < int(nodes.size()); ++j) {
    auto it = insert_before.find(j);
    if (it != insert_before.end()) out.insert(out.end(), it->second.begin(), it->second.end());
    out.push_back(std::move(nodes[size_t(j)]));
  }
  g.set_nodes(std::move(out));
}

}  // namespace

int apply_recompute(Graph& g) {
  const int nfwd = g.num_forward_nodes();
  const int n = g.num_nodes();
  std::vector<int> producer(size_t(g.num_values()), -1);
  for (int i = 0; i < nfwd; ++i)
    for (ValueId v : g.node(i).outputs) producer[size_t(v)] = i;
  auto cheap_value = [&](ValueId v) {
    int p = producer[size_t(v)];
    if (p < 0 || g.value(v).kind != ValueKind::Activation || g.value(v).keep) return false;
    const Node& nd = g.node(p);
    return ops().get(nd.op).cheap && nd.outputs.size() == 1 && nd.name.rfind("recompute", 0) != 0;
  };
  std::map<int, std::vector<Node>> insert_before;  // backward node index -> clones to run before it
  std::vector<Node> nodes = g.nodes();
  int count = 0;
  for (ValueId v = 0; v < ValueId(producer.size()); ++v) {
    if (!cheap_value(v)) continue;
    int first_bwd = -1;
    for (int j = nfwd; j < n && first_bwd < 0; ++j)
      for (ValueId u : nodes[size_t(j)].inputs)
        if (u == v) first_bwd = j;
    if (first_bwd < 0) continue;
    std::map<ValueId, ValueId> memo;
    std::vector<Node> chain;
    std::function<ValueId(ValueId)> clone = [&](ValueId x) -> ValueId {
      if (!cheap_value(x)) return x;
      auto it = memo.find(x);
      if (it != memo.end()) return it->second;
      Node c = g.node(producer[size_t(x)]);
      for (auto& in : c.inputs) in = clone(in);
      const Value& xv = g.value(x);
      ValueId nx = g.new_value(str("recompute", count, "/", xv.name), xv.shape, xv.dtype, ValueKind::Activation);
      c.outputs = {nx};
      c.accumulate = {0};
      c.name = str("recompute", count, "/", c.name);
      c.is_backward = true;
      chain.push_back(c);
      memo[x] = nx;
      return nx;
    };
    ValueId nv = clone(v);
    for (int j = first_bwd; j < n; ++j)
      for (auto& u : nodes[size_t(j)].inputs)
        if (u == v) u = nv;
    auto& slot = insert_before[first_bwd];
    slot.insert(slot.end(), chain.begin(), chain.end());
    ++count;
  }
  if (count) splice_schedule(g, std::move(nodes), insert_before);
  return count;
}

int apply_segment_recompute(Graph& g, const std::vector<std::pair<int, int>>& segments) {
  const int nfwd = g.num_forward_nodes();
  const int n = g.num_nodes();
  std::vector<int> producer(size_t(g.num_values()), -1), seg_of(size_t(nfwd), -1);
  for (int i = 0; i < nfwd; ++i)
    for (ValueId v : g.node(i).outputs) producer[size_t(v)] = i;
  for (size_t s = 0; s < segments.size(); ++s) {
    const auto [b, e] = segments[s];
    CTDET_CHECK(0 <= b && b <= e && e <= nfwd, "apply_segment_recompute: segment ", s, " [", b, ", ", e,
                ") is not inside the ", nfwd, " forward nodes");
    for (int i = b; i < e; ++i) {
      CTDET_CHECK(seg_of[size_t(i)] < 0, "apply_segment_recompute: forward node ", i, " ('", g.node(i).name,
                  "') is in two segments");
      seg_of[size_t(i)] = int(s);
    }
  }
  // Per value: read by a forward node of another segment (or none), and the first backward node reading it.
  std::vector<char> read_outside(size_t(g.num_values()), 0);
  std::vector<int> first_bwd(size_t(g.num_values()), -1);
  for (int j = 0; j < n; ++j)
    for (ValueId u : g.node(j).inputs) {
      const int p = producer[size_t(u)];
      if (p < 0) continue;
      if (j < nfwd) {
        if (seg_of[size_t(j)] != seg_of[size_t(p)] || seg_of[size_t(j)] < 0) read_outside[size_t(u)] = 1;
      } else if (first_bwd[size_t(u)] < 0) {
        first_bwd[size_t(u)] = j;
      }
    }
  // A value of a segment is recomputed when backward reads it and it is not kept anyway: not handed to a forward
  // node outside the segment, not read by the caller, an activation.
  auto recomputed = [&](ValueId v, int s) {
    const int p = producer[size_t(v)];
    const Value& val = g.value(v);
    return p >= 0 && seg_of[size_t(p)] == s && !read_outside[size_t(v)] && !val.keep &&
           val.kind == ValueKind::Activation;
  };
  std::vector<Node> nodes = g.nodes();
  std::map<int, std::vector<Node>> insert_before;
  int count = 0;
  for (int s = 0; s < int(segments.size()); ++s) {
    std::vector<ValueId> targets;
    int first = -1;
    for (int i = segments[size_t(s)].first; i < segments[size_t(s)].second; ++i)
      for (ValueId v : g.node(i).outputs)
        if (recomputed(v, s) && first_bwd[size_t(v)] >= 0) {
          targets.push_back(v);
          first = first < 0 ? first_bwd[size_t(v)] : std::min(first, first_bwd[size_t(v)]);
        }
    if (targets.empty()) continue;
    // Clone the producers each target needs, in forward order, reading kept values where they exist.
    std::map<ValueId, ValueId> memo;
    std::vector<int> cloned_nodes;
    std::function<ValueId(ValueId)> clone = [&](ValueId x) -> ValueId {
      if (!recomputed(x, s)) return x;
      auto it = memo.find(x);
      if (it != memo.end()) return it->second;
      const int p = producer[size_t(x)];
      const Node& src = g.node(p);
      for (char a : src.accumulate)
        CTDET_CHECK(!a, "apply_segment_recompute: forward node '", src.name, "' accumulates into its output");
      Node c = src;
      for (auto& in : c.inputs) in = clone(in);
      for (auto& out : c.outputs) {
        const Value ov = g.value(out);  // copy: new_value may reallocate the value table
        const ValueId nv = g.new_value(str("recompute/", ov.name), ov.shape, ov.dtype, ValueKind::Activation);
        memo[out] = nv;
        out = nv;
      }
      c.name = str("recompute/", src.name);
      c.is_backward = true;
      cloned_nodes.push_back(p);
      insert_before[first].push_back(std::move(c));
      return memo.at(x);
    };
    for (ValueId v : targets) clone(v);
    // clone() appends producers after their inputs (depth first), so the inserted list is in a valid order.
    for (int j = first; j < n; ++j)
      for (auto& u : nodes[size_t(j)].inputs) {
        auto it = memo.find(u);
        if (it != memo.end()) u = it->second;
      }
    count += int(cloned_nodes.size());
  }
  if (count) splice_schedule(g, std::move(nodes), insert_before);
  return count;
}

}  // namespace ctdet
