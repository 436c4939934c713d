#include "nn/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <set>

#include "nn/op_registry.h"

namespace ctdet {

size_t align_up(size_t x, size_t a) { return a ? (x + a - 1) / a * a : x; }

std::string format_bytes(size_t b) {
  char buf[64];
  if (b >= (size_t(1) << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1 << 30));
  else if (b >= (size_t(1) << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / double(1 << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", double(b) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%zu B", b);
  return buf;
}

size_t parse_bytes(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  CTDET_CHECK(i > 0, "cannot read '", s, "' as a size (expected e.g. 8GiB, 512MiB, 3.5G)");
  double v = std::stod(s.substr(0, i));
  std::string unit = s.substr(i);
  for (auto& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit == "" || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kib" || unit == "kb") mul = 1024.0;
  else if (unit == "m" || unit == "mib" || unit == "mb") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "gib" || unit == "gb") mul = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tib" || unit == "tb") mul = 1024.0 * 1024 * 1024 * 1024;
  else CTDET_FAIL("cannot read '", s, "' as a size: unknown unit '", unit, "' (use B, KiB, MiB, GiB)");
  CTDET_CHECK(std::isfinite(v) && v >= 0, "cannot read '", s, "' as a size");
  return size_t(v * mul);
}

// ---- placement heuristics ------------------------------------------------------------------------

Placement place_best_fit_sweep(const std::vector<BufferReq>& bufs, size_t alignment) {
  Placement p;
  p.offset.assign(bufs.size(), 0);
  if (bufs.empty()) return p;
  int max_node = 0;
  for (auto& b : bufs) max_node = std::max(max_node, b.last);
  std::vector<std::vector<int>> starts(size_t(max_node) + 1), ends(size_t(max_node) + 1);
  for (size_t i = 0; i < bufs.size(); ++i) {
    starts[size_t(bufs[i].first)].push_back(int(i));
    ends[size_t(bufs[i].last)].push_back(int(i));
  }
  std::map<size_t, size_t> free_blocks;  // offset -> size, coalesced
  size_t top = 0;                        // end of the used region
  auto release = [&](size_t off, size_t size) {
    auto it = free_blocks.emplace(off, size).first;
    if (it != free_blocks.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_blocks.erase(it);
        it = prev;
      }
    }
    auto next = std::next(it);
    if (next != free_blocks.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_blocks.erase(next);
    }
    if (it->first + it->second == top) {  // give the tail back to the top
      top = it->first;
      free_blocks.erase(it);
    }
  };
  for (int node = 0; node <= max_node; ++node) {
    auto& s = starts[size_t(node)];
    std::sort(s.begin(), s.end(), [&](int a, int b) { return bufs[size_t(a)].bytes > bufs[size_t(b)].bytes; });
    for (int bi : s) {
      size_t need = align_up(bufs[size_t(bi)].bytes, alignment);
      auto best = free_blocks.end();
      for (auto it = free_blocks.begin(); it != free_blocks.end(); ++it)
        if (it->second >= need && (best == free_blocks.end() || it->second < best->second)) best = it;
      if (best != free_blocks.end()) {
        size_t off = best->first, size = best->second;
        free_blocks.erase(best);
        if (size > need) free_blocks.emplace(off + need, size - need);
        p.offset[size_t(bi)] = off;
      } else {
        p.offset[size_t(bi)] = top;
        top += need;
      }
      p.peak = std::max(p.peak, p.offset[size_t(bi)] + need);
    }
    for (int bi : ends[size_t(node)]) release(p.offset[size_t(bi)], align_up(bufs[size_t(bi)].bytes, alignment));
  }
  return p;
}

const char* greedy_order_name(GreedyOrder order) {
  switch (order) {
    case GreedyOrder::Size: return "greedy by size";
    case GreedyOrder::Area: return "greedy by size x lifetime";
    case GreedyOrder::Lifetime: return "greedy by lifetime";
    case GreedyOrder::SizeEarlyFirst: return "greedy by size, earlier first";
  }
  return "?";
}

Placement place_greedy_by_size(const std::vector<BufferReq>& bufs, size_t alignment) {
  return place_greedy(bufs, alignment, GreedyOrder::Size);
}

Placement place_greedy(const std::vector<BufferReq>& bufs, size_t alignment, GreedyOrder how) {
  Placement p;
  p.offset.assign(bufs.size(), 0);
  std::vector<int> order(bufs.size());
  std::iota(order.begin(), order.end(), 0);
  auto life = [&](int i) { return int64_t(bufs[size_t(i)].last - bufs[size_t(i)].first) + 1; };
  auto size = [&](int i) { return bufs[size_t(i)].bytes; };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    switch (how) {
      case GreedyOrder::Area: {
        const double aa = double(size(a)) * double(life(a)), ab = double(size(b)) * double(life(b));
        if (aa != ab) return aa > ab;
        return size(a) > size(b);
      }
      case GreedyOrder::Lifetime:
        if (life(a) != life(b)) return life(a) > life(b);
        return size(a) > size(b);
      case GreedyOrder::SizeEarlyFirst:
        if (size(a) != size(b)) return size(a) > size(b);
        return bufs[size_t(a)].first < bufs[size_t(b)].first;
      case GreedyOrder::Size:
        break;
    }
    if (size(a) != size(b)) return size(a) > size(b);
    return life(a) > life(b);
  });
  std::vector<int> placed;
  std::vector<std::pair<size_t, size_t>> conflicts;  // (offset, end)
  for (int bi : order) {
    const BufferReq& b = bufs[size_t(bi)];
    size_t need = align_up(b.bytes, alignment);
    conflicts.clear();
    for (int pj : placed) {
      const BufferReq& o = bufs[size_t(pj)];
      if (o.first <= b.last && b.first <= o.last)
        conflicts.emplace_back(p.offset[size_t(pj)], p.offset[size_t(pj)] + align_up(o.bytes, alignment));
    }
    std::sort(conflicts.begin(), conflicts.end());
    // Best fit among the gaps; the open space above everything otherwise.
    size_t prev_end = 0, best_off = SIZE_MAX, best_gap = SIZE_MAX;
    for (auto& [off, end] : conflicts) {
      if (off > prev_end && off - prev_end >= need && off - prev_end < best_gap) {
        best_gap = off - prev_end;
        best_off = prev_end;
      }
      prev_end = std::max(prev_end, end);
    }
    size_t off = best_off != SIZE_MAX ? best_off : prev_end;
    p.offset[size_t(bi)] = off;
    p.peak = std::max(p.peak, off + need);
    placed.push_back(bi);
  }
  return p;
}

