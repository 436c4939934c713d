// Whole-model benchmark: training step (forward + backward + SGD update) and inference of the study's two
// detectors (ResNet-101 and Inception-v2 Faster R-CNN, 3 classes, the TF-OD numbers) at 600x600 and 600x1024,
// batch 1 and 2. CSV on stdout:
//   model,device,mode,batch,height,width,median_ms,min_ms,images_per_s,planned_peak_mib,params_mib,
//   device_used_mib,rois_per_image,gflop_per_image,share_of_fp32_peak,allocated_mib
// rois: proposals the second stage ran on at inference; sampled ROIs in training. gflop_per_image: the FLOP of the
// run's matrix products (conv2d, linear and their gradients; graph_flops) over the batch size. share_of_fp32_peak:
// that work per second of median time over the nominal FP32 peak (CPU: cores x 32 FLOP/cycle x clock; GPU: SMs x
// FP32 lanes x 2 x boost clock; printed on stderr), the whole step's arithmetic efficiency.
// Median over --reps runs after --warmup runs; on CUDA each run ends with a stream synchronisation (the
// loss/detections are read back, as a trainer or an application would). device_used_mib: the growth of the
// device's used memory from before the store/plan was allocated to after the runs (cudaMemGetInfo), a
// high-water proxy that includes cuDNN/cuBLAS handles' own allocations (and, with lazy module loading, the device
// code of the cuDNN kernels used). allocated_mib: what ctdet itself allocates, the planned arena (activations and
// workspaces, and in training the parameter gradients) plus the parameter store (training: parameters and momentum,
// and gradients with --store-grads; inference: parameters only),
// the counterpart of torch.cuda.max_memory_allocated. params_mib: the parameters alone.
// A training run is `ctdet train`'s step of one micro-batch: forward, backward, and the trainer's Optimizer (SGD
// momentum 0.9, global-norm clip at 10 as the study's config: one pass for the norm, the scale fused into the
// update; the peer's torch.optim.SGD does not clip), gradients planned in the arena (each from its first write in
// backward to the update); --store-grads keeps them in a store block instead. Until session 5 the update did not
// clip and ResNet-101's random-weight runs turned NaN after the first (warm-up) run (stderr said "non-finite").
//   bench_model [--device cpu|cuda] [--reps N] [--warmup N] [--quick] [--filter SUBSTR] [--profile]
//               [--conv-algos heuristic|timed] [--store-grads] [--recompute-backbone] [--no-workspace-trim]
//               [--cpu-train]
// --no-workspace-trim: CUDA plans keep every node's full workspace estimate (PlanOptions::trim_peak_workspace off).
// --recompute-backbone: training graphs recompute the backbone's first stage in backward (train.recompute_backbone).
// --cpu-train: on the CPU also the training cases (600x600 batch 1; a ResNet-101 step takes about a minute here).
// --conv-algos timed: cuDNN convolution algorithms by measured time (CudaContext::conv_algo_timed) instead of the
// heuristics' ranking (CUDA only; the first, untimed warm-up run pays for the timing).
// --profile: after the timed runs, one more run per case with per-node timing (Executor::profile: CUDA events or
// CPU wall clock); the top-20 nodes and the time per op kind go to stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "detector/session.h"
#include "train/optimizer.h"
#include "nn/device.h"
#include "nn/op_registry.h"
#if CTDET_WITH_CUDA
#include <cuda_runtime.h>

#include "nn/cuda_context.h"
#endif

using namespace ctdet;

