// The static graph: values with inferred shapes and readable names, nodes that name an op kind from the
// registry (nn/op_registry.h). Building computes nothing. Reverse-mode autograd (nn/autograd.h) appends
// backward nodes to the same graph, so the memory planner sees forward and backward together.
#pragma once
#include <any>
#include <string>
#include <unordered_map>
#include <vector>

#include "nn/tensor.h"

namespace ctdet {

using ValueId = int;
constexpr ValueId kNoValue = -1;

enum class ValueKind {
  Input,          // fed by the caller before a run (planned in the arena)
  Param,          // lives in the ParamStore
  Activation,     // forward intermediate (planned)
  Gradient,       // gradient of an activation or input (planned)
  ParamGradient,  // gradient of a parameter: the ParamStore's gradient buffer (accumulates)
  // Gradient of a parameter planned in the arena (param_gradients_to_arena): its first contribution
  // overwrites, the rest add; it lives from that first write to the end of the step, where the optimizer
  // reads it through the executor. No store block, no zeroing, no accumulation across runs.
  ArenaParamGradient,
};
const char* value_kind_name(ValueKind k);

struct Value {
  std::string name;
  Shape shape;
  DType dtype = DType::F32;
  ValueKind kind = ValueKind::Activation;
  bool requires_grad = false;  // a gradient may flow to it
  bool keep = false;           // read by the caller after the run: lives to the end of the schedule
  ValueId grad = kNoValue;     // its gradient value once backward() created one
  size_t bytes() const { return size_t(shape.numel()) * dtype_size(dtype); }
};

struct Node {
  std::string op;    // op kind (registry key)
  std::string name;  // readable: "res4.b3.conv2", backward nodes get a "grad/" prefix
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  std::vector<char> accumulate;  // per output: 0 = overwrite, 1 = add into what is there
  std::any attrs;                // op parameters (a params struct from kernels/<op>.h)
  bool is_backward = false;
};

class Graph {
 public:
  explicit Graph(DType dtype = DType::F32) : dtype_(dtype) {}

  DType dtype() const { return dtype_; }

  // Leaves.
  ValueId input(const std::string& name, const Shape& shape, DType dtype);
  ValueId input(const std::string& name, const Shape& shape) { return input(name, shape, dtype_); }
  // A parameter, by name; the same name returns the same value (shared parameters). Shapes must agree.
  ValueId param(const std::string& name, const Shape& shape);

  // Adds a node of a registered op kind. Shape inference runs now and throws ctdet::Error naming the node,
  // its inputs and their shapes on a mismatch. Returns the output ids; outputs are named "<name>.out"
  // (or "<name>.out<i>" for several).
  std::vector<ValueId> add(const std::string& op, const std::string& name, const std::vector<ValueId>& inputs,
                           std::any attrs = {});
  ValueId add1(const std::string& op, const std::string& name, const std::vector<ValueId>& inputs,
               std::any attrs = {}) {
    auto outs = add(op, name, inputs, std::move(attrs));
    CTDET_CHECK(outs.size() == 1, "node '", name, "' (", op, ") has ", outs.size(), " outputs, expected 1");
    return outs[0];
  }

  // Low-level: a node writing into existing values (autograd's gradient contributions).
  int add_node_into(const std::string& op, const std::string& name, const std::vector<ValueId>& inputs,
                    const std::vector<ValueId>& outputs, const std::vector<char>& accumulate, std::any attrs,
                    bool is_backward);
  ValueId new_value(const std::string& name, const Shape& shape, DType dtype, ValueKind kind);

  void mark_output(ValueId v) { value_mut(v).keep = true; }

  const Value& value(ValueId v) const;
  Value& value_mut(ValueId v);
  const Node& node(int i) const { return nodes_[size_t(i)]; }
  Node& node_mut(int i) { return nodes_[size_t(i)]; }
  int num_nodes() const { return int(nodes_.size()); }
  int num_values() const { return int(values_.size()); }
  const std::vector<Node>& nodes() const { return nodes_; }
  // Replaces the schedule (used by rewrites such as recomputation, which insert nodes into backward).
  void set_nodes(std::vector<Node> nodes) { nodes_ = std::move(nodes); }
  const std::vector<Value>& values() const { return values_; }
  ValueId find(const std::string& value_name) const;  // kNoValue if absent
  int num_forward_nodes() const { return num_forward_; }

  // "name (1,3,600,600) f32" for messages.
  std::string describe(ValueId v) const;
  // Total bytes of all parameters.
  size_t param_bytes() const;

 private:
  DType dtype_;
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, ValueId> by_name_;
  int num_forward_ = 0;
};

}  // namespace ctdet
