// The training loop behind `ctdet train`: data, parameters, SGD steps, checkpoints, logs and resume.
//
// A run folder holds
//   config.json                  the resolved config (train/config.h save_resolved_config)
//   train.log                    every console line, plain (appended across resumes)
//   checkpoints/ckpt-<step>.*    parameters + momentum (safetensors) with a JSON sidecar; `last`, `best`
//   metrics.csv / metrics.jsonl / events.out.tfevents.*   per-step scalars (train/train_log.h)
//   eval/metrics.* + events      validation AP@0.5 per class and mean
//   loss_chart.svg, loss_chart.png   the loss terms over the steps (like darknet's chart.png)
//
// Step numbering: "step s" is the update that takes the weights from s-1 to s updates applied. Its losses
// are measured on the weights after s-1 updates and logged under step s; lr = train.lr_at(s - 1) (config.h:
// the argument counts updates already applied). A checkpoint "ckpt-s" holds the weights after s updates.
//
// One step: zero gradients; for each of train.grad_accumulation micro-batches (batch_size / accumulation
// images each), DetectorSession::train_step adds that micro-batch's gradients (seed = step_seed(seed, s, m));
// With one micro-batch (the default) the gradients are not in the parameter store at all: the training graph
// plans them in its arena (ParamUse::TrainingGradsInArena, nn/autograd.h param_gradients_to_arena), each live
// from the backward node that writes it to the update, which saves most of a parameter-sized block at the peak
// (ResNet-101 600x600: 1.11 GiB -> 975 MiB planned) and gives the same bits.

// clip (global norm or per tensor) and apply SGD momentum. Micro-batch gradients are SUMMED; the average is
// obtained by running the clip with clip * A and the update with lr / A (A = accumulation), which is exactly
// clip(sum / A) followed by lr applied to it (both are linear in the gradient); so the momentum buffer holds
// A times TF's accumulator when A > 1 (only a resume that changes A would notice).
//
// Frozen parameters (BN statistics, frozen BN affine) stay in the update: they get zero gradients, their
// momentum starts at 0 and stays 0 (m*0 + 0), and var -= lr * 0 leaves them bitwise unchanged — this holds
// because the optimizer runs with weight_decay 0 (a decay term would move them) and lr is finite.
//
// Determinism: data order and flips come from the loader's seed (train.seed), the samplers from step_seed,
// the initial weights from train.seed; on CPU a run repeats bit for bit, and a resumed run continues with
// the same batches (loader first_epoch/first_batch from the step) and seeds, so its losses equal those of
// an uninterrupted run.
//
// Stops:
//   completed      train.steps reached: checkpoint (and validation) at the last step.
//   stop requested *options.stop became true (SIGINT/SIGTERM in the app): checkpoint at the current step.
//   max_steps      options.max_steps reached (tests, "train k more steps"): checkpoint, like a stop.
//   non-finite     a loss term (or the gradient norm) is NaN/Inf at step s: nothing is applied or saved;
//                  the `last` checkpoint (at most checkpoint_every steps old; a fresh run saves ckpt-0 first)
//                  is the last good state. The message names the term, the step and that checkpoint.
// Errors (bad data, bad config, I/O) throw ctdet::Error; the library never exits.
#pragma once
#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "detector/session.h"
#include "train/config.h"
#include "train/loader.h"

namespace ctdet {

struct TrainOptions {
  std::string run_dir;                      // required; created when missing
  bool resume = false;                      // continue from run_dir/checkpoints (weights, momentum, step, data, logs)
  std::string init;                         // safetensors weights (weights only); "" = train.init of the config
  std::string device;                       // "cpu" | "cuda" | "auto"; "" = train.device of the config
  const std::atomic<bool>* stop = nullptr;  // set from a signal handler: checkpoint and return
  std::ostream* progress = nullptr;         // console; nullptr = quiet (train.log is still written)
  bool live_progress = false;               // redraw one line with '\r' (a terminal) instead of periodic lines
  int64_t max_steps = -1;                   // >= 0: stop once this many updates are applied (checkpoint saved)
  bool overwrite = false;                   // a fresh run may replace logs/checkpoints already in run_dir
  // Tests and tools: samples from these instead of data.train / data.val (class names still from data).
  std::shared_ptr<SampleSource> train_source, val_source;
};

enum class StopReason { kCompleted, kStopRequested, kMaxSteps, kNonFinite };
const char* stop_reason_name(StopReason r);  // "completed", "stop requested", "max steps", "non-finite loss"

struct StepRecord {
  int64_t step = 0;  // 1-based (see the header comment)
  StepLosses losses;
  double lr = 0, grad_norm = 0, seconds = 0;
};

struct ValidationResult {
  int64_t step = 0;
  int64_t images = 0, gt_boxes = 0, detections = 0;
  std::vector<std::pair<std::string, double>> ap50;  // per class (NaN: no ground truth of that class)
  double map50 = std::numeric_limits<double>::quiet_NaN();  // mean over classes with ground truth
  double any_ap50 = std::numeric_limits<double>::quiet_NaN();  // all classes merged
  double score() const;  // map50, else any_ap50 (what "best" compares); NaN when neither is defined
};

struct TrainResult {
  StopReason reason = StopReason::kCompleted;
  std::string message;           // one line for the console (the non-finite message names term, step, checkpoint)
  std::string bad_term;          // non-finite: "loss_rpn_cls", ..., "loss" or "grad_norm"
  int64_t start_step = 0;        // updates applied when this invocation started (0 fresh, k on resume)
  int64_t step = 0;              // updates applied at return
  int64_t last_checkpoint_step = -1;
  std::string last_checkpoint;   // .safetensors path of the `last` checkpoint at return
  std::vector<StepRecord> history;            // every step of this invocation
  std::vector<ValidationResult> validations;  // every validation of this invocation
  double best_score = std::numeric_limits<double>::quiet_NaN();
  int64_t best_step = -1;
  double steps_per_sec = 0;      // this invocation, from the second step on (the first builds and plans)
  size_t planned_peak_bytes = 0; // the training graph's planned arena peak
  size_t param_store_bytes = 0;  // parameters + momentum (+ gradients when train.grad_accumulation > 1)
  size_t peak_rss_bytes = 0;     // process high-water mark (Linux VmHWM; 0 when unknown)
  std::string device;            // "cpu" / "cuda"
};

// The sampler seed of micro-batch m of step s (1-based), a 31-bit value mixed from the config seed.
int32_t step_seed(int64_t config_seed, int64_t step, int micro);

// Runs (or resumes) a training run; see the header comment. Throws ctdet::Error on bad input.
TrainResult run_training(const RunConfig& cfg, const TrainOptions& opt);

// Validation on a source: detections of every image (batch 1, no flip) scored with COCO AP@0.5 per class.
ValidationResult validate_on(DetectorSession& session, const std::shared_ptr<SampleSource>& source,
                             const RunConfig& cfg, int64_t step);

// The loss chart of a run from its metrics.jsonl: SVG text (io/svg_plot.h) and a PNG image (RGB, 8-bit).
// rows: (step, [(tag, value)...]) as TrainLog wrote them.
using MetricRows = std::vector<std::pair<int64_t, std::vector<std::pair<std::string, double>>>>;
MetricRows read_metrics_jsonl(const std::string& path);
std::string loss_chart_svg(const MetricRows& rows);
void write_loss_chart_png(const MetricRows& rows, const std::string& path);

}  // namespace ctdet
