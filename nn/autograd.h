// Reverse-mode autograd over the static graph. backward(g, loss) walks the forward nodes in reverse and
// appends gradient nodes. A value read by k nodes gets k contributions: the first overwrites its gradient
// buffer, the rest accumulate (accumulate flag, like cuBLAS beta 0/1), so nothing needs zeroing.
// Parameter gradients always accumulate (across micro-batches); the optimizer zeroes them.
#pragma once
#include <any>
#include <string>
#include <vector>

#include "nn/graph.h"

namespace ctdet {

class GradBuilder {
 public:
  GradBuilder(Graph& g, int fwd_node, std::vector<char>& written) : g_(g), idx_(fwd_node), written_(written) {}

  Graph& graph() { return g_; }
  const Node& fwd() const { return g_.node(idx_); }
  ValueId in(size_t i) const { return fwd().inputs[i]; }
  ValueId out(size_t i = 0) const { return fwd().outputs[i]; }
  // Gradient of forward output i (kNoValue when nothing flows back into it).
  ValueId grad_out(size_t i = 0) const;
  // Whether forward input i wants a gradient.
  bool needs_grad(size_t i) const { return g_.value(in(i)).requires_grad; }

  // Appends a node of kind `op` whose single output is a contribution to the gradient of forward input
  // `target` (overwrite on the first contribution, accumulate after; always accumulate for parameters).
  void contribute(size_t target, const std::string& op, const std::vector<ValueId>& inputs, std::any attrs = {});
  // One node whose outputs are contributions to the gradients of several forward inputs (targets[k] gets output k),
  // for kernels that compute them in one pass. Every target must want a gradient (check needs_grad first).
  void contribute_many(const std::vector<size_t>& targets, const std::string& op, const std::vector<ValueId>& inputs,
                       std::any attrs = {});
  // Appends a backward-side node producing a fresh intermediate value; returns it.
  ValueId temp(const std::string& op, const std::string& suffix, const std::vector<ValueId>& inputs,
               const Shape& shape, DType dtype, std::any attrs = {});

 private:
  Graph& g_;
  int idx_;
  std::vector<char>& written_;  // per value id: has its gradient buffer been written yet
};

// Appends the backward pass for a scalar loss (shape (1)). Returns the id of d(loss)/d(loss) (seeded 1).
// After it, g.value(v).grad names each value's gradient (parameters: a ParamGradient value).
ValueId backward(Graph& g, ValueId loss);

// After backward(): moves every parameter gradient out of the ParamStore into the planned arena
// (ValueKind::ArenaParamGradient). Its first writer overwrites instead of adding, so nothing needs zeroing,
// and it stays live from that write to the end of the schedule, where the optimizer reads it
// (Executor::value). A step then holds each gradient only from the point backward produces it, as PyTorch's
// zero_grad(set_to_none=True) does, instead of a whole store block for the whole step. Gradients no longer
// add up across runs: use it for steps of one micro-batch. Returns the number of gradients moved.
int param_gradients_to_arena(Graph& g);

}  // namespace ctdet
