// The training step's update: gradient clipping (global norm or per tensor) and SGD with momentum over every
// parameter of a store, in the multi-tensor form of kernels/optim.h (on CUDA: one launch for the norms, one
// for the fused clip + update, however many tensors). `ctdet train` and bench_model's training cases use it.
//
// Gradients come from the session (DetectorSession::gradient): the store's block (ParamUse::Training, summed over
// micro-batches) or the training graph's arena views (ParamUse::TrainingGradsInArena). A parameter the graph
// gives no gradient gets a zero one (its momentum decays; frozen parameters keep momentum 0 and stay unchanged).
#pragma once
#include <cstdint>
#include <vector>

#include "detector/session.h"
#include "nn/memory.h"
#include "nn/param_store.h"

namespace ctdet {

struct CudaContext;

class Optimizer {
 public:
  // momentum: TF MomentumOptimizer's; clip_norm: > 0 clips (global, or per tensor), 0 measures the norm only
  // (non-finite detection and logs). The store must be float32 and allocated for training.
  Optimizer(ParamStore& ps, CudaContext* cuda, double momentum, double clip_norm, bool per_tensor);

  // One update with learning rate lr from the gradients of `accumulation` summed micro-batches: clipped at
  // clip_norm * accumulation and applied with lr / accumulation, which is clip(sum / A) then lr (trainer.h).
  // Returns the norm of the averaged gradient before clipping; when it is non-finite nothing changed.
  double step(const DetectorSession& session, double lr, int accumulation);

 private:
  void upload_tables(const std::vector<float*>& grads);

  ParamStore& ps_;
  CudaContext* cuda_;
  double momentum_, clip_norm_;
  bool per_tensor_;
  std::vector<float*> var_, acc_;
  std::vector<int64_t> sizes_;
  // CUDA: the list's device tables, rebuilt only when the gradient pointers change (a new graph shape).
  std::vector<float*> table_grads_;
  int64_t n_chunks_ = 0;
  DeviceBuffer tensors_dev_, chunks_dev_, first_dev_, workspace_, norms_dev_;
};

}  // namespace ctdet
