// ParamStore: the named parameters, their gradients and the optimizer state, one block each.
// Gradients accumulate across micro-batches; zero_grads() clears them (the optimizer calls it).
// A store allocated for inference (ParamUse::Inference) holds the parameters only: a third of the memory; asking it
// for gradients or momentum is an error naming the parameter. ParamUse::TrainingGradsInArena holds parameters
// and momentum: the training graph plans the gradients in its arena (param_gradients_to_arena, nn/autograd.h),
// so asking the store for gradients is an error.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/graph.h"
#include "nn/memory.h"

namespace ctdet {

enum class ParamUse { Training, Inference, TrainingGradsInArena };

class ParamStore {
 public:
  explicit ParamStore(Device device = Device::CPU, DType dtype = DType::F32) : device_(device), dtype_(dtype) {}

  void declare(const std::string& name, const Shape& shape);  // before allocate(); re-declaring must agree
  void declare_from(const Graph& g);                           // every parameter of the graph
  void allocate(ParamUse use = ParamUse::Training);            // zero-filled
  bool allocated() const { return allocated_; }
  bool has_training_state() const { return allocated_ && use_ != ParamUse::Inference; }  // momentum
  ParamUse use() const { return use_; }
  bool has_gradients() const { return allocated_ && use_ == ParamUse::Training; }

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  Tensor param(const std::string& name) const { return view(name, params_); }
  Tensor grad(const std::string& name) const { return view(name, training_block(1, name)); }
  Tensor momentum(const std::string& name) const { return view(name, training_block(2, name)); }
  const std::vector<std::string>& names() const { return names_; }
  Shape shape(const std::string& name) const { return entries_.at(at(name)).shape; }

  int64_t numel() const { return total_numel_; }
  size_t bytes() const { return size_t(total_numel_) * dtype_size(dtype_); }  // one block (the parameters)
  // Bytes this store holds: 3 blocks for training (parameters, gradients, momentum), 2 when the gradients are
  // in the arena, 1 for inference.
  size_t allocated_bytes() const {
    return allocated_ ? bytes() * (use_ == ParamUse::Training ? 3 : use_ == ParamUse::Inference ? 1 : 2) : 0;
  }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

  void zero_grads() { training_block(1, "").zero(); }
  // Whole-block access (optimizer, clipping, checkpoints).
  Tensor all_params() const { return block(params_); }
  Tensor all_grads() const { return block(training_block(1, "")); }
  Tensor all_momentum() const { return block(training_block(2, "")); }

  // Host copies in double or float, whatever the store's dtype.
  template <typename T> std::vector<T> get(const std::string& name, int which = 0) const;  // 0 param 1 grad 2 mom
  template <typename T> void set(const std::string& name, const std::vector<T>& v, int which = 0);

 private:
  struct Entry {
    Shape shape;
    int64_t offset = 0;  // elements
  };
  size_t at(const std::string& name) const;
  // grads_ (which 1) or momentum_ (which 2); throws for a store without that block.
  const DeviceBuffer& training_block(int which, const std::string& name) const;
  DeviceBuffer& training_block(int which, const std::string& name);
  Tensor view(const std::string& name, const DeviceBuffer& b) const;
  Tensor block(const DeviceBuffer& b) const;

  Device device_;
  DType dtype_;
  bool allocated_ = false;
  ParamUse use_ = ParamUse::Training;
  std::vector<std::string> names_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
  int64_t total_numel_ = 0;
  DeviceBuffer params_, grads_, momentum_;
};

}  // namespace ctdet
