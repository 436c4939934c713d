#include "nn/op_registry.h"
#include "nn/ops_frcnn.h"

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
    register_frcnn_ops(r);
    return r;
  }();
  return registry;
}

double graph_flops(const Graph& g, int begin, int end) {
  if (end < 0) end = g.num_nodes();
  double f = 0;
  for (int i = begin; i < end; ++i) {
    const OpDef& d = ops().get(g.node(i).op);
    if (d.flops) f += d.flops(g, g.node(i));
  }
  return f;
}

void cuda_not_built(OpContext& c) {
  CTDET_FAIL("node '", c.node->name, "' (", c.node->op, "): CUDA requested but ctdet was built without CUDA");
}

namespace opio {
const float* fin(const OpContext& c, size_t i) {
  CTDET_CHECK(c.in[i].dtype == DType::F32, "node '", c.node->name, "' (", c.node->op,
              "): the CUDA backend runs f32 only, input ", i, " is ", dtype_name(c.in[i].dtype));
  return static_cast<const float*>(c.in[i].data);
}
float* fout(const OpContext& c, size_t i) {
  CTDET_CHECK(c.out[i].dtype == DType::F32, "node '", c.node->name, "' (", c.node->op,
              "): the CUDA backend runs f32 only, output ", i, " is ", dtype_name(c.out[i].dtype));
  return static_cast<float*>(c.out[i].data);
}
const int32_t* iin(const OpContext& c, size_t i) {
  CTDET_CHECK(c.in[i].dtype == DType::I32, "node '", c.node->name, "' (", c.node->op, "): input ", i,
              " must be int32, is ", dtype_name(c.in[i].dtype));
  return static_cast<const int32_t*>(c.in[i].data);
}
int32_t* iout(const OpContext& c, size_t i) {
  CTDET_CHECK(c.out[i].dtype == DType::I32, "node '", c.node->name, "' (", c.node->op, "): output ", i,
              " must be int32, is ", dtype_name(c.out[i].dtype));
  return static_cast<int32_t*>(c.out[i].data);
}
CudaContext& ctx(const OpContext& c) {
  CTDET_CHECK(c.cuda != nullptr, "node '", c.node->name, "' (", c.node->op, "): no CudaContext");
  return *c.cuda;
}
}  // namespace opio

std::string describe_inputs(const Graph& g, const Node& n) {
  std::string s = str("node '", n.name, "' (", n.op, ") with inputs ");
  for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + g.describe(n.inputs[i]);
  return s;
}

}  // namespace ctdet
