// A detector bound to one parameter store and one device: builds, plans and caches the training and inference
// graphs per input shape (CT slices are square, so usually one), and runs steps on loader batches.
//
//   ParamStore ps(device);  declare_faster_rcnn_params(ps, cfg);  ps.allocate();  init_faster_rcnn_params(ps, cfg, 1);
//   DetectorSession s(cfg, ps, device, cuda);
//   StepLosses l = s.train_step(batch, seed);     // forward + backward: ADDS this batch's gradients to ps's grads
//   auto dets = s.detect(batch, 0.05f);             // per image, original-image pixels
//
// Graph shapes: a batch of n images of (H, W) uses the graph for (n, H, W); a new shape builds and plans a new
// graph (printed once). Memory: plans are made with plan_with_budget when a budget is given (bytes, counting the
// parameter store), else plan_memory.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "detector/faster_rcnn.h"
#include "io/annotations.h"
#include "nn/executor.h"
#include "nn/planner.h"
#include "io/batch.h"
#include "io/resize.h"

namespace ctdet {

struct CudaContext;

// The input normalisation the config asks for (model.input_normalization; "auto" = the backbone's own).
Normalization input_normalization(const FasterRcnnConfig& cfg);

// A batch of one preprocessed image (keep-aspect resize to the config's sides, its normalisation), with the
// scales that map detections back to the original pixels. Throws ctdet::Error for images the resizer refuses.
Batch single_image_batch(const FasterRcnnConfig& cfg, const Image& img, const std::string& image_id);

// Declares every parameter of the detector (both stages, heads) in ps (before ps.allocate()).
void declare_faster_rcnn_params(ParamStore& ps, const FasterRcnnConfig& cfg);

struct StepLosses {
  double rpn_cls = 0, rpn_loc = 0, cls = 0, box = 0, total = 0;
  // The name of the first non-finite term ("" when all are finite): NaN/Inf detection.
  std::string non_finite() const;
};

class DetectorSession {
 public:
  DetectorSession(const FasterRcnnConfig& cfg, ParamStore& params, Device device, CudaContext* cuda = nullptr,
                  size_t memory_budget = 0);
  ~DetectorSession();

  // One forward+backward over a loader batch (images preprocessed, boxes in network pixels). With a store
  // allocated for ParamUse::Training the gradients are ADDED to the store's gradients (zero them before the first
  // micro-batch of a step); with ParamUse::TrainingGradsInArena the training graph plans them in its arena
  // (param_gradients_to_arena) and each step writes them afresh: read them with gradient(). Throws ctdet::Error
  // naming the image when it has more than cfg.max_gt_boxes boxes or a label outside 1..num_classes.
  StepLosses train_step(const Batch& batch, int32_t seed);

  // The gradient of parameter `name` after train_step: the store's view (ParamUse::Training), or the view into
  // the last training graph's arena (ParamUse::TrainingGradsInArena), valid until the next train_step; a Tensor
  // with data == nullptr when that graph gives the parameter no gradient (the optimizer treats it as zero).
  Tensor gradient(const std::string& name) const;

  // Detections with score >= score_threshold for each image of the batch, boxes in original-image pixels
  // (the batch samples' scales), labels 1-based, image_id from the samples.
  std::vector<std::vector<Detection>> detect(const Batch& batch, float score_threshold);

  // The memory plan report of the last graph used (for logs), and the number of cached graphs.
  std::string last_plan_report() const;
  // What plan_with_budget tried for the last graph ("plan (workspace cap ...): total ..." per line; "" without a
  // budget).
  const std::string& last_plan_log() const;
  size_t planned_peak_bytes() const;
  size_t num_graphs() const { return cache_.size(); }
  // Proposals per image of the last inference run (the ROIs the second stage processed), or the sampled ROIs per
  // image (cfg.box_batch_size, padded rows excluded only in the losses) for a training run.
  std::vector<int> last_roi_counts() const;
  // While set, train_step/detect time every node (Executor::profile) of whichever graph they run.
  bool profile = false;
  // Training graphs built while set recompute the backbone's first stage in backward (gradient checkpointing over
  // backbone_recompute_segments; `train.recompute_backbone`): less memory, one more first-stage forward per step.
  // Set it before the first train_step: graphs are cached per shape. Without it, a training graph over the memory
  // budget gets the same rewrite as plan_with_budget's last resort.
  bool recompute_backbone = false;
  // CUDA plans: trim the workspace of the busiest nodes (PlanOptions::trim_peak_workspace). Set before the first step.
  bool trim_peak_workspace = true;
  // The executor of the last graph used (profiling: set its `profile` flag, run, read profile_table()).
  Executor* last_executor() const { return last_ ? last_->ex.get() : nullptr; }
  const FasterRcnnConfig& config() const { return cfg_; }

 private:
  struct Entry {
    DetectorGraph d;
    MemoryPlan plan;
    std::string plan_log;
    std::unique_ptr<Executor> ex;
  };
  Entry& entry(bool train, int n, int h, int w);

  FasterRcnnConfig cfg_;
  ParamStore& ps_;
  Device device_;
  CudaContext* cuda_;
  size_t budget_;
  std::map<std::tuple<bool, int, int, int>, std::unique_ptr<Entry>> cache_;
  Entry* last_ = nullptr;
  Entry* last_train_ = nullptr;
};

}  // namespace ctdet