namespace {

struct Opt {
  bool cuda = false, quick = false, profile = false, timed_algos = false, store_grads = false, cpu_train = false,
       recompute = false, no_trim = false;
  int reps = 0, warmup = 2;
  std::string filter;
};

size_t used_device_bytes() {
#if CTDET_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return total_b - free_b;
#endif
  return 0;
}

void fill_batch(Batch& b, int n, int h, int w) {
  b.n = n;
  b.height = h;
  b.width = w;
  b.data = HostBuffer(size_t(n) * 3 * h * w);
  for (size_t i = 0; i < b.data.size(); ++i) b.data.data()[i] = float((i * 2654435761u) % 255) - 120.f;
  b.samples.clear();
  for (int i = 0; i < n; ++i) {
    BatchSample s;
    s.image_id = "bench" + std::to_string(i);
    s.height = s.orig_height = h;
    s.width = s.orig_width = w;
    // Two lesions per image, so both stages have positives.
    s.boxes.push_back(Box{w * 0.2f, h * 0.3f, w * 0.45f, h * 0.6f, 1});
    s.boxes.push_back(Box{w * 0.55f, h * 0.25f, w * 0.8f, h * 0.5f, 3});
    b.samples.push_back(s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Opt o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_model: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") o.cuda = next() == "cuda";
    else if (a == "--reps") o.reps = std::atoi(next().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(next().c_str());
    else if (a == "--quick") o.quick = true;
    else if (a == "--filter") o.filter = next();
    else if (a == "--profile") o.profile = true;
    else if (a == "--store-grads") o.store_grads = true;
    else if (a == "--recompute-backbone") o.recompute = true;
    else if (a == "--no-workspace-trim") o.no_trim = true;
    else if (a == "--cpu-train") o.cpu_train = true;
    else if (a == "--conv-algos") {
      const std::string v = next();
      if (v != "heuristic" && v != "timed") {
        std::fprintf(stderr, "bench_model: --conv-algos takes heuristic or timed, got '%s'\n", v.c_str());
        return 2;
      }
      o.timed_algos = v == "timed";
    } else {
      std::fprintf(stderr, "usage: bench_model [--device cpu|cuda] [--reps N] [--warmup N] [--quick] [--filter S] [--profile] "
                   "[--conv-algos heuristic|timed] [--store-grads] [--recompute-backbone] [--no-workspace-trim] [--cpu-train]\n");
      return 2;
    }
  }
  try {
    if (o.cuda && !cuda_device_available()) {
      std::fprintf(stderr, "bench_model: no CUDA device: %s\n", cuda_unavailable_reason().c_str());
      return 1;
    }
    const int reps = o.reps > 0 ? o.reps : (o.cuda ? (o.quick ? 5 : 10) : (o.quick ? 1 : 3));
#if CTDET_WITH_CUDA
    std::unique_ptr<CudaContext> ctx;
    if (o.cuda) ctx = std::make_unique<CudaContext>(0);
    if (ctx) ctx->conv_algo_timed = o.timed_algos;
    CudaContext* cx = ctx.get();
#else
    CudaContext* cx = nullptr;
#endif
    const Device dev = o.cuda ? Device::CUDA : Device::CPU;
    std::printf("model,device,mode,batch,height,width,median_ms,min_ms,images_per_s,planned_peak_mib,params_mib,"
                "device_used_mib,rois_per_image,gflop_per_image,share_of_fp32_peak,allocated_mib\n");
#if CTDET_WITH_CUDA
    const bench::Peak peak = o.cuda ? bench::gpu_fp32_peak(cx->device) : bench::cpu_fp32_peak(0);
#else
    const bench::Peak peak = bench::cpu_fp32_peak(0);
#endif
    std::fprintf(stderr, "# %s\n", peak.how.c_str());
    struct Case {
      BackboneKind kind;
      bool train;
      int n, h, w;
    };
    std::vector<Case> cases;
    for (BackboneKind k : {BackboneKind::ResNet101, BackboneKind::InceptionV2})
      for (bool train : {true, false})
        for (int n : {1, 2})
          for (int w : {600, 1024}) {
            // CPU: 600x600 batch 1 only, inference (training too with --cpu-train)
            if (!o.cuda && (n == 2 || w == 1024 || (train && !o.cpu_train))) continue;
            if (o.quick && n == 2 && w == 1024) continue;
            cases.push_back({k, train, n, 600, w});
          }
    for (const Case& c : cases) {
      const std::string name = c.kind == BackboneKind::ResNet101 ? "faster_rcnn_resnet101" : "faster_rcnn_inception_v2";
      const std::string tag = name + (c.train ? " train" : " infer");
      if (!o.filter.empty() && tag.find(o.filter) == std::string::npos) continue;
      FasterRcnnConfig cfg;
      cfg.backbone = c.kind;
      const size_t used0 = o.cuda ? used_device_bytes() : 0;
      ParamStore ps(dev, DType::F32);
      declare_faster_rcnn_params(ps, cfg);
      // Training as `ctdet train` runs a one-micro-batch step: gradients in the arena (--store-grads: in the store's
      // block, the grad_accumulation > 1 layout); inference: parameters only, as deployed.
      ps.allocate(!c.train ? ParamUse::Inference
                           : o.store_grads ? ParamUse::Training : ParamUse::TrainingGradsInArena);
      init_faster_rcnn_params(ps, cfg, 1);
      DetectorSession s(cfg, ps, dev, cx);
      s.recompute_backbone = o.recompute;  // train.recompute_backbone (training cases only)
      s.trim_peak_workspace = !o.no_trim;
      // The trainer's update with the study's global-norm clip at 10: from these random weights ResNet-101's first
      // gradient is huge, and an unclipped step (even at lr 1e-6) made the weights NaN for every later run.
      std::unique_ptr<Optimizer> opt;
      if (c.train) opt = std::make_unique<Optimizer>(ps, cx, 0.9, 10.0, false);
      Batch b;
      fill_batch(b, c.n, c.h, c.w);
      std::vector<double> ms;
      for (int r = 0; r < o.warmup + reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        if (c.train) {
          if (ps.has_gradients()) ps.zero_grads();
          StepLosses l = s.train_step(b, r);
          opt->step(s, 1e-6, 1);
#if CTDET_WITH_CUDA
          if (o.cuda) cx->synchronize();
#endif
          if (!l.non_finite().empty()) std::fprintf(stderr, "%s: non-finite %s\n", tag.c_str(), l.non_finite().c_str());
        } else {
          s.detect(b, 0.f);
        }
        const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r >= o.warmup) ms.push_back(t);
      }
      if (o.profile) {
        s.profile = true;  // the session sets its executor's flag on every call
        if (c.train) {
          if (ps.has_gradients()) ps.zero_grads();
          s.train_step(b, 999);
        } else {
          s.detect(b, 0.f);
        }
        s.profile = false;
        const Executor* ex = s.last_executor();
        std::fprintf(stderr, "== %s batch %d %dx%d\n%s", tag.c_str(), c.n, c.h, c.w, ex->profile_table(20).c_str());
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double used = o.cuda ? double(used_device_bytes() - used0) / (1 << 20) : 0.0;
      const std::vector<int> rois = s.last_roi_counts();
      double mean_rois = 0;
      for (int r : rois) mean_rois += r;
      mean_rois /= std::max<size_t>(rois.size(), 1);
      const double gflop = graph_flops(s.last_executor()->graph()) * 1e-9;
      char share[32] = "";
      if (peak.value > 0) std::snprintf(share, sizeof share, "%.3f", gflop / (med * 1e-3) / peak.value);
      const double allocated = double(s.planned_peak_bytes() + ps.allocated_bytes()) / (1 << 20);
      std::printf("%s,%s,%s,%d,%d,%d,%.3f,%.3f,%.2f,%.1f,%.1f,%.1f,%.0f,%.1f,%s,%.1f\n", name.c_str(),
                  o.cuda ? "cuda" : "cpu", c.train ? "train" : "infer", c.n, c.h, c.w, med, ms.front(),
                  1000.0 * c.n / med, double(s.planned_peak_bytes()) / (1 << 20), double(ps.bytes()) / (1 << 20), used,
                  mean_rois, gflop / c.n, share, allocated);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
