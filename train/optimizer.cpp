#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/optim.h"
#include "nn/device.h"
#include "nn/error.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

Optimizer::Optimizer(ParamStore& ps, CudaContext* cuda, double momentum, double clip_norm, bool per_tensor)
    : ps_(ps), cuda_(cuda), momentum_(momentum), clip_norm_(clip_norm), per_tensor_(per_tensor) {
  CTDET_CHECK(ps.dtype() == DType::F32, "optimizer: expects a float32 parameter store");
  CTDET_CHECK(ps.has_training_state(), "optimizer: the parameter store was not allocated for training");
  CTDET_CHECK(std::isfinite(clip_norm) && clip_norm >= 0, "optimizer: clip norm must be finite and >= 0, got ",
              clip_norm);
  for (const std::string& n : ps.names()) {
    var_.push_back(ps.param(n).ptr<float>());
    acc_.push_back(ps.momentum(n).ptr<float>());
    sizes_.push_back(ps.param(n).numel());
  }
  if (ps.device() == Device::CUDA) {
    CTDET_CHECK(cuda_built(), "optimizer: CUDA parameter store in a build without CUDA");
    CTDET_CHECK(cuda_ != nullptr, "optimizer: CUDA parameter store without a CUDA context");
  }
}

double Optimizer::step(const DetectorSession& session, double lr, int accumulation) {
  CTDET_CHECK(accumulation >= 1, "optimizer: accumulation must be >= 1, got ", accumulation);
  const double A = double(accumulation);
  // clip 0 = no clipping: still measure the norm (NaN/Inf detection, logs) with a threshold never reached.
  const double clip = clip_norm_ > 0 ? clip_norm_ * A : std::numeric_limits<double>::max();
  const int k = int(var_.size());
  std::vector<float*> grads(static_cast<size_t>(k), nullptr);
  for (int i = 0; i < k; ++i) grads[size_t(i)] = static_cast<float*>(session.gradient(ps_.names()[size_t(i)]).data);
  SgdParams sp;
  sp.lr = lr / A;
  sp.momentum = momentum_;
  sp.weight_decay = 0.0;  // frozen parameters stay bitwise unchanged only without decay (trainer.h)
  std::vector<double> norms(per_tensor_ ? size_t(k) : 1, 0.0);
  bool finite = true;
  if (ps_.device() == Device::CPU) {
    finite = clipped_sgd_update_list_cpu<float>(sp, clip, per_tensor_, k, var_.data(), acc_.data(), grads.data(),
                                                sizes_.data(), norms.data());
  } else {
#if CTDET_WITH_CUDA
    if (grads != table_grads_) upload_tables(grads);
    float* nd = static_cast<float*>(norms_dev_.data());
    const auto* tensors = static_cast<const ListTensor*>(tensors_dev_.data());
    const auto* chunks = static_cast<const ListChunk*>(chunks_dev_.data());
    clip_norms_list_cuda(*cuda_, per_tensor_, k, tensors, n_chunks_, chunks,
                         static_cast<const int64_t*>(first_dev_.data()), nd, workspace_.data());
    cuda_->synchronize();
    std::vector<float> h(norms.size(), 0.f);
    copy_to_host(Device::CUDA, h.data(), nd, h.size() * sizeof(float));
    for (size_t i = 0; i < h.size(); ++i) {
      norms[i] = h[i];
      finite = finite && std::isfinite(norms[i]);
    }
    if (finite) clipped_sgd_update_list_cuda(*cuda_, sp, clip, per_tensor_, tensors, n_chunks_, chunks, nd);
#endif
  }
  double norm = 0;
  for (double v : norms) norm += v * v;
  norm = std::sqrt(norm) / A;  // the norm of the averaged gradient
  if (!finite && std::isfinite(norm)) norm = std::numeric_limits<double>::quiet_NaN();
  return norm;
}

void Optimizer::upload_tables(const std::vector<float*>& grads) {
#if CTDET_WITH_CUDA
  const int k = int(var_.size());
  std::vector<ListTensor> t(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i)
    t[size_t(i)] = ListTensor{var_[size_t(i)], acc_[size_t(i)], grads[size_t(i)], sizes_[size_t(i)]};
  std::vector<int64_t> first;
  const std::vector<ListChunk> c = list_chunks(k, sizes_.data(), &first);
  n_chunks_ = int64_t(c.size());
  auto put = [](DeviceBuffer& b, const void* src, size_t bytes) {
    b.allocate(Device::CUDA, std::max<size_t>(bytes, 256));
    if (bytes) copy_to_device(Device::CUDA, b.data(), src, bytes);
  };
  put(tensors_dev_, t.data(), t.size() * sizeof(ListTensor));
  put(chunks_dev_, c.data(), c.size() * sizeof(ListChunk));
  put(first_dev_, first.data(), first.size() * sizeof(int64_t));
  workspace_.allocate(Device::CUDA, clip_list_workspace_bytes_cuda(k, n_chunks_));
  norms_dev_.allocate(Device::CUDA, std::max<size_t>(size_t(k), 1) * sizeof(float));
  table_grads_ = grads;
#else
  (void)grads;
#endif
}

}  // namespace ctdet