size_t live_lower_bound(const std::vector<BufferReq>& bufs, size_t alignment, int* at_node) {
  int max_node = 0;
  for (auto& b : bufs) max_node = std::max(max_node, b.last);
  std::vector<long long> diff(size_t(max_node) + 2, 0);
  for (auto& b : bufs) {
    diff[size_t(b.first)] += (long long)align_up(b.bytes, alignment);
    diff[size_t(b.last) + 1] -= (long long)align_up(b.bytes, alignment);
  }
  long long cur = 0, best = 0;
  int best_node = bufs.empty() ? -1 : 0;
  for (int i = 0; i <= max_node; ++i) {
    cur += diff[size_t(i)];
    if (cur > best) {
      best = cur;
      best_node = i;
    }
  }
  if (at_node) *at_node = best_node;
  return size_t(best);
}

std::string find_overlap(const std::vector<BufferReq>& bufs, const std::vector<size_t>& offset) {
  // Sweep over nodes keeping the live set ordered by offset; a new buffer must not intersect its neighbours.
  std::vector<int> order(bufs.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return bufs[size_t(a)].first < bufs[size_t(b)].first; });
  for (size_t i = 0; i < order.size(); ++i) {
    const BufferReq& a = bufs[size_t(order[i])];
    size_t a0 = offset[size_t(order[i])], a1 = a0 + a.bytes;
    for (size_t j = i + 1; j < order.size() && bufs[size_t(order[j])].first <= a.last; ++j) {
      const BufferReq& b = bufs[size_t(order[j])];
      size_t b0 = offset[size_t(order[j])], b1 = b0 + b.bytes;
      if (a.bytes && b.bytes && a0 < b1 && b0 < a1)
        return str("buffers ", order[i], " [", a0, ",", a1, ") live ", a.first, "..", a.last, " and ", order[j], " [",
                   b0, ",", b1, ") live ", b.first, "..", b.last, " overlap");
    }
  }
  return {};
}

// ---- planning a graph ----------------------------------------------------------------------------

static bool planned_kind(ValueKind k) {
  return k == ValueKind::Input || k == ValueKind::Activation || k == ValueKind::Gradient ||
         k == ValueKind::ArenaParamGradient;
}

namespace {
MemoryPlan plan_once(const Graph& g, const PlanOptions& opt, const std::map<int, size_t>& node_cap);
}  // namespace

