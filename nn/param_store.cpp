#include "nn/param_store.h"

namespace ctdet {

void ParamStore::declare(const std::string& name, const Shape& shape) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    CTDET_CHECK(entries_[it->second].shape == shape, "parameter '", name, "' declared as ",
                entries_[it->second].shape.str(), " and again as ", shape.str());
    return;
  }
  CTDET_CHECK(!allocated_, "parameter '", name, "' declared after the store was allocated");
  Entry e;
  e.shape = shape;
  e.offset = total_numel_;
  // Keep every tensor 256-byte aligned within its block.
  int64_t align_elems = int64_t(256 / dtype_size(dtype_));
  total_numel_ += (shape.numel() + align_elems - 1) / align_elems * align_elems;
  index_[name] = entries_.size();
  entries_.push_back(e);
  names_.push_back(name);
}

void ParamStore::declare_from(const Graph& g) {
  CTDET_CHECK(g.dtype() == dtype_, "graph dtype ", dtype_name(g.dtype()), " differs from the parameter store's ",
              dtype_name(dtype_));
  for (auto& v : g.values())
    if (v.kind == ValueKind::Param) declare(v.name, v.shape);
}

void ParamStore::allocate(ParamUse use) {
  CTDET_CHECK(!allocated_, "parameter store allocated twice");
  size_t bytes = size_t(total_numel_) * dtype_size(dtype_);
  params_.allocate(device_, bytes);
  params_.zero();
  if (use == ParamUse::Training) {
    grads_.allocate(device_, bytes);
    grads_.zero();
  }
  if (use != ParamUse::Inference) {
    momentum_.allocate(device_, bytes);
    momentum_.zero();
  }
  use_ = use;
  allocated_ = true;
}

const DeviceBuffer& ParamStore::training_block(int which, const std::string& name) const {
  CTDET_CHECK(allocated_, "parameter store not allocated");
  const std::string what = name.empty() ? std::string() : " (parameter '" + name + "')";
  CTDET_CHECK(use_ != ParamUse::Inference, "parameter store allocated for inference has no ",
              which == 1 ? "gradients" : "momentum", what, ": allocate it with ParamUse::Training to train");
  CTDET_CHECK(which != 1 || use_ == ParamUse::Training, "parameter store allocated with "
              "ParamUse::TrainingGradsInArena has no gradients", what,
              ": the training graph plans them in its arena (read them through the executor)");
  return which == 1 ? grads_ : momentum_;
}
DeviceBuffer& ParamStore::training_block(int which, const std::string& name) {
  return const_cast<DeviceBuffer&>(static_cast<const ParamStore*>(this)->training_block(which, name));
}

size_t ParamStore::at(const std::string& name) const {
  auto it = index_.find(name);
  CTDET_CHECK(it != index_.end(), "no parameter named '", name, "'");
  return it->second;
}

Tensor ParamStore::view(const std::string& name, const DeviceBuffer& b) const {
  CTDET_CHECK(allocated_, "parameter store not allocated (reading '", name, "')");
  const Entry& e = entries_[at(name)];
  Tensor t;
  t.data = static_cast<char*>(b.data()) + size_t(e.offset) * dtype_size(dtype_);
  t.shape = e.shape;
  t.dtype = dtype_;
  t.device = device_;
  return t;
}

Tensor ParamStore::block(const DeviceBuffer& b) const {
  CTDET_CHECK(allocated_, "parameter store not allocated");
  Tensor t;
  t.data = b.data();
  t.shape = Shape{total_numel_};
  t.dtype = dtype_;
  t.device = device_;
  return t;
}

template <typename T> std::vector<T> ParamStore::get(const std::string& name, int which) const {
  Tensor t = view(name, which == 0 ? params_ : training_block(which, name));
  std::vector<T> out(size_t(t.numel()));
  if (dtype_ == DType::F32) {
    std::vector<float> tmp(out.size());
    copy_to_host(device_, tmp.data(), t.data, t.bytes());
    for (size_t i = 0; i < out.size(); ++i) out[i] = T(tmp[i]);
  } else {
    std::vector<double> tmp(out.size());
    copy_to_host(device_, tmp.data(), t.data, t.bytes());
    for (size_t i = 0; i < out.size(); ++i) out[i] = T(tmp[i]);
  }
  return out;
}

template <typename T> void ParamStore::set(const std::string& name, const std::vector<T>& v, int which) {
  Tensor t = view(name, which == 0 ? params_ : training_block(which, name));
  CTDET_CHECK(int64_t(v.size()) == t.numel(), "parameter '", name, "' has ", t.numel(), " elements ",
              t.shape.str(), ", got ", v.size());
  if (dtype_ == DType::F32) {
    std::vector<float> tmp(v.begin(), v.end());
    copy_to_device(device_, t.data, tmp.data(), t.bytes());
  } else {
    std::vector<double> tmp(v.begin(), v.end());
    copy_to_device(device_, t.data, tmp.data(), t.bytes());
  }
}

template std::vector<float> ParamStore::get<float>(const std::string&, int) const;
template std::vector<double> ParamStore::get<double>(const std::string&, int) const;
template void ParamStore::set<float>(const std::string&, const std::vector<float>&, int);
template void ParamStore::set<double>(const std::string&, const std::vector<double>&, int);

}  // namespace ctdet
