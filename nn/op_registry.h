// The op registry: for each op kind, shape inference, its gradient rule (which values backward reads, and
// so keeps alive), in-place permission, workspace need, and the forward function per device.
// Backward is expressed with op kinds too (e.g. "relu_grad"), so every node runs the same way.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nn/graph.h"

namespace ctdet {

struct CudaContext;

struct OutputDesc {
  Shape shape;
  DType dtype;
};

// What a kernel sees when the executor runs a node.
struct OpContext {
  const Graph* graph = nullptr;
  const Node* node = nullptr;
  Device device = Device::CPU;
  CudaContext* cuda = nullptr;  // non-null on Device::CUDA
  std::vector<Tensor> in, out;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  bool accumulate(size_t i) const { return node->accumulate[i] != 0; }
  template <typename A> const A& attrs() const { return std::any_cast<const A&>(node->attrs); }
};

class GradBuilder;  // nn/autograd.h

struct OpDef {
  std::string name;
  // Output shapes and dtypes from the inputs; throws ctdet::Error naming the node and the values.
  std::function<std::vector<OutputDesc>(const Graph&, const Node&)> infer;
  // Appends the nodes that send gradient to the inputs (null: not differentiable).
  std::function<void(GradBuilder&)> grad;
  bool inplace = false;  // output 0 may share input 0's memory
  bool cheap = false;    // elementwise and cheap: a candidate for recomputation in backward
  // Scratch bytes for this node on a device given the workspace cap (null: none).
  std::function<size_t(const Graph&, const Node&, Device, size_t cap)> workspace;
  std::function<void(OpContext&)> cpu;
  std::function<void(OpContext&)> cuda;
  // Arithmetic of one run of the node in FLOP (a multiply-add counts 2), for the matrix-product ops that dominate
  // a detector's work (conv2d, linear and their gradients). Null: not counted (elementwise, pooling, gathers).
  std::function<double(const Graph&, const Node&)> flops;
};

class OpRegistry {
 public:
  void add(OpDef def);
  const OpDef& get(const std::string& name) const;  // throws naming the unknown op
  bool has(const std::string& name) const { return defs_.count(name) != 0; }
  std::vector<std::string> names() const;

 private:
  std::map<std::string, OpDef> defs_;
};

// The registry with every op of the engine (built once, then read-only).
const OpRegistry& ops();

// Registration functions, one per op family (called by ops()).
void register_core_ops(OpRegistry& r);
void register_dense_ops(OpRegistry& r);  // nn/ops_dense.cpp: conv2d, batchnorm_frozen, max_pool
void register_elem_ops(OpRegistry& r);   // nn/ops_elem.cpp: relu6, bn_add_relu, concat/slice, gather, pool2d, losses
void register_det_ops(OpRegistry& r);    // nn/ops_det.cpp: crop_and_resize, roi_align, anchors, boxes, nms, top-k, sampler

// Sum of OpDef::flops over nodes [begin, end) of g (end < 0: to the last node): the FLOP a run performs in its
// matrix products, which "share of FP32 peak" divides by.
double graph_flops(const Graph& g, int begin = 0, int end = -1);

// Helpers for infer functions: a message naming the node and its inputs.
std::string describe_inputs(const Graph& g, const Node& n);

// The CUDA function of every op in a build without CUDA: an error naming the node.
[[noreturn]] void cuda_not_built(OpContext& c);
#if CTDET_WITH_CUDA
#define CTDET_CUDA_FN(f) f
#else
#define CTDET_CUDA_FN(f) ::ctdet::cuda_not_built
#endif

// Typed tensor access for the CUDA run functions (which run f32 and int32 only): each checks the dtype and
// names the node on a mismatch.
namespace opio {
const float* fin(const OpContext& c, size_t i);
float* fout(const OpContext& c, size_t i = 0);
const int32_t* iin(const OpContext& c, size_t i);
int32_t* iout(const OpContext& c, size_t i);
CudaContext& ctx(const OpContext& c);
}  // namespace opio

}  // namespace ctdet
