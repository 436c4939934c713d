#include "nn/graph.h"

#include "nn/op_registry.h"

namespace ctdet {

const char* value_kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::Input: return "input";
    case ValueKind::Param: return "param";
    case ValueKind::Activation: return "activation";
    case ValueKind::Gradient: return "gradient";
    case ValueKind::ParamGradient: return "param-gradient";
    case ValueKind::ArenaParamGradient: return "arena-param-gradient";
  }
  return "?";
}

ValueId Graph::new_value(const std::string& name, const Shape& shape, DType dtype, ValueKind kind) {
  CTDET_CHECK(by_name_.count(name) == 0, "graph: value name '", name, "' is used twice");
  for (auto d : shape.dims) CTDET_CHECK(d > 0, "graph: value '", name, "' has a non-positive dimension ", shape.str());
  Value v;
  v.name = name;
  v.shape = shape;
  v.dtype = dtype;
  v.kind = kind;
  values_.push_back(v);
  ValueId id = ValueId(values_.size() - 1);
  by_name_[name] = id;
  return id;
}

ValueId Graph::input(const std::string& name, const Shape& shape, DType dtype) {
  return new_value(name, shape, dtype, ValueKind::Input);
}

ValueId Graph::param(const std::string& name, const Shape& shape) {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) {
    const Value& v = values_[size_t(it->second)];
    CTDET_CHECK(v.kind == ValueKind::Param, "graph: '", name, "' is a ", value_kind_name(v.kind), ", not a parameter");
    CTDET_CHECK(v.shape == shape, "graph: parameter '", name, "' shared with shape ", v.shape.str(),
                " but requested with shape ", shape.str());
    return it->second;
  }
  ValueId id = new_value(name, shape, dtype_, ValueKind::Param);
  values_[size_t(id)].requires_grad = true;
  return id;
}

const Value& Graph::value(ValueId v) const {
  CTDET_CHECK(v >= 0 && size_t(v) < values_.size(), "graph: no value with id ", v);
  return values_[size_t(v)];
}
Value& Graph::value_mut(ValueId v) {
  CTDET_CHECK(v >= 0 && size_t(v) < values_.size(), "graph: no value with id ", v);
  return values_[size_t(v)];
}

ValueId Graph::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? kNoValue : it->second;
}

std::string Graph::describe(ValueId v) const {
  const Value& x = value(v);
  return str("'", x.name, "' ", x.shape.str(), " ", dtype_name(x.dtype));
}

size_t Graph::param_bytes() const {
  size_t s = 0;
  for (auto& v : values_)
    if (v.kind == ValueKind::Param) s += v.bytes();
  return s;
}

std::vector<ValueId> Graph::add(const std::string& op, const std::string& name, const std::vector<ValueId>& inputs,
                                std::any attrs) {
  const OpDef& def = ops().get(op);
  CTDET_CHECK(num_forward_ == int(nodes_.size()),
              "graph: node '", name, "' added after backward(); build the whole forward graph first");
  Node n;
  n.op = op;
  n.name = name;
  n.inputs = inputs;
  n.attrs = std::move(attrs);
  for (ValueId v : inputs) (void)value(v);
  std::vector<OutputDesc> outs = def.infer(*this, n);
  bool any_grad = false;
  for (ValueId v : inputs) any_grad = any_grad || values_[size_t(v)].requires_grad;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string vname = outs.size() == 1 ? name + ".out" : str(name, ".out", i);
    ValueId id = new_value(vname, outs[i].shape, outs[i].dtype, ValueKind::Activation);
    values_[size_t(id)].requires_grad = any_grad && def.grad != nullptr &&
                                        (outs[i].dtype == DType::F32 || outs[i].dtype == DType::F64);
    n.outputs.push_back(id);
  }
  n.accumulate.assign(n.outputs.size(), 0);
  nodes_.push_back(std::move(n));
  num_forward_ = int(nodes_.size());
  return nodes_.back().outputs;
}

int Graph::add_node_into(const std::string& op, const std::string& name, const std::vector<ValueId>& inputs,
                         const std::vector<ValueId>& outputs, const std::vector<char>& accumulate, std::any attrs,
                         bool is_backward) {
  const OpDef& def = ops().get(op);
  Node n;
  n.op = op;
  n.name = name;
  n.inputs = inputs;
  n.outputs = outputs;
  n.accumulate = accumulate;
  n.attrs = std::move(attrs);
  n.is_backward = is_backward;
  CTDET_CHECK(accumulate.size() == outputs.size(), "graph: node '", name, "' accumulate flags do not match outputs");
  std::vector<OutputDesc> outs = def.infer(*this, n);
  CTDET_CHECK(outs.size() == outputs.size(), "graph: node '", name, "' (", op, ") produces ", outs.size(),
              " outputs but ", outputs.size(), " were given");
  for (size_t i = 0; i < outs.size(); ++i) {
    const Value& v = value(outputs[i]);
    CTDET_CHECK(v.shape == outs[i].shape && v.dtype == outs[i].dtype, "graph: node '", name, "' (", op,
                ") output ", i, " is ", outs[i].shape.str(), " ", dtype_name(outs[i].dtype), " but writes into ",
                describe(outputs[i]));
  }
  nodes_.push_back(std::move(n));
  return int(nodes_.size() - 1);
}

}  // namespace ctdet
