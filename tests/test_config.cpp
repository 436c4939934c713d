// train/config: defaults against the spec's numbers (typed here from faster_rcnn_spec.md §1, §2, §8), JSON files
// with "base", overrides of every type, did-you-mean, type errors, round trip through run_dir/config.json, the
// TF pipeline.config reader on a hand-written fixture, syntax errors with line:col, and lr_at against hand formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "io/atomic_file.h"
#include "nn/error.h"
#include "test_util.h"
#include "train/config.h"

namespace fs = std::filesystem;
using namespace ctdet;

namespace {

std::string config_path(const std::string& name) { return ctdet::testing::source_dir() + "/configs/" + name; }

// The error text of f(), or "" when it does not throw ctdet::Error.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    std::printf("[error] %s\n", e.what());
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("ctdet_test_config_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

// The study's numbers, typed from the spec (§1 table, §2 flip, §8 optimizer), checked on any config that should
// carry them; `lr0` etc. differ between the two backbones.
void expect_study_numbers(const RunConfig& c, double lr0, double lr1, double lr2) {
  const FasterRcnnConfig& m = c.model;
  EXPECT_EQ(m.num_classes, 3);
  EXPECT_EQ(m.min_dimension, 600);
  EXPECT_EQ(m.max_dimension, 1024);
  EXPECT_EQ(m.anchor_scales, (std::vector<double>{0.25, 0.5, 1.0, 2.0}));
  EXPECT_EQ(m.anchor_aspect_ratios, (std::vector<double>{0.5, 1.0, 2.0}));
  EXPECT_EQ(m.anchor_base, 256);
  EXPECT_EQ(m.anchor_stride, 16);
  EXPECT_EQ(m.anchor_offset, 0);
  EXPECT_EQ(m.rpn_conv_depth, 512);
  EXPECT_EQ(m.rpn_init_std, 0.01);
  EXPECT_EQ(m.rpn_batch_size, 256);
  EXPECT_EQ(m.rpn_positive_fraction, 0.5);
  EXPECT_EQ(m.rpn_score_threshold, 0.0);
  EXPECT_EQ(m.rpn_nms_iou, 0.7);
  EXPECT_EQ(m.max_proposals, 300);
  EXPECT_EQ(m.rpn_loc_weight, 2.0);
  EXPECT_EQ(m.rpn_obj_weight, 1.0);
  EXPECT_EQ(m.crop_size, 14);
  EXPECT_EQ(m.crop_pool, 2);
  EXPECT_EQ(m.box_batch_size, 64);
  EXPECT_EQ(m.box_positive_fraction, 0.25);
  EXPECT_EQ(m.score_threshold, 0.0);
  EXPECT_EQ(m.nms_iou, 0.6);
  EXPECT_EQ(m.max_per_class, 100);
  EXPECT_EQ(m.max_total, 300);
  EXPECT_EQ(m.box_loc_weight, 2.0);
  EXPECT_EQ(m.box_cls_weight, 1.0);
  EXPECT_FALSE(m.bn_affine_trainable);
  const TrainConfig& t = c.train;
  EXPECT_EQ(t.batch_size, 1);
  EXPECT_EQ(t.momentum, 0.9);
  EXPECT_EQ(t.grad_clip_norm, 10.0);
  EXPECT_TRUE(t.flip);
  EXPECT_EQ(t.flip_prob, 0.5);
  EXPECT_EQ(t.steps, 316000);
  EXPECT_EQ(t.lr, lr0);
  ASSERT_EQ(t.lr_steps.size(), 2u);
  EXPECT_EQ(t.lr_steps[0].step, 900000);
  EXPECT_EQ(t.lr_steps[0].lr, lr1);
  EXPECT_EQ(t.lr_steps[1].step, 1200000);
  EXPECT_EQ(t.lr_steps[1].lr, lr2);
  EXPECT_EQ(t.warmup_steps, 0);
  EXPECT_EQ(c.data.class_names, (std::vector<std::string>{"GGO", "CD", "GGO+CD"}));
}

}  // namespace

TEST(Config, DefaultsAreTheStudyNumbers) {
  RunConfig def;
  EXPECT_EQ(def.model.backbone, BackboneKind::ResNet101);
  expect_study_numbers(def, 3e-4, 3e-5, 3e-6);
  EXPECT_NO_THROW(def.validate());

  RunConfig r = load_run_config(config_path("faster_rcnn_resnet101.json"));
  EXPECT_EQ(r.model.backbone, BackboneKind::ResNet101);
  EXPECT_EQ(r.model.resnet_units, (std::vector<int>{3, 4, 23, 3}));
  expect_study_numbers(r, 3e-4, 3e-5, 3e-6);
  // the file differs from the built-in defaults only in the data paths
  r.data.train = def.data.train;
  r.data.val = def.data.val;
  EXPECT_EQ(to_json(r), to_json(def));
}

TEST(Config, InceptionDiffersOnlyInBackboneAndLr) {
  RunConfig i = load_run_config(config_path("faster_rcnn_inception_v2.json"));
  RunConfig r = load_run_config(config_path("faster_rcnn_resnet101.json"));
  EXPECT_EQ(i.model.backbone, BackboneKind::InceptionV2);
  expect_study_numbers(i, 2e-4, 2e-5, 2e-6);
  // spec §1: "only the feature extractor type and the learning rate" differ
  i.model.backbone = r.model.backbone;
  i.train.lr = r.train.lr;
  i.train.lr_steps = r.train.lr_steps;
  EXPECT_EQ(to_json(i), to_json(r));
}

TEST(Config, SmallCpuInheritsFromResnet101) {
  RunConfig s = load_run_config(config_path("small_cpu.json"));
  EXPECT_EQ(s.model.backbone, BackboneKind::ResNet101);
  EXPECT_EQ(s.model.resnet_base_width, 4);
  EXPECT_EQ(s.model.resnet_units, (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(s.model.min_dimension, 128);
  EXPECT_EQ(s.model.max_dimension, 128);
  EXPECT_EQ(s.model.rpn_conv_depth, 32);
  EXPECT_EQ(s.model.max_proposals, 64);
  EXPECT_EQ(s.model.box_batch_size, 32);
  EXPECT_EQ(s.model.rpn_batch_size, 64);
  EXPECT_EQ(s.model.anchor_base, 64);
  EXPECT_EQ(s.model.anchor_stride, 16);
  // anchor sides 0.25*64 .. 2*64 = 16 .. 128 px for 128 px images
  double lo = 1e9, hi = 0;
  for (double sc : s.model.anchor_scales) {
    lo = std::min(lo, sc * s.model.anchor_base);
    hi = std::max(hi, sc * s.model.anchor_base);
  }
  EXPECT_EQ(lo, 16.0);
  EXPECT_EQ(hi, 128.0);
  EXPECT_EQ(s.train.steps, 300);
  EXPECT_EQ(s.train.checkpoint_every, 100);
  EXPECT_EQ(s.train.eval_every, 100);
  EXPECT_EQ(s.train.lr, 0.01);
  EXPECT_GT(s.train.warmup_steps, 0);
  EXPECT_LT(s.train.warmup_steps, s.train.steps / 5);
  EXPECT_EQ(s.train.device, "cpu");
  // keys small_cpu.json does not set come from the base file (spec values)
  EXPECT_EQ(s.train.momentum, 0.9);
  EXPECT_EQ(s.train.grad_clip_norm, 10.0);
  EXPECT_EQ(s.model.nms_iou, 0.6);
  EXPECT_EQ(s.model.crop_size, 14);
  EXPECT_EQ(s.model.anchor_aspect_ratios, (std::vector<double>{0.5, 1.0, 2.0}));
  EXPECT_EQ(s.data.class_names.size(), 3u);
}

TEST(Config, OverrideEveryType) {
  RunConfig c;
  apply_override(c, "train.steps=500");
  EXPECT_EQ(c.train.steps, 500);
  apply_override(c, "train.steps=1e6");  // an integral float is an int
  EXPECT_EQ(c.train.steps, 1000000);
  apply_override(c, "model.max_proposals = 128");
  EXPECT_EQ(c.model.max_proposals, 128);
  apply_override(c, "train.lr=1.5e-3");
  EXPECT_EQ(c.train.lr, 1.5e-3);
  apply_override(c, "train.flip=false");
  EXPECT_FALSE(c.train.flip);
  apply_override(c, "train.flip=1");
  EXPECT_TRUE(c.train.flip);
  apply_override(c, "train.deterministic=on");
  EXPECT_TRUE(c.train.deterministic);
  apply_override(c, "train.device=cpu");
  EXPECT_EQ(c.train.device, "cpu");
  apply_override(c, "train.memory_budget=8GiB");
  EXPECT_EQ(c.train.memory_budget, "8GiB");
  apply_override(c, "train.init=");
  EXPECT_EQ(c.train.init, "");
  apply_override(c, "data.train=\"/data/my records\"");
  EXPECT_EQ(c.data.train, "/data/my records");
  apply_override(c, "model.backbone=inception_v2");
  EXPECT_EQ(c.model.backbone, BackboneKind::InceptionV2);
  apply_override(c, "model.roi_crop=roi_align");
  EXPECT_EQ(c.model.roi_crop, RoiCropKind::RoiAlign);
  apply_override(c, "model.resnet_units=1,2,3,4");
  EXPECT_EQ(c.model.resnet_units, (std::vector<int>{1, 2, 3, 4}));
  apply_override(c, "model.resnet_units=[1, 1, 1, 1]");
  EXPECT_EQ(c.model.resnet_units, (std::vector<int>{1, 1, 1, 1}));
  apply_override(c, "model.anchor_scales=0.125,0.5,1,2");
  EXPECT_EQ(c.model.anchor_scales, (std::vector<double>{0.125, 0.5, 1, 2}));
  apply_override(c, "model.anchor_aspect_ratios=[1]");
  EXPECT_EQ(c.model.anchor_aspect_ratios, (std::vector<double>{1.0}));
  apply_override(c, "data.class_names=A,B");
  EXPECT_EQ(c.data.class_names, (std::vector<std::string>{"A", "B"}));
  apply_override(c, "data.class_names=[\"x,y\", \"z\"]");
  EXPECT_EQ(c.data.class_names, (std::vector<std::string>{"x,y", "z"}));
  apply_override(c, "train.lr_steps=100:0.1,200:1e-2");
  ASSERT_EQ(c.train.lr_steps.size(), 2u);
  EXPECT_EQ(c.train.lr_steps[0], (LrStep{100, 0.1}));
  EXPECT_EQ(c.train.lr_steps[1], (LrStep{200, 1e-2}));
  apply_override(c, "train.lr_steps=[{\"step\": 7, \"lr\": 0.5}, [9, 0.25]]");
  ASSERT_EQ(c.train.lr_steps.size(), 2u);
  EXPECT_EQ(c.train.lr_steps[0], (LrStep{7, 0.5}));
  EXPECT_EQ(c.train.lr_steps[1], (LrStep{9, 0.25}));
  apply_override(c, "train.lr_steps=");
  EXPECT_TRUE(c.train.lr_steps.empty());
  // load with overrides, validated at the end (two related keys changed together)
  RunConfig s = load_run_config(config_path("small_cpu.json"), {"model.max_proposals=16", "model.box_batch_size=8"});
  EXPECT_EQ(s.model.max_proposals, 16);
  EXPECT_EQ(s.model.box_batch_size, 8);
}

TEST(Config, UnknownKeyNamesTheNearest) {
  RunConfig c;
  std::string e = error_of([&] { apply_override(c, "train.stpes=5"); });
  EXPECT_TRUE(contains(e, "'train.stpes'")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'train.steps'")) << e;
  e = error_of([&] { apply_override(c, "model.anchor_scale=1,2"); });
  EXPECT_TRUE(contains(e, "did you mean 'model.anchor_scales'")) << e;
  e = error_of([&] { apply_override(c, "momentum=0.5"); });
  EXPECT_TRUE(contains(e, "did you mean 'train.momentum'")) << e;
  e = error_of([&] { apply_override(c, "train.steps"); });
  EXPECT_TRUE(contains(e, "KEY=VALUE")) << e;
  EXPECT_EQ(nearest_config_key("data.clas_names"), "data.class_names");

  fs::path d = temp_dir("unknown");
  write(d / "bad.json", "{\"train\": {\"steps\": 10, \"lr_step\": []}}");
  e = error_of([&] { load_run_config((d / "bad.json").string()); });
  EXPECT_TRUE(contains(e, "bad.json")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'train.lr_steps'")) << e;
  write(d / "sec.json", "{\"trian\": {\"steps\": 10}}");
  e = error_of([&] { load_run_config((d / "sec.json").string()); });
  EXPECT_TRUE(contains(e, "unknown section 'trian'") && contains(e, "did you mean 'train'")) << e;
  fs::remove_all(d);
}

TEST(Config, WrongTypeNamesKeyValueAndType) {
  RunConfig c;
  std::string e = error_of([&] { apply_override(c, "train.steps=abc"); });
  EXPECT_TRUE(contains(e, "train.steps") && contains(e, "'abc'") && contains(e, "expects int")) << e;
  e = error_of([&] { apply_override(c, "train.steps=1.5"); });
  EXPECT_TRUE(contains(e, "'1.5'") && contains(e, "expects int")) << e;
  e = error_of([&] { apply_override(c, "model.resnet_units=1,x,3,4"); });
  EXPECT_TRUE(contains(e, "model.resnet_units") && contains(e, "expects int list")) << e;
  e = error_of([&] { apply_override(c, "train.flip=maybe"); });
  EXPECT_TRUE(contains(e, "train.flip") && contains(e, "'maybe'") && contains(e, "expects bool")) << e;
  e = error_of([&] { apply_override(c, "train.lr_steps=100-0.1"); });
  EXPECT_TRUE(contains(e, "train.lr_steps") && contains(e, "expects lr steps")) << e;
  e = error_of([&] { apply_override(c, "model.num_classes=99999999999"); });
  EXPECT_TRUE(contains(e, "model.num_classes") && contains(e, "does not fit an int")) << e;
  e = error_of([&] { apply_override(c, "model.backbone=vgg16"); });
  EXPECT_TRUE(contains(e, "'vgg16'") && contains(e, "resnet101")) << e;

  fs::path d = temp_dir("type");
  write(d / "t.json", "{\"train\": {\"flip\": \"yes\"}}");
  e = error_of([&] { load_run_config((d / "t.json").string()); });
  EXPECT_TRUE(contains(e, "t.json") && contains(e, "train.flip") && contains(e, "\"yes\"") && contains(e, "bool"))
      << e;
  write(d / "s.json", "{\"model\": {\"anchor_scales\": 0.5}}");
  e = error_of([&] { load_run_config((d / "s.json").string()); });
  EXPECT_TRUE(contains(e, "model.anchor_scales") && contains(e, "double list")) << e;
  write(d / "j.json", "{\"model\": {\n  \"num_classes\": 3,\n  oops\n}}");
  e = error_of([&] { load_run_config((d / "j.json").string()); });
  EXPECT_TRUE(contains(e, "j.json:3:3")) << e;
  fs::remove_all(d);
}

TEST(Config, ValidationNamesTheKey) {
  std::string e = error_of([] { load_run_config(config_path("small_cpu.json"), {"model.num_classes=4"}); });
  EXPECT_TRUE(contains(e, "model.num_classes = 4") && contains(e, "data.class_names")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.clip_mode=max"}); });
  EXPECT_TRUE(contains(e, "train.clip_mode") && contains(e, "'max'")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.memory_budget=8XB"}); });
  EXPECT_TRUE(contains(e, "train.memory_budget") && contains(e, "8XB")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.lr_steps=200:0.1,100:0.01"}); });
  EXPECT_TRUE(contains(e, "train.lr_steps") && contains(e, "increase")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"model.box_batch_size=65"}); });
  EXPECT_TRUE(contains(e, "model.box_batch_size")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.device=gpu"}); });
  EXPECT_TRUE(contains(e, "train.device") && contains(e, "'gpu'")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.init=weights.pt"}); });
  EXPECT_TRUE(contains(e, "train.init") && contains(e, "safetensors")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"train.batch_size=3", "train.grad_accumulation=2"}); });
  EXPECT_TRUE(contains(e, "train.grad_accumulation 2") && contains(e, "train.batch_size 3")) << e;
  e = error_of([] { load_run_config(config_path("small_cpu.json"), {"data.class_names=A,B,A"}); });
  EXPECT_TRUE(contains(e, "'A' listed twice")) << e;
}

TEST(Config, BaseInheritance) {
  fs::path d = temp_dir("base");
  fs::create_directories(d / "sub");
  write(d / "root.json", "{\"model\": {\"min_dimension\": 400, \"max_dimension\": 800}, \"train\": {\"steps\": 7}}");
  write(d / "sub" / "mid.json", "{\"base\": \"../root.json\", \"train\": {\"steps\": 8, \"seed\": 3}}");
  write(d / "leaf.json", "{\"base\": \"sub/mid.json\", \"comment\": \"x\", \"train\": {\"seed\": 4}}");
  RunConfig c = load_run_config((d / "leaf.json").string());
  EXPECT_EQ(c.model.min_dimension, 400);  // from root, through mid
  EXPECT_EQ(c.model.max_dimension, 800);
  EXPECT_EQ(c.train.steps, 8);            // mid over root
  EXPECT_EQ(c.train.seed, 4);             // leaf over mid
  EXPECT_EQ(c.train.lr, 3e-4);            // default, set nowhere

  write(d / "a.json", "{\"base\": \"b.json\"}");
  write(d / "b.json", "{\"base\": \"a.json\"}");
  std::string e = error_of([&] { load_run_config((d / "a.json").string()); });
  EXPECT_TRUE(contains(e, "cycle")) << e;
  write(d / "m.json", "{\"base\": \"nope.json\"}");
  e = error_of([&] { load_run_config((d / "m.json").string()); });
  EXPECT_TRUE(contains(e, "nope.json") && contains(e, "does not exist")) << e;
  fs::remove_all(d);
}

TEST(Config, SaveAndLoadRoundTrip) {
  RunConfig c = load_run_config(config_path("small_cpu.json"),
                                {"train.lr=0.30000000000000004", "model.anchor_offset=8", "train.seed=12345678901",
                                 "train.lr_steps=10:0.1,20:1e-300", "data.class_names=[\"GGO\", \"CD\", \"é \\\"q\\\"\"]",
                                 "train.memory_budget=3.5GiB", "model.roi_crop=roi_align", "train.clip_mode=per_tensor",
                                 "model.bn_affine_trainable=true", "data.val=/tmp/x y/val"});
  fs::path d = temp_dir("roundtrip");
  std::string path = save_resolved_config((d / "run1").string(), c);
  EXPECT_EQ(path, (d / "run1" / "config.json").string());
  RunConfig back = load_run_config(path);
  EXPECT_EQ(to_json(back), to_json(c));
  // field by field for the ones a text round trip could disturb
  EXPECT_EQ(back.train.lr, 0.30000000000000004);
  EXPECT_EQ(back.train.seed, 12345678901);
  EXPECT_EQ(back.train.lr_steps, c.train.lr_steps);
  EXPECT_EQ(back.data.class_names, c.data.class_names);
  EXPECT_EQ(back.model.roi_crop, RoiCropKind::RoiAlign);
  EXPECT_EQ(back.model.anchor_scales, c.model.anchor_scales);
  EXPECT_TRUE(back.model.bn_affine_trainable);
  // every key of the table is written
  std::string text = read_file(path);
  size_t n = 0;
  for (const auto& k : config_keys()) {
    std::string leaf = k.name.substr(k.name.find('.') + 1);
    if (contains(text, "\"" + leaf + "\":")) ++n;
    else ADD_FAILURE() << "config.json misses " << k.name;
  }
  std::printf("[info] config.json: %zu of %zu keys written\n", n, config_keys().size());
  fs::remove_all(d);
}

TEST(Config, LrAtBoundariesAndWarmup) {
  RunConfig c;
  // manual_step_learning_rate: the new rate applies from the boundary step on
  struct Case { int64_t step; double want; };
  std::vector<Case> cases = {{0, 3e-4}, {899999, 3e-4}, {900000, 3e-5}, {1199999, 3e-5}, {1200000, 3e-6},
                             {5000000, 3e-6}};
  for (const auto& k : cases) EXPECT_EQ(c.lr_at(k.step), k.want) << "step " << k.step;

  // linear warmup: lr * (f + (1 - f) * s / W) for s < W, computed here by hand for lr 0.01, f 0.1, W 20
  c.train.lr = 0.01;
  c.train.warmup_steps = 20;
  c.train.warmup_factor = 0.1;
  c.train.lr_steps = {{240, 0.001}};
  std::vector<double> got, want;
  for (int64_t s : {0, 1, 10, 19, 20, 21, 239, 240, 299}) {
    got.push_back(c.lr_at(s));
    double w = s < 20 ? 0.01 * (0.1 + 0.9 * double(s) / 20.0) : (s >= 240 ? 0.001 : 0.01);
    want.push_back(w);
  }
  auto st = ctdet::testing::compare(got, want);
  ctdet::testing::print_err("lr_at warmup + steps vs hand formula", st);
  EXPECT_LT(st.max_abs, 1e-15);
  EXPECT_DOUBLE_EQ(c.lr_at(0), 0.001);
  EXPECT_DOUBLE_EQ(c.lr_at(10), 0.0055);

  // TF warmup (manual_step_learning_rate { warmup: true }): linear from initial to the first rate over its step
  const char* text =
      "train_config { optimizer { momentum_optimizer { learning_rate { manual_step_learning_rate {\n"
      "  initial_learning_rate: 0.001 warmup: true\n"
      "  schedule { step: 100 learning_rate: 0.01 }\n"
      "  schedule { step: 500 learning_rate: 0.002 } } } } } }\n";
  RunConfig t = parse_tf_pipeline_config(text, "warm.config");
  got.clear();
  want.clear();
  for (int64_t s : {0, 1, 37, 50, 99, 100, 101, 499, 500, 10000}) {
    got.push_back(t.lr_at(s));
    want.push_back(s < 100 ? 0.001 + (0.01 - 0.001) * double(s) / 100.0 : (s < 500 ? 0.01 : 0.002));
  }
  st = ctdet::testing::compare(got, want);
  ctdet::testing::print_err("lr_at TF warmup vs linear interpolation", st);
  EXPECT_LT(st.max_rel, 1e-14);
}

TEST(Config, PipelineConfigFixture) {
  std::vector<std::string> warnings;
  RunConfig c = read_tf_pipeline_config(ctdet::testing::fixture_path("config/study_resnet101.config"), &warnings);
  for (const auto& w : warnings) std::printf("[warning] %s\n", w.c_str());
  EXPECT_EQ(c.model.backbone, BackboneKind::ResNet101);
  expect_study_numbers(c, 3e-4, 3e-5, 3e-6);  // the "step: 0" entry becomes the base lr
  EXPECT_EQ(c.data.train, "records/train-\?\?\?\?\?-of-00002.tfrecord");
  EXPECT_EQ(c.data.val, "records/val-00000-of-00001.tfrecord");
  EXPECT_EQ(c.train.init, "");  // a TF checkpoint: warned, not used
  // the whole model equals the built-in study defaults
  RunConfig def;
  c.data = def.data;
  EXPECT_EQ(to_json(c), to_json(def));

  // warnings: the unused eval fields and the TF checkpoint, each with file:line:col
  auto has = [&](const std::string& part) {
    for (const auto& w : warnings)
      if (contains(w, part)) return true;
    return false;
  };
  EXPECT_TRUE(has("study_resnet101.config:101:1: 'eval_config' is not used")) << "eval_config warning";
  EXPECT_TRUE(has(":111:3: 'eval_input_reader.shuffle' is not used"));
  EXPECT_TRUE(has(":85:3: fine_tune_checkpoint 'PATH_TO_BE_CONFIGURED/model.ckpt' is a TF checkpoint"));
  EXPECT_EQ(warnings.size(), 4u);  // eval_config, shuffle, num_readers, fine_tune_checkpoint
}

TEST(Config, PipelineConfigInceptionAndWarnings) {
  const char* text =
      "model { faster_rcnn {\n"
      "  num_classes: 3\n"
      "  feature_extractor { type: \"faster_rcnn_inception_v2\" first_stage_features_stride: 8 }\n"
      "  first_stage_anchor_generator { grid_anchor_generator { scales: [0.5, 1.0] aspect_ratios: [1.0]\n"
      "    height: 128 width: 128 height_stride: 16 width_stride: 16 } }\n"
      "  some_future_field: 12\n"
      "  second_stage_post_processing { batch_non_max_suppression { iou_threshold: 0.5 } score_converter: SIGMOID }\n"
      "} }\n"
      "train_config { batch_size: 2 num_steps: 1000\n"
      "  optimizer { momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.002 } }\n"
      "    momentum_optimizer_value: 0.8 } }\n"
      "  data_augmentation_options { random_vertical_flip { } }\n"
      "  fine_tune_checkpoint: 'weights/r101.safetensors' }\n";
  std::vector<std::string> w;
  RunConfig c = parse_tf_pipeline_config(text, "inline.config", &w);
  for (const auto& s : w) std::printf("[warning] %s\n", s.c_str());
  EXPECT_EQ(c.model.backbone, BackboneKind::InceptionV2);
  EXPECT_EQ(c.model.anchor_scales, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(c.model.anchor_aspect_ratios, (std::vector<double>{1.0}));
  EXPECT_EQ(c.model.anchor_base, 128);
  EXPECT_EQ(c.model.nms_iou, 0.5);
  EXPECT_EQ(c.train.batch_size, 2);
  EXPECT_EQ(c.train.steps, 1000);
  EXPECT_EQ(c.train.lr, 0.002);
  EXPECT_TRUE(c.train.lr_steps.empty());
  EXPECT_EQ(c.train.momentum, 0.8);
  EXPECT_FALSE(c.train.flip);  // no random_horizontal_flip
  EXPECT_EQ(c.train.init, "weights/r101.safetensors");
  auto has = [&](const std::string& part) {
    for (const auto& s : w)
      if (contains(s, part)) return true;
    return false;
  };
  EXPECT_TRUE(has("inline.config:6:3: 'model.faster_rcnn.some_future_field' is not used"));
  EXPECT_TRUE(has("inline.config:3:56: 'first_stage_features_stride' = 8 is not supported"));
  EXPECT_TRUE(has("'score_converter' = SIGMOID is not supported"));
  EXPECT_TRUE(has("inline.config:12:31: 'train_config.data_augmentation_options.random_vertical_flip' is not used"));
  EXPECT_EQ(w.size(), 4u);

  std::string e = error_of([] {
    parse_tf_pipeline_config("model { faster_rcnn { feature_extractor { type: 'faster_rcnn_nas' } } }", "x.config");
  });
  EXPECT_TRUE(contains(e, "x.config:1:43") && contains(e, "faster_rcnn_nas")) << e;
  e = error_of([] { parse_tf_pipeline_config("model { faster_rcnn { num_classes: 'three' } }", "x.config"); });
  EXPECT_TRUE(contains(e, "x.config:1:23") && contains(e, "num_classes") && contains(e, "'three'")) << e;
  e = error_of([] { parse_tf_pipeline_config("model { ssd { num_classes: 3 } }", "x.config"); });
  EXPECT_TRUE(contains(e, "x.config:1:1") && contains(e, "faster_rcnn")) << e;
}

TEST(Config, PipelineSyntaxErrorsNameLineAndColumn) {
  struct Case { const char* text; const char* where; const char* what; };
  std::vector<Case> cases = {
      {"model {\n  faster_rcnn {\n    num_classes 3\n  }\n}\n", "s.config:3:17", "expected ':' or '{' after field 'num_classes'"},
      {"model {\n  faster_rcnn {\n    num_classes: 3\n", "s.config:4:1", "to close the message opened at 2:3"},
      {"train_config { num_steps: 10 }\n}\n", "s.config:2:1", "expected a field name"},
      {"# comment\ntrain_config { fine_tune_checkpoint: 'abc\n }", "s.config:2:38", "unterminated string"},
      {"train_config {\n  num_steps: @\n}", "s.config:2:14", "unexpected character '@'"},
      {"a { b: [1, 2 3] }", "s.config:1:14", "expected ',' or ']'"},
      {"a { b: }", "s.config:1:8", "expected a value for field 'b'"},
  };
  for (const auto& k : cases) {
    std::string e = error_of([&] { parse_tf_pipeline_config(k.text, "s.config"); });
    EXPECT_TRUE(contains(e, k.where) && contains(e, "syntax error") && contains(e, k.what)) << e;
  }
}

TEST(Config, HelpAndReadmeListEveryKey) {
  std::string help = config_help();
  auto keys = config_keys();
  EXPECT_GT(keys.size(), 60u);
  for (const auto& k : keys) EXPECT_TRUE(contains(help, "  " + k.name + "  (")) << k.name;
  // configs/README.md carries the generated table verbatim (regenerate it when a key changes)
  std::string readme = read_file(config_path("README.md"));
  std::string table = config_markdown_table();
  size_t lines = 0, p = 0;
  while (p < table.size()) {
    size_t q = table.find('\n', p);
    std::string line = table.substr(p, q - p);
    EXPECT_TRUE(contains(readme, line)) << "configs/README.md is missing: " << line;
    ++lines;
    p = q + 1;
  }
  std::printf("[info] %zu keys, README table lines checked: %zu\n", keys.size(), lines);
}

TEST(Config, ResolveShards) {
  fs::path d = temp_dir("shards");
  for (const char* n : {"train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
                        "val-00000-of-00001.tfrecord", "label_map.pbtxt"})
    write(d / n, "x");
  auto tr = resolve_shards(d.string(), "train");
  ASSERT_EQ(tr.size(), 2u);
  EXPECT_EQ(tr[0], (d / "train-00000-of-00002.tfrecord").string());
  EXPECT_EQ(tr[1], (d / "train-00001-of-00002.tfrecord").string());
  EXPECT_EQ(resolve_shards((d / "train").string(), "train"), tr);
  EXPECT_EQ(resolve_shards((d / "train-\?\?\?\?\?-of-00002.tfrecord").string(), "train"), tr);
  auto va = resolve_shards(d.string(), "val");
  ASSERT_EQ(va.size(), 1u);
  EXPECT_EQ(resolve_shards(va[0], "val"), va);
  fs::remove(d / "train-00001-of-00002.tfrecord");
  std::string e = error_of([&] { resolve_shards(d.string(), "train"); });
  EXPECT_TRUE(contains(e, "shard 1 of 2") && contains(e, "-00001-of-00002")) << e;
  e = error_of([&] { resolve_shards(d.string(), "test"); });
  EXPECT_TRUE(contains(e, "data.test") && contains(e, "no TFRecord files match")) << e;
  e = error_of([&] { resolve_shards("", "train"); });
  EXPECT_TRUE(contains(e, "data.train is empty")) << e;
  fs::remove_all(d);
}
