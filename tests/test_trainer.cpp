// The trainer (train/trainer.h) on a tiny phantom dataset made here with io/synth and written as TFRecords the way
// `ctdet prepare` does: resume exactness (bitwise on CPU), stop flag + resume, NaN stop with a loadable last-good
// checkpoint, TensorBoard events with the loss tags, frozen parameters untouched, falling loss, validation logs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <utility>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <streambuf>

#include "detector/faster_rcnn.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/synth.h"
#include "io/tb_events.h"
#include "io/tfrecord.h"
#include "io/via.h"
#include "kernels/optim.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace ctdet {
namespace {

fs::path tmp_root() {
  static const fs::path p = fs::temp_directory_path() / ("ctdet_trainer_" + std::to_string(::getpid()));
  return p;
}

// 6 phantoms of 128 px (one lesion-free) -> records/{train,val}-00000-of-00001.tfrecord (val = 2 of them).
const std::string& records_dir() {
  static std::string dir;
  if (!dir.empty()) return dir;
  const fs::path root = tmp_root();
  fs::remove_all(root);
  SynthOptions so;
  so.out = (root / "synth").string();
  so.count = 6;
  so.size = 128;
  so.seed = 7;
  so.negatives_fraction = 0.2;
  write_synth_dataset(so);
  ViaOptions vo;
  vo.image_dir = (root / "synth" / "images").string();
  const Dataset ds = read_via_csv((root / "synth" / "via_regions.csv").string(), vo);
  EXPECT_EQ(ds.images.size(), 6u);
  fs::create_directories(root / "records");
  ShardedTFRecordWriter tr((root / "records" / "train").string(), 1), va((root / "records" / "val").string(), 1);
  for (size_t i = 0; i < ds.images.size(); ++i) {
    ExampleImage ex;
    ex.record = ds.images[i];
    ex.record.width = ex.record.height = 128;
    ex.encoded = read_file(ds.images[i].file);
    ex.format = "png";
    const std::string bytes = encode_example(ex, ds.class_names);
    tr.write(bytes);
    if (i < 2) va.write(bytes);
  }
  tr.close();
  va.close();
  dir = (root / "records").string();
  return dir;
}

RunConfig tiny_config(int steps, std::vector<std::string> extra = {}) {
  std::vector<std::string> ov = {"data.train=" + records_dir(),
                                 "data.val=" + records_dir(),
                                 "data.num_workers=1",
                                 str("train.steps=", steps),
                                 "train.log_every=1",
                                 "train.checkpoint_every=3",
                                 "train.eval_every=0",
                                 "train.keep_checkpoints=10",
                                 "train.warmup_steps=0",
                                 "train.seed=3"};
  for (auto& e : extra) ov.push_back(e);
  return load_run_config(testing::source_dir() + "/configs/small_cpu.json", ov);
}

// The trainer's data order for micro-batches of `batch_size` images (one loader thread, as data.num_workers=1).
DataLoader trainer_loader(const RunConfig& cfg, int batch_size) {
  LoaderOptions lo;
  lo.num_threads = 1;
  lo.batch_size = batch_size;
  lo.seed = uint64_t(cfg.train.seed);
  lo.flip_prob = cfg.train.flip ? cfg.train.flip_prob : 0.0;
  lo.min_side = cfg.model.min_dimension;
  lo.max_side = cfg.model.max_dimension;
  lo.norm = input_normalization(cfg.model);
  lo.num_epochs = 0;
  return DataLoader(tfrecord_source(resolve_shards(records_dir(), "train"), cfg.data.class_names), lo);
}

std::string run_dir(const std::string& name) { return (tmp_root() / "runs" / name).string(); }

bool same_losses(const StepLosses& a, const StepLosses& b) {
  return a.rpn_cls == b.rpn_cls && a.rpn_loc == b.rpn_loc && a.cls == b.cls && a.box == b.box && a.total == b.total;
}

// How many weights and momenta differ (bitwise) between two stores of the same parameters.
std::pair<int64_t, int64_t> count_differences(ParamStore& a, ParamStore& b) {
  const int64_t n = a.all_params().numel();
  std::pair<int64_t, int64_t> d{0, 0};
  for (int64_t i = 0; i < n; ++i) {
    d.first += a.all_params().ptr<float>()[i] != b.all_params().ptr<float>()[i];
    d.second += a.all_momentum().ptr<float>()[i] != b.all_momentum().ptr<float>()[i];
  }
  return d;
}

// An uninterrupted reference run of kSteps steps, shared by the resume tests.
constexpr int kSteps = 6;
const TrainResult& reference_run() {
  static TrainResult r;
  static bool done = false;
  if (done) return r;
  TrainOptions o;
  o.run_dir = run_dir("reference");
  const auto t0 = std::chrono::steady_clock::now();
  r = run_training(tiny_config(kSteps), o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[info] reference run: %d steps in %.2f s (%.2f steps/s after the first); loss %.4f -> %.4f\n", kSteps, s,
              r.steps_per_sec, r.history.front().losses.total, r.history.back().losses.total);
  done = true;
  return r;
}

TEST(Trainer, StepSeedIsAFunctionOfSeedStepAndMicroBatch) {
  EXPECT_EQ(step_seed(3, 5, 0), step_seed(3, 5, 0));
  std::set<int32_t> seen;
  for (int64_t s = 1; s <= 200; ++s)
    for (int m = 0; m < 2; ++m) {
      const int32_t v = step_seed(3, s, m);
      EXPECT_GE(v, 0);
      seen.insert(v);
    }
  EXPECT_EQ(seen.size(), 400u);  // no collisions over 400 (step, micro) pairs
  EXPECT_NE(step_seed(3, 5, 0), step_seed(4, 5, 0));
}

TEST(Trainer, ResumeAtStepKGivesBitwiseTheSameLossesAndWeights) {
  const TrainResult& ref = reference_run();
  ASSERT_EQ(ref.reason, StopReason::kCompleted) << ref.message;
  ASSERT_EQ(ref.history.size(), size_t(kSteps));
  // Interrupted at k = 4 (not a checkpoint_every multiple: the exit checkpoint carries it), then resumed.
  TrainOptions o;
  o.run_dir = run_dir("resumed");
  o.max_steps = 4;
  const TrainResult a = run_training(tiny_config(kSteps), o);
  ASSERT_EQ(a.reason, StopReason::kMaxSteps);
  ASSERT_EQ(a.step, 4);
  EXPECT_EQ(checkpoint_pointer(o.run_dir + "/checkpoints"), 4);
  o.max_steps = -1;
  o.resume = true;
  const TrainResult b = run_training(tiny_config(kSteps), o);
  ASSERT_EQ(b.reason, StopReason::kCompleted) << b.message;
  ASSERT_EQ(b.start_step, 4);
  ASSERT_EQ(b.history.size(), size_t(kSteps - 4));
  double max_diff = 0;
  for (int s = 0; s < kSteps; ++s) {
    const StepRecord& r = ref.history[size_t(s)];
    const StepRecord& x = s < 4 ? a.history[size_t(s)] : b.history[size_t(s - 4)];
    ASSERT_EQ(x.step, s + 1);
    max_diff = std::max(max_diff, std::fabs(r.losses.total - x.losses.total));
    EXPECT_TRUE(same_losses(r.losses, x.losses)) << "step " << s + 1 << ": total " << r.losses.total << " vs "
                                                 << x.losses.total;
    EXPECT_EQ(r.lr, x.lr);
    EXPECT_EQ(r.grad_norm, x.grad_norm) << "step " << s + 1;
  }
  std::printf("[err] resume at 4 of %d: max |loss difference| over all steps %.3g (bitwise expected)\n", kSteps,
              max_diff);
  EXPECT_EQ(max_diff, 0.0);
  // The final weights and momentum are bitwise equal too.
  const SafeTensors p = read_safetensors(ref.last_checkpoint), q = read_safetensors(b.last_checkpoint);
  ASSERT_EQ(p.tensors.size(), q.tensors.size());
  size_t differing = 0;
  for (size_t i = 0; i < p.tensors.size(); ++i) differing += p.tensors[i].data != q.at(p.tensors[i].name).data;
  std::printf("[err] final checkpoint: %zu of %zu tensors differ\n", differing, p.tensors.size());
  EXPECT_EQ(differing, 0u);
  // The metrics of the resumed run hold each step once (rows of the interrupted tail were not duplicated).
  const MetricRows rows = read_metrics_jsonl(o.run_dir + "/metrics.jsonl");
  std::vector<int64_t> steps;
  for (const auto& r : rows) steps.push_back(r.first);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  // Resume is refused for a run folder without checkpoints; a fresh run refuses a folder with checkpoints.
  TrainOptions bad;
  bad.run_dir = run_dir("no_such_run");
  bad.resume = true;
  EXPECT_THROW(run_training(tiny_config(kSteps), bad), Error);
  TrainOptions again;
  again.run_dir = run_dir("resumed");
  EXPECT_THROW(run_training(tiny_config(kSteps), again), Error);
}

// A stream that raises the stop flag when the progress line of a given step goes by (a "Ctrl-C" mid-run).
class TriggerBuf : public std::stringbuf {
 public:
  TriggerBuf(std::atomic<bool>* flag, std::string marker) : flag_(flag), marker_(std::move(marker)) {}
  int sync() override {
    if (str().find(marker_) != std::string::npos) flag_->store(true);
    return 0;
  }