MemoryPlan plan_memory(const Graph& g, const PlanOptions& opt) {
  std::map<int, size_t> node_cap;
  MemoryPlan best = plan_once(g, opt, node_cap);
  if (!opt.trim_peak_workspace || opt.device != Device::CUDA) return best;
  // Trim the busiest node's workspace, re-plan, and go on with the next busiest (neighbouring nodes, e.g. a
  // convolution's data and filter gradients, are often almost as busy, so one trim alone rarely lowers the arena);
  // keep the smallest arena seen, the earliest one on ties.
  MemoryPlan cur = best;
  for (int round = 0; round < 16; ++round) {
    const int at = cur.lower_bound_node;
    if (at < 0 || cur.node_ws_bytes[size_t(at)] <= (size_t(1) << 20) || node_cap.count(at)) break;
    node_cap[at] = align_up(cur.node_ws_bytes[size_t(at)] / 8, opt.alignment);
    cur = plan_once(g, opt, node_cap);
    if (cur.arena_bytes < best.arena_bytes) best = cur;
  }
  return best;
}

namespace {
MemoryPlan plan_once(const Graph& g, const PlanOptions& opt, const std::map<int, size_t>& node_cap) {
  const int n_nodes = g.num_nodes();
  const int n_vals = g.num_values();
  const int last_node = std::max(0, n_nodes - 1);
  MemoryPlan p;
  p.workspace_cap = opt.workspace_cap;
  std::vector<int> first(size_t(n_vals), -1), last(size_t(n_vals), -1), first_writer(size_t(n_vals), -1);
  for (int i = 0; i < n_nodes; ++i) {
    const Node& nd = g.node(i);
    for (ValueId v : nd.inputs) {
      if (first[size_t(v)] < 0) first[size_t(v)] = i;
      last[size_t(v)] = std::max(last[size_t(v)], i);
    }
    for (ValueId v : nd.outputs) {
      if (first[size_t(v)] < 0) first[size_t(v)] = i;
      if (first_writer[size_t(v)] < 0) first_writer[size_t(v)] = i;
      last[size_t(v)] = std::max(last[size_t(v)], i);
    }
  }
  for (ValueId v = 0; v < n_vals; ++v) {
    const Value& x = g.value(v);
    if (x.kind == ValueKind::Input) {
      first[size_t(v)] = 0;
      if (last[size_t(v)] < 0) last[size_t(v)] = 0;
    }
    if (x.keep && planned_kind(x.kind)) {
      if (first[size_t(v)] < 0) first[size_t(v)] = 0;
      last[size_t(v)] = last_node;
    }
    if (x.kind == ValueKind::Param) p.param_bytes += x.bytes();
    if (x.kind == ValueKind::ParamGradient) p.grad_bytes += x.bytes();
    if (x.kind == ValueKind::ArenaParamGradient) p.arena_grad_bytes += x.bytes();
  }
  p.optimizer_bytes = p.grad_bytes + p.arena_grad_bytes;  // SGD momentum: one slot per trained parameter
  p.value_last_use = last;

  // One buffer per planned value, then in-place merges.
  p.value_buffer.assign(size_t(n_vals), -1);
  for (ValueId v = 0; v < n_vals; ++v) {
    const Value& x = g.value(v);
    if (!planned_kind(x.kind) || first[size_t(v)] < 0) continue;
    p.value_buffer[size_t(v)] = int(p.buffers.size());
    p.buffers.push_back({x.bytes(), first[size_t(v)], last[size_t(v)]});
    p.buffer_names.push_back(x.name);
  }
  if (opt.inplace) {
    for (int i = 0; i < n_nodes; ++i) {
      const Node& nd = g.node(i);
      const OpDef& def = ops().get(nd.op);
      if (!def.inplace || nd.inputs.empty() || nd.outputs.empty()) continue;
      ValueId in = nd.inputs[0], out = nd.outputs[0];
      const Value &xi = g.value(in), &xo = g.value(out);
      if (xi.kind == ValueKind::Input || !planned_kind(xi.kind) || !planned_kind(xo.kind) || xi.keep) continue;
      if (first_writer[size_t(out)] != i || nd.accumulate[0]) continue;
      if (xi.bytes() != xo.bytes()) continue;
      int bi = p.value_buffer[size_t(in)], bo = p.value_buffer[size_t(out)];
      if (bi < 0 || bo < 0 || bi == bo || p.buffers[size_t(bi)].last != i) continue;
      bool other_input_alias = false;  // another input sharing the output buffer would be clobbered
      for (size_t k = 1; k < nd.inputs.size(); ++k)
        if (nd.inputs[k] != in && p.value_buffer[size_t(nd.inputs[k])] == bi) other_input_alias = true;
      if (other_input_alias) continue;
      // Merge the output's buffer into the input's.
      p.buffers[size_t(bi)].last = std::max(p.buffers[size_t(bi)].last, p.buffers[size_t(bo)].last);
      p.buffer_names[size_t(bi)] += " = " + xo.name;
      p.buffers[size_t(bo)].bytes = 0;  // retired
      for (auto& b : p.value_buffer)
        if (b == bo) b = bi;
      ++p.inplace_reuses;
    }
  }
  // Workspaces: one buffer per node that needs scratch, live for that node only.
  p.node_ws_offset.assign(size_t(n_nodes), -1);
  p.node_ws_bytes.assign(size_t(n_nodes), 0);
  std::vector<int> ws_buffer(size_t(n_nodes), -1);
  for (int i = 0; i < n_nodes; ++i) {
    const OpDef& def = ops().get(g.node(i).op);
    if (!def.workspace) continue;
    auto cap_it = node_cap.find(i);
    const size_t cap = cap_it == node_cap.end() ? opt.workspace_cap : std::min(opt.workspace_cap, cap_it->second);
    size_t ws = def.workspace(g, g.node(i), opt.device, cap);
    if (cap < opt.workspace_cap && ws) ++p.trimmed_workspaces;
    if (!ws) continue;
    p.node_ws_bytes[size_t(i)] = ws;
    p.max_workspace = std::max(p.max_workspace, ws);
    ws_buffer[size_t(i)] = int(p.buffers.size());
    p.buffers.push_back({ws, i, i});
    p.buffer_names.push_back("workspace/" + g.node(i).name);
  }

  for (auto& b : p.buffers) p.no_reuse_bytes += align_up(b.bytes, opt.alignment);
  p.lower_bound = live_lower_bound(p.buffers, opt.alignment, &p.lower_bound_node);
  Placement a = place_best_fit_sweep(p.buffers, opt.alignment);
  Placement b;
  const char* b_name = "";
  for (GreedyOrder o : {GreedyOrder::Size, GreedyOrder::Area, GreedyOrder::Lifetime, GreedyOrder::SizeEarlyFirst}) {
    Placement t = place_greedy(p.buffers, opt.alignment, o);
    if (b_name[0] == 0 || t.peak < b.peak) {
      b = std::move(t);
      b_name = greedy_order_name(o);
    }
  }
  p.sweep_peak = a.peak;
  p.greedy_peak = b.peak;
  const Placement& best = a.peak <= b.peak ? a : b;
  p.heuristic = a.peak <= b.peak ? "best-fit sweep" : b_name;
  p.arena_bytes = best.peak;
  p.buffer_offset = best.offset;
  if (opt.verify) {
    std::string bad = find_overlap(p.buffers, p.buffer_offset);
    CTDET_CHECK(bad.empty(), "memory planner produced overlapping buffers: ", bad);
  }
  p.value_offset.assign(size_t(n_vals), -1);
  for (ValueId v = 0; v < n_vals; ++v)
    if (p.value_buffer[size_t(v)] >= 0) p.value_offset[size_t(v)] = int64_t(p.buffer_offset[size_t(p.value_buffer[size_t(v)])]);
  for (int i = 0; i < n_nodes; ++i)
    if (ws_buffer[size_t(i)] >= 0) p.node_ws_offset[size_t(i)] = int64_t(p.buffer_offset[size_t(ws_buffer[size_t(i)])]);
  return p;
}
}  // namespace

