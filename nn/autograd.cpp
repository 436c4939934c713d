#include "nn/autograd.h"

#include "nn/core_ops.h"
#include "nn/op_registry.h"

namespace ctdet {

ValueId GradBuilder::grad_out(size_t i) const {
  ValueId o = out(i);
  ValueId gid = g_.value(o).grad;
  if (gid == kNoValue) return kNoValue;
  return written_[size_t(gid)] ? gid : kNoValue;
}

static ValueId gradient_value(Graph& g, ValueId v) {
  Value& x = g.value_mut(v);
  if (x.grad != kNoValue) return x.grad;
  ValueKind kind = x.kind == ValueKind::Param ? ValueKind::ParamGradient : ValueKind::Gradient;
  std::string name = "grad/" + x.name;
  Shape shape = x.shape;
  DType dtype = x.dtype;
  ValueId gid = g.new_value(name, shape, dtype, kind);
  g.value_mut(v).grad = gid;
  return gid;
}

void GradBuilder::contribute(size_t target, const std::string& op, const std::vector<ValueId>& inputs,
                             std::any attrs) {
  if (!needs_grad(target)) return;
  contribute_many({target}, op, inputs, std::move(attrs));  // the node is named grad/<node>.in<target>
}

void GradBuilder::contribute_many(const std::vector<size_t>& targets, const std::string& op,
                                  const std::vector<ValueId>& inputs, std::any attrs) {
  CTDET_CHECK(!targets.empty(), "contribute_many: no targets for node '", fwd().name, "'");
  std::vector<ValueId> outs;
  std::vector<char> acc;
  std::string name = str("grad/", fwd().name, ".in");
  for (size_t k = 0; k < targets.size(); ++k) {
    CTDET_CHECK(needs_grad(targets[k]), "contribute_many: input ", targets[k], " of node '", fwd().name,
                "' wants no gradient");
    const ValueId gid = gradient_value(g_, in(targets[k]));
    for (ValueId o : outs)
      CTDET_CHECK(o != gid, "contribute_many: node '", fwd().name, "' names the same gradient twice");
    if (size_t(gid) >= written_.size()) written_.resize(size_t(g_.num_values()), 0);
    acc.push_back(char(written_[size_t(gid)] || g_.value(gid).kind == ValueKind::ParamGradient));
    outs.push_back(gid);
    name += (k ? "+" : "") + std::to_string(targets[k]);
  }
  g_.add_node_into(op, name, inputs, outs, acc, std::move(attrs), true);
  for (ValueId gid : outs) written_[size_t(gid)] = 1;
}

ValueId GradBuilder::temp(const std::string& op, const std::string& suffix, const std::vector<ValueId>& inputs,
                          const Shape& shape, DType dtype, std::any attrs) {
  ValueId t = g_.new_value(str("grad/", fwd().name, ".", suffix), shape, dtype, ValueKind::Gradient);
  written_.resize(size_t(g_.num_values()), 0);
  g_.add_node_into(op, str("grad/", fwd().name, ".", suffix), inputs, {t}, {0}, std::move(attrs), true);
  written_[size_t(t)] = 1;
  return t;
}

ValueId backward(Graph& g, ValueId loss) {
  const Value& L = g.value(loss);
  CTDET_CHECK(L.shape.numel() == 1, "backward: the loss ", g.describe(loss), " is not a scalar");
  CTDET_CHECK(L.requires_grad, "backward: the loss ", g.describe(loss), " does not depend on any parameter");
  CTDET_CHECK(L.grad == kNoValue, "backward: already called for ", g.describe(loss));
  const int nfwd = g.num_forward_nodes();
  std::vector<char> written(size_t(g.num_values()), 0);
  ValueId seed = gradient_value(g, loss);
  written.resize(size_t(g.num_values()), 0);
  g.add_node_into("fill", "grad/seed", {}, {seed}, {0}, FillAttrs{1.0}, true);
  written[size_t(seed)] = 1;
  for (int i = nfwd - 1; i >= 0; --i) {
    const Node& n = g.node(i);
    const OpDef& def = ops().get(n.op);
    bool any = false;
    for (ValueId o : n.outputs) {
      ValueId gid = g.value(o).grad;
      any = any || (gid != kNoValue && size_t(gid) < written.size() && written[size_t(gid)]);
    }
    if (!any) continue;
    bool wants = false;
    for (ValueId v : n.inputs) wants = wants || g.value(v).requires_grad;
    if (!wants) continue;
    CTDET_CHECK(def.grad != nullptr, "backward: op '", n.op, "' of node '", n.name, "' is not differentiable");
    GradBuilder b(g, i, written);
    def.grad(b);
  }
  g.mark_output(loss);
  // Gradients of graph inputs are results the caller reads: keep them to the end.
  for (ValueId v = 0; v < g.num_values(); ++v) {
    const Value& x = g.value(v);
    if (x.kind == ValueKind::Input && x.grad != kNoValue) g.mark_output(x.grad);
  }
  return seed;
}

int param_gradients_to_arena(Graph& g) {
  std::vector<char> moved(size_t(g.num_values()), 0);
  int n = 0;
  for (ValueId v = 0; v < g.num_values(); ++v) {
    if (g.value(v).kind != ValueKind::ParamGradient) continue;
    Value& x = g.value_mut(v);
    x.kind = ValueKind::ArenaParamGradient;
    x.keep = true;
    moved[size_t(v)] = 1;
    ++n;
  }
  // The first writer of each moved gradient (in schedule order) overwrites; later ones keep adding.
  for (int i = 0; i < g.num_nodes(); ++i) {
    Node& nd = g.node_mut(i);
    for (size_t k = 0; k < nd.outputs.size(); ++k) {
      const ValueId o = nd.outputs[k];
      if (!moved[size_t(o)]) continue;
      if (moved[size_t(o)] == 1) {
        nd.accumulate[k] = 0;
        moved[size_t(o)] = 2;
      }
    }
  }
  for (ValueId v = 0; v < g.num_values(); ++v)
    CTDET_CHECK(moved[size_t(v)] != 1, "param_gradients_to_arena: no node writes ", g.describe(v));
  return n;
}

}  // namespace ctdet