 private:
  std::atomic<bool>* flag_;
  std::string marker_;
};

TEST(Trainer, StopFlagMidRunSavesACheckpointAndResumeContinuesExactly) {
  const TrainResult& ref = reference_run();
  std::atomic<bool> stop{false};
  TriggerBuf buf(&stop, "step 2/");
  std::ostream out(&buf);
  TrainOptions o;
  o.run_dir = run_dir("stopped");
  o.stop = &stop;
  o.progress = &out;
  const TrainResult a = run_training(tiny_config(kSteps), o);
  EXPECT_EQ(a.reason, StopReason::kStopRequested);
  ASSERT_EQ(a.step, 2);
  EXPECT_EQ(checkpoint_pointer(o.run_dir + "/checkpoints"), 2);
  EXPECT_NE(buf.str().find("stopped at step 2"), std::string::npos) << buf.str();
  o.stop = nullptr;
  o.progress = nullptr;
  o.resume = true;
  const TrainResult b = run_training(tiny_config(kSteps), o);
  ASSERT_EQ(b.reason, StopReason::kCompleted) << b.message;
  ASSERT_EQ(b.history.size(), size_t(kSteps - 2));
  int equal = 0;
  for (size_t i = 0; i < b.history.size(); ++i) equal += same_losses(b.history[i].losses, ref.history[i + 2].losses);
  std::printf("[err] stop at 2, resume: %d of %d later steps bitwise equal to the uninterrupted run\n", equal,
              kSteps - 2);
  EXPECT_EQ(equal, kSteps - 2);
  // train.log has the console lines of both invocations.
  const std::string log = read_file(o.run_dir + "/train.log");
  EXPECT_NE(log.find("resume: step 2"), std::string::npos);
}

// train.profile_step: one step's per-node times land in RUN/profile.txt; timing changes no number.
TEST(Trainer, ProfileStepWritesPerNodeTimesAndChangesNothing) {
  const TrainResult& ref = reference_run();
  TrainOptions o;
  o.run_dir = run_dir("profile");
  const TrainResult r = run_training(tiny_config(kSteps, {"train.profile_step=3"}), o);
  ASSERT_EQ(r.history.size(), ref.history.size());
  for (size_t i = 0; i < r.history.size(); ++i)
    EXPECT_TRUE(same_losses(r.history[i].losses, ref.history[i].losses)) << "step " << r.history[i].step;
  const std::string prof = read_file((fs::path(o.run_dir) / "profile.txt").string());
  std::printf("[info] %s", prof.substr(0, prof.find('\n', prof.find("rank")) + 1).c_str());
  EXPECT_NE(prof.find("per-node times of step 3"), std::string::npos) << prof;
  EXPECT_NE(prof.find("conv2d_grad_w"), std::string::npos) << prof;
  EXPECT_NE(prof.find("by op kind"), std::string::npos) << prof;
  try {
    tiny_config(kSteps, {"train.profile_step=1"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.profile_step must be 0 (off) or >= 2"), std::string::npos) << e.what();
  }
}

TEST(Trainer, ExplodingLearningRateStopsNamingTheTermAndKeepsALoadableCheckpoint) {
  TrainOptions o;
  o.run_dir = run_dir("nan");
  // lr 1e6 with clipping 10: each update moves the weights by up to 1e7.
  const TrainResult r = run_training(tiny_config(20, {"train.lr=1e6", "train.lr_steps=[]", "train.checkpoint_every=2"}), o);
  std::printf("[info] exploding run: %s\n", r.message.c_str());
  ASSERT_EQ(r.reason, StopReason::kNonFinite);
  const std::set<std::string> terms = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss", "grad_norm"};
  EXPECT_EQ(terms.count(r.bad_term), 1u) << r.bad_term;
  const int64_t bad_step = r.history.back().step;
  EXPECT_NE(r.message.find(r.bad_term), std::string::npos);
  EXPECT_NE(r.message.find(str("at step ", bad_step)), std::string::npos) << r.message;
  EXPECT_EQ(r.step, bad_step - 1);  // the bad step was not applied
  // The last checkpoint is older than the bad step, loads, and holds finite weights.
  const int64_t last = checkpoint_pointer(o.run_dir + "/checkpoints");
  EXPECT_LT(last, bad_step);
  EXPECT_EQ(last, r.last_checkpoint_step);
  ParamStore ps(Device::CPU);
  declare_faster_rcnn_params(ps, tiny_config(20).model);
  ps.allocate();
  const auto side = load_checkpoint(o.run_dir + "/checkpoints", ps);
  EXPECT_EQ(side.at("step").get<int64_t>(), last);
  const Tensor all = ps.all_params();
  int64_t nonfinite = 0;
  for (int64_t i = 0; i < all.numel(); ++i) nonfinite += !std::isfinite(all.ptr<float>()[i]);
  std::printf("[err] last good checkpoint (step %lld): %lld non-finite of %lld values\n", (long long)last,
              (long long)nonfinite, (long long)all.numel());
  EXPECT_EQ(nonfinite, 0);
}

// One accumulated step (batch 2 = 2 micro-batches of 1) recomputed by hand in double from ckpt-0: the two
// micro-batch gradients from the session, averaged, clipped by global norm 10, momentum update w -= lr * g.
TEST(Trainer, AccumulatedStepMatchesAHandComputedClippedSgdUpdate) {
  const RunConfig cfg = tiny_config(1, {"train.batch_size=2", "train.grad_accumulation=2", "train.grad_clip_norm=0.5"});
  TrainOptions o;
  o.run_dir = run_dir("accum");
  const TrainResult r = run_training(cfg, o);
  ASSERT_EQ(r.reason, StopReason::kCompleted) << r.message;
  ParamStore ps(Device::CPU);
  declare_faster_rcnn_params(ps, cfg.model);
  ps.allocate();
  load_checkpoint(o.run_dir + "/checkpoints/ckpt-0.safetensors", ps);
  const Tensor w0t = ps.all_params();
  const std::vector<float> w0(w0t.ptr<float>(), w0t.ptr<float>() + w0t.numel());
  DetectorSession session(cfg.model, ps, Device::CPU);
  DataLoader dl = trainer_loader(cfg, 1);
  ps.zero_grads();
  double loss = 0;
  for (int m = 0; m < 2; ++m) {
    Batch b;
    ASSERT_TRUE(dl.next(&b));
    loss += session.train_step(b, step_seed(cfg.train.seed, 1, m)).total / 2;
  }
  const Tensor gt = ps.all_grads();
  const int64_t n = gt.numel();
  std::vector<double> g(static_cast<size_t>(n), 0.0);
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    g[size_t(i)] = double(gt.ptr<float>()[i]) / 2;  // the average over the micro-batches
    sq += g[size_t(i)] * g[size_t(i)];
  }
  const double norm = std::sqrt(sq), clip = cfg.train.grad_clip_norm;
  const double f = norm > clip ? clip / norm : 1.0;
  const double lr = cfg.train.lr_at(0);
  ParamStore ps1(Device::CPU);
  declare_faster_rcnn_params(ps1, cfg.model);
  ps1.allocate();
  load_checkpoint(o.run_dir + "/checkpoints", ps1);
  const float* w1 = ps1.all_params().ptr<float>();
  const float* m1 = ps1.all_momentum().ptr<float>();
  double werr = 0, wscale = 0, wmax = 0, merr = 0, mscale = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double gc = g[size_t(i)] * f;
    const double want_w = double(w0[size_t(i)]) - lr * gc;
    werr = std::max(werr, std::fabs(double(w1[i]) - want_w));
    wscale = std::max(wscale, std::fabs(lr * gc));
    wmax = std::max(wmax, std::fabs(want_w));
    // trainer.h: the momentum buffer holds A times the averaged (clipped) gradient
    merr = std::max(merr, std::fabs(double(m1[i]) - 2 * gc));
    mscale = std::max(mscale, std::fabs(2 * gc));
  }
  std::printf("[err] accumulated step vs hand computation (grad norm %.4g, clip factor %.4g, lr %g): "
              "max |w err| %.3g (largest update %.3g), max |momentum err| %.3g (largest %.3g); loss %.6f vs %.6f\n",
              norm, f, lr, werr, wscale, merr, mscale, r.history[0].losses.total, loss);
  EXPECT_LT(f, 1.0);  // the clip was active
  EXPECT_LT(werr, 1e-5 * wscale + 1.2e-7 * wmax);  // the update's rounding, plus one float ulp of the weights
  EXPECT_LT(merr, 1e-5 * mscale);
  EXPECT_EQ(r.history[0].losses.total, loss);
  EXPECT_NEAR(r.history[0].grad_norm, norm, 1e-5 * norm);
}

// One micro-batch per step (the default) keeps the gradients in the training graph's arena: the store holds
// parameters and momentum only, and two clipped steps give the same bits as the store's gradient block (the
// path grad_accumulation > 1 takes) driven by hand with the same multi-tensor update.
TEST(Trainer, GradientsInTheArenaGiveTheStoresBitsWithoutItsGradientBlock) {
  const RunConfig cfg = tiny_config(2, {"train.grad_clip_norm=0.5"});
  ASSERT_EQ(cfg.train.grad_accumulation, 1);
  TrainOptions o;
  o.run_dir = run_dir("arena_grads");
  const TrainResult r = run_training(cfg, o);
  ASSERT_EQ(r.reason, StopReason::kCompleted) << r.message;
  ASSERT_EQ(r.history.size(), 2u);
  ParamStore ps(Device::CPU);
  declare_faster_rcnn_params(ps, cfg.model);
  ps.allocate();  // ParamUse::Training: the store's gradient block
  load_checkpoint(o.run_dir + "/checkpoints/ckpt-0.safetensors", ps);
  EXPECT_EQ(r.param_store_bytes, 2 * ps.bytes());  // parameters + momentum
  DetectorSession session(cfg.model, ps, Device::CPU);
  DataLoader dl = trainer_loader(cfg, cfg.train.batch_size);
  std::vector<float*> var, acc, grad;
  std::vector<int64_t> sizes;
  for (const std::string& n : ps.names()) {
    var.push_back(ps.param(n).ptr<float>());
    acc.push_back(ps.momentum(n).ptr<float>());
    grad.push_back(ps.grad(n).ptr<float>());
    sizes.push_back(ps.param(n).numel());
  }
  const bool per_tensor = cfg.train.clip_mode == "per_tensor";
  for (int step = 1; step <= 2; ++step) {
    ps.zero_grads();
    Batch b;
    ASSERT_TRUE(dl.next(&b));
    const StepLosses l = session.train_step(b, step_seed(cfg.train.seed, step, 0));
    EXPECT_TRUE(same_losses(l, r.history[size_t(step - 1)].losses)) << "step " << step;
    SgdParams sp;
    sp.lr = cfg.train.lr_at(step - 1);
    sp.momentum = cfg.train.momentum;
    std::vector<double> norms(per_tensor ? sizes.size() : 1, 0.0);
    ASSERT_TRUE(clipped_sgd_update_list_cpu<float>(sp, cfg.train.grad_clip_norm, per_tensor, int(sizes.size()),
                                                   var.data(), acc.data(), grad.data(), sizes.data(), norms.data()));
    double sq = 0;
    for (double v : norms) sq += v * v;
    std::printf("[info] step %d: gradient norm %.6g (clip %.3g), trainer %.6g\n", step, std::sqrt(sq),
                cfg.train.grad_clip_norm, r.history[size_t(step - 1)].grad_norm);
    EXPECT_NEAR(r.history[size_t(step - 1)].grad_norm, std::sqrt(sq), 1e-12 * std::sqrt(sq));
  }
  ParamStore ps2(Device::CPU);
  declare_faster_rcnn_params(ps2, cfg.model);
  ps2.allocate();
  load_checkpoint(o.run_dir + "/checkpoints/ckpt-2.safetensors", ps2);
  const int64_t n = ps.all_params().numel();
  const auto [wdiff, mdiff] = count_differences(ps, ps2);
  std::printf("[err] arena-gradient run vs store-gradient steps: %lld of %lld weights differ, %lld momenta\n",
              (long long)wdiff, (long long)n, (long long)mdiff);
  EXPECT_EQ(wdiff, 0);
  EXPECT_EQ(mdiff, 0);
}

// train.recompute_backbone: the first stage recomputed in backward segment by segment (apply_segment_recompute).
// The recomputed forward runs the same CPU code on the same inputs, so two steps must give the same losses,
// gradient norms, weights and momenta to the bit, in a smaller plan.
TEST(Trainer, RecomputedBackboneTrainsBitForBitInASmallerPlan) {
  TrainOptions o0, o1;
  o0.run_dir = run_dir("recompute_off");
  o1.run_dir = run_dir("recompute_on");
  const TrainResult r0 = run_training(tiny_config(2, {"train.grad_clip_norm=0.5"}), o0);
  const TrainResult r1 = run_training(tiny_config(2, {"train.grad_clip_norm=0.5", "train.recompute_backbone=true"}), o1);
  ASSERT_EQ(r0.reason, StopReason::kCompleted) << r0.message;
  ASSERT_EQ(r1.reason, StopReason::kCompleted) << r1.message;
  ASSERT_EQ(r0.history.size(), 2u);
  ASSERT_EQ(r1.history.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(same_losses(r1.history[i].losses, r0.history[i].losses)) << "step " << i + 1;
    EXPECT_EQ(r1.history[i].grad_norm, r0.history[i].grad_norm) << "step " << i + 1;
  }
  const RunConfig cfg = tiny_config(2);
  ParamStore a(Device::CPU), b(Device::CPU);
  for (ParamStore* ps : {&a, &b}) {
    declare_faster_rcnn_params(*ps, cfg.model);
    ps->allocate();
  }
  load_checkpoint(o0.run_dir + "/checkpoints/ckpt-2.safetensors", a);
  load_checkpoint(o1.run_dir + "/checkpoints/ckpt-2.safetensors", b);
  const int64_t n = a.all_params().numel();
  const auto [wdiff, mdiff] = count_differences(a, b);
  std::printf("[err] recomputed backbone vs stored: %lld of %lld weights differ, %lld momenta; planned arena %zu -> "
              "%zu bytes\n", (long long)wdiff, (long long)n, (long long)mdiff, r0.planned_peak_bytes,
              r1.planned_peak_bytes);
  EXPECT_EQ(wdiff, 0);
  EXPECT_EQ(mdiff, 0);
  EXPECT_LT(r1.planned_peak_bytes, r0.planned_peak_bytes);
}

TEST(Trainer, TensorBoardEventsDecodeWithTheLossTagsAndValues) {
  const TrainResult& ref = reference_run();
  const auto files = list_tb_event_files(run_dir("reference"));
  ASSERT_EQ(files.size(), 1u);
  const auto events = read_tb_events(files[0]);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  std::map<int64_t, std::map<std::string, float>> by_step;
  for (const auto& e : events)
    for (const auto& s : e.scalars) by_step[e.step][s.tag] = s.value;
  std::vector<std::string> tags = loss_names();
  for (const char* t : {"total_loss", "lr", "step_time_s", "images_per_sec", "mem_planned_peak_mib"}) tags.push_back(t);
  double max_err = 0;
  for (const auto& rec : ref.history) {
    ASSERT_TRUE(by_step.count(rec.step)) << "no event for step " << rec.step;
    for (const auto& t : tags) ASSERT_TRUE(by_step[rec.step].count(t)) << t << " missing at step " << rec.step;
    const auto& m = by_step[rec.step];
    const double want[] = {rec.losses.rpn_cls, rec.losses.rpn_loc, rec.losses.cls, rec.losses.box, rec.losses.total};
    for (int k = 0; k < 5; ++k) max_err = std::max(max_err, std::fabs(double(m.at(tags[size_t(k)])) - double(float(want[k]))));
    max_err = std::max(max_err, std::fabs(double(m.at("lr")) - double(float(rec.lr))));
  }
  std::printf("[err] TensorBoard scalars vs the run's losses: max abs error %.3g over %zu steps\n", max_err,
              ref.history.size());
  EXPECT_EQ(max_err, 0.0);
  // CSV twin, resolved config, log and charts are in the run folder.
  for (const char* f : {"metrics.csv", "metrics.jsonl", "config.json", "train.log", "loss_chart.svg", "loss_chart.png"})
    EXPECT_TRUE(fs::exists(fs::path(run_dir("reference")) / f)) << f;
  const std::string svg = read_file(run_dir("reference") + "/loss_chart.svg");
  EXPECT_NE(svg.find("loss_box_reg"), std::string::npos);
  EXPECT_EQ(load_run_config(run_dir("reference") + "/config.json").train.steps, kSteps);
}

TEST(Trainer, FrozenParametersStayBitwiseUnchanged) {
  reference_run();
  const FasterRcnnConfig m = tiny_config(kSteps).model;
  DetectorShape s;
  s.height = s.width = 64;
  s.train = true;
  const DetectorGraph g = build_faster_rcnn(m, s);
  const auto tr = trainable_params(g.graph);
  const std::set<std::string> trainable(tr.begin(), tr.end());
  const SafeTensors p0 = read_safetensors(run_dir("reference") + "/checkpoints/ckpt-0.safetensors");
  const SafeTensors p6 = read_safetensors(run_dir("reference") + str("/checkpoints/ckpt-", kSteps, ".safetensors"));
  int frozen = 0, frozen_changed = 0, trained = 0, trained_changed = 0;
  for (const auto& t : p0.tensors) {
    if (t.name.rfind("momentum/", 0) == 0) continue;
    const bool changed = t.data != p6.at(t.name).data;
    if (trainable.count(t.name)) {
      ++trained;
      trained_changed += changed;
    } else {
      ++frozen;
      frozen_changed += changed;
      // their momentum stays exactly zero
      for (float v : p6.at("momentum/" + t.name).as<float>()) ASSERT_EQ(v, 0.f) << t.name;
    }
  }
  std::printf("[err] frozen tensors changed: %d of %d; trainable tensors changed: %d of %d\n", frozen_changed, frozen,
              trained_changed, trained);
  EXPECT_GT(frozen, 0);
  EXPECT_EQ(frozen_changed, 0);
  EXPECT_GT(trained_changed, trained / 2);
}

TEST(Trainer, LossFallsOnPhantomsAndValidationIsLogged) {
  TrainOptions o;
  o.run_dir = run_dir("falls");
  std::ostringstream out;
  o.progress = &out;
  const int n = 40;
  const TrainResult r = run_training(
      tiny_config(n, {"train.lr=0.01", "train.warmup_steps=5", "train.eval_every=20", "train.checkpoint_every=20",
                      "train.log_every=10", "train.flip=false"}),
      o);
  ASSERT_EQ(r.reason, StopReason::kCompleted) << r.message;
  ASSERT_EQ(r.history.size(), size_t(n));
  // Window means over the first and last 10 steps: the total, and the RPN terms alone. (With the TF-slim ResNet
  // input scale (mean-subtracted 0..255 pixels) and identity frozen BN, a from-scratch second stage sees large
  // activations: its losses are 0 on most steps with rare spikes, so the RPN terms are the steady signal.)
  double first = 0, last = 0, rpn_first = 0, rpn_last = 0;
  std::vector<double> tf, tl;
  for (int i = 0; i < 10; ++i) {
    const StepLosses& a = r.history[size_t(i)].losses;
    const StepLosses& b = r.history[size_t(n - 10 + i)].losses;
    first += a.total / 10;
    last += b.total / 10;
    rpn_first += (a.rpn_cls + a.rpn_loc) / 10;
    rpn_last += (b.rpn_cls + b.rpn_loc) / 10;
    tf.push_back(a.total);
    tl.push_back(b.total);
  }
  std::sort(tf.begin(), tf.end());
  std::sort(tl.begin(), tl.end());
  const double med_first = (tf[4] + tf[5]) / 2, med_last = (tl[4] + tl[5]) / 2;
  std::printf("[info] small_cpu on 6 phantoms, steps 1-10 -> %d-%d: total mean %.4f -> %.4f, median %.4f -> %.4f, "
              "rpn_cls+rpn_loc mean %.4f -> %.4f; %.2f steps/s; planned peak %.1f MiB, parameter store %.2f MiB, "
              "process peak %.1f MiB\n",
              n - 9, n, first, last, med_first, med_last, rpn_first, rpn_last, r.steps_per_sec,
              r.planned_peak_bytes / 1048576.0, r.param_store_bytes / 1048576.0, r.peak_rss_bytes / 1048576.0);
  EXPECT_LT(last, first);
  EXPECT_LT(med_last, med_first);
  EXPECT_LT(rpn_last, 0.8 * rpn_first);
  // Two validations (steps 20 and 40), printed per class, logged to eval/, best pointer set when AP is defined.
  ASSERT_EQ(r.validations.size(), 2u);
  EXPECT_EQ(r.validations[1].step, n);
  EXPECT_EQ(r.validations[0].ap50.size(), 3u);
  EXPECT_NE(out.str().find("validation @ step 20"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("AP@0.5 GGO"), std::string::npos);
  const MetricRows ev = read_metrics_jsonl(o.run_dir + "/eval/metrics.jsonl");
  ASSERT_EQ(ev.size(), 2u);
  if (std::isfinite(r.best_score)) {
    EXPECT_EQ(checkpoint_pointer(o.run_dir + "/checkpoints", "best"), r.best_step);
  }
  std::printf("[info] validation mAP@0.5: step 20 %.3f, step 40 %.3f\n", r.validations[0].map50,
              r.validations[1].map50);
  // Periodic lines (not a terminal): one every log_every steps.
  EXPECT_NE(out.str().find("step 10/40"), std::string::npos);
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
}

// The phantom records and run folders live under one temporary folder, removed after the last test.
class TmpCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(tmp_root(), ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TmpCleanup);

}  // namespace
}  // namespace ctdet