std::string MemoryPlan::report(const Graph& g, int top) const {
  std::string s;
  auto line = [&](const std::string& k, const std::string& v) { s += str("  ", k, std::string(k.size() < 34 ? 34 - k.size() : 2, ' '), v, "\n"); };
  s += "memory plan\n";
  line("parameters", format_bytes(param_bytes));
  if (arena_grad_bytes)
    line("parameter gradients", str(format_bytes(arena_grad_bytes), " in the arena (each from its first write in "
                                    "backward to the update)"));
  else
    line("parameter gradients", format_bytes(grad_bytes));
  line("optimizer state (momentum)", format_bytes(optimizer_bytes));
  line("activations + workspace (arena)", str(format_bytes(arena_bytes), "  [", heuristic, "; sweep ",
                                             format_bytes(sweep_peak), ", greedy ", format_bytes(greedy_peak), "]"));
  line("  lower bound (live at a node)", str(format_bytes(lower_bound), lower_bound ? str("  (peak/bound ",
       double(arena_bytes) / double(lower_bound)).substr(0, 22) + ")" : std::string()));
  line("  no-reuse sum", str(format_bytes(no_reuse_bytes), no_reuse_bytes ? str("  (saved ",
       int(100.0 - 100.0 * double(arena_bytes) / double(no_reuse_bytes)), "%)") : std::string()));
  line("  largest workspace", str(format_bytes(max_workspace), " (cap ", format_bytes(workspace_cap), ")",
                                   trimmed_workspaces ? str(", ", trimmed_workspaces, " trimmed at the peak") : ""));
  line("  in-place reuses", std::to_string(inplace_reuses));
  line("total", format_bytes(total_bytes()));
  if (lower_bound_node >= 0 && lower_bound_node < g.num_nodes()) {
    s += str("  largest live at node ", lower_bound_node, " '", g.node(lower_bound_node).name, "':\n");
    std::vector<int> live;
    for (size_t b = 0; b < buffers.size(); ++b)
      if (buffers[b].bytes && buffers[b].first <= lower_bound_node && lower_bound_node <= buffers[b].last)
        live.push_back(int(b));
    std::sort(live.begin(), live.end(), [&](int a, int b) { return buffers[size_t(a)].bytes > buffers[size_t(b)].bytes; });
    for (size_t k = 0; k < live.size() && int(k) < top; ++k)
      s += str("    ", format_bytes(buffers[size_t(live[k])].bytes), std::string(12 - std::min<size_t>(11, format_bytes(buffers[size_t(live[k])].bytes).size()), ' '),
               buffer_names[size_t(live[k])].substr(0, 100), "\n");
  }
  return s;
}

