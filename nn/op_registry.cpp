#include "nn/op_registry.h"

namespace ctdet {

void OpRegistry::add(OpDef def) {
  CTDET_CHECK(!def.name.empty() && def.infer, "op registry: op '", def.name, "' needs a name and shape inference");
  CTDET_CHECK(defs_.count(def.name) == 0, "op registry: op '", def.name, "' registered twice");
  defs_[def.name] = std::move(def);
}

const OpDef& OpRegistry::get(const std::string& name) const {
  auto it = defs_.find(name);
  CTDET_CHECK(it != defs_.end(), "op registry: unknown op '", name, "'");
  return it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> v;
  for (auto& [k, d] : defs_) v.push_back(k);
  return v;
}

const OpRegistry& ops() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_core_ops(r);
    register_dense_ops(r);
    register_elem_ops(r);
    register_det_ops(r);
    return r;
  }();
  return registry;
}

std::string describe_inputs(const Graph& g, const Node& n) {
  std::string s = str("node '", n.name, "' (", n.op, ") with inputs ");
  for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + g.describe(n.inputs[i]);
  return s;
}

}  // namespace ctdet
