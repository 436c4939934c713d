// Recomputation of cheap activations: trade a little compute in backward for memory (DESIGN.md, degrade
// order step 2). A forward value made by a cheap op (relu, scale, add, frozen-BN affine...) that backward
// reads is recomputed, with its chain of cheap producers, just before its first backward reader, from the
// nearest non-cheap ancestors. Whether it pays off is decided by re-planning (plan_with_budget).
#include <functional>
#include <map>

#include "nn/op_registry.h"
#include "nn/planner.h"

namespace ctdet {

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
  if (!count) return 0;
  std::vector<Node> out;
  out.reserve(nodes.size() + size_t(count));
  for (int j = 0; j < n; ++j) {
    auto it = insert_before.find(j);
    if (it != insert_before.end()) out.insert(out.end(), it->second.begin(), it->second.end());
    out.push_back(std::move(nodes[size_t(j)]));
  }
  g.set_nodes(std::move(out));
  return count;
}

}  // namespace ctdet