MemoryPlan plan_with_budget(Graph& g, PlanOptions opt, size_t budget, std::string* log) {
  std::vector<size_t> caps = {opt.workspace_cap};
  for (size_t c : {size_t(64) << 20, size_t(16) << 20, size_t(4) << 20, size_t(0)})
    if (c < opt.workspace_cap) caps.push_back(c);
  MemoryPlan best;
  bool have = false;
  auto consider = [&](MemoryPlan p, const std::string& what) {
    if (log) *log += str("plan (", what, "): total ", format_bytes(p.total_bytes()), "\n");
    if (!have || p.total_bytes() < best.total_bytes()) {
      best = std::move(p);
      have = true;
    }
    return best.total_bytes() <= budget;
  };
  for (size_t cap : caps) {
    opt.workspace_cap = cap;
    if (consider(plan_memory(g, opt), str("workspace cap ", format_bytes(cap)))) return best;
  }
  Graph unchanged;
  if (!opt.recompute_segments.empty()) unchanged = g;
  int n = apply_recompute(g);
  if (n > 0 && consider(plan_memory(g, opt), str("recompute ", n, " cheap activations, workspace cap ",
                                                  format_bytes(opt.workspace_cap))))
    return best;
  if (!opt.recompute_segments.empty()) {
    // On the graph as it came: the cheap clones would read segment values and be recomputed from recomputed
    // values (ResNet-101 600x600: 712 MiB with both, 673 MiB with the segments alone).
    g = std::move(unchanged);
    const int copied = apply_segment_recompute(g, opt.recompute_segments);
    // The segments free far more than the workspace: start again from the largest cap.
    for (size_t cap : caps) {
      opt.workspace_cap = cap;
      if (copied > 0 && consider(plan_memory(g, opt), str("recompute ", opt.recompute_segments.size(),
                                                          " segments (", copied, " forward nodes), workspace cap ",
                                                          format_bytes(cap))))
        return best;
    }
  }
  CTDET_FAIL("memory budget ", format_bytes(budget), " cannot be met: the smallest plan found needs ",
             format_bytes(best.total_bytes()), " (tried workspace caps down to 0 and recomputation",
             opt.recompute_segments.empty() ? "" : " of cheap activations and of the backbone's segments",
             "). Use a smaller input size or batch.\n", best.report(g));
}

const MemoryPlan* PlanCache::find(const std::string& key) const {
  auto it = plans_.find(key);
  return it == plans_.end() ? nullptr : &it->second;
}
const MemoryPlan& PlanCache::put(const std::string& key, MemoryPlan p) { return plans_[key] = std::move(p); }

}  // namespace ctdet
