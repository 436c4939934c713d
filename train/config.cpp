#include "train/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/label_map.h"
#include "nn/error.h"
#include "nn/planner.h"

namespace fs = std::filesystem;

namespace ctdet {

using json = nlohmann::ordered_json;

// =====================================================================================================================
// Training / data numbers
// =====================================================================================================================

double TrainConfig::lr_at(int64_t step) const {
  double r = lr;
  for (const LrStep& s : lr_steps)
    if (step >= s.step) r = s.lr;
  if (warmup_steps > 0 && step < warmup_steps) {
    double a = double(std::max<int64_t>(step, 0)) / double(warmup_steps);
    r *= warmup_factor + (1.0 - warmup_factor) * a;
  }
  return r;
}

void TrainConfig::validate() const {
  CTDET_CHECK(steps >= 1, "train.steps must be >= 1, got ", steps);
  CTDET_CHECK(batch_size >= 1 && batch_size <= 4096, "train.batch_size must be in [1, 4096], got ", batch_size);
  CTDET_CHECK(seed >= 0, "train.seed must be >= 0, got ", seed);
  CTDET_CHECK(std::isfinite(lr) && lr > 0, "train.lr must be > 0, got ", lr);
  for (size_t i = 0; i < lr_steps.size(); ++i) {
    CTDET_CHECK(lr_steps[i].step >= 0, "train.lr_steps[", i, "].step must be >= 0, got ", lr_steps[i].step);
    CTDET_CHECK(std::isfinite(lr_steps[i].lr) && lr_steps[i].lr >= 0, "train.lr_steps[", i, "].lr must be >= 0, got ",
                lr_steps[i].lr);
    CTDET_CHECK(i == 0 || lr_steps[i].step > lr_steps[i - 1].step, "train.lr_steps: steps must increase strictly, got ",
                lr_steps[i - 1].step, " then ", lr_steps[i].step);
  }
  CTDET_CHECK(warmup_steps >= 0, "train.warmup_steps must be >= 0, got ", warmup_steps);
  CTDET_CHECK(warmup_factor >= 0 && warmup_factor <= 1, "train.warmup_factor must be in [0, 1], got ", warmup_factor);
  CTDET_CHECK(momentum >= 0 && momentum < 1, "train.momentum must be in [0, 1), got ", momentum);
  CTDET_CHECK(std::isfinite(grad_clip_norm) && grad_clip_norm >= 0, "train.grad_clip_norm must be >= 0 (0 = off), got ",
              grad_clip_norm);
  CTDET_CHECK(clip_mode == "global" || clip_mode == "per_tensor", "train.clip_mode: '", clip_mode,
              "' (known: global, per_tensor)");
  CTDET_CHECK(grad_accumulation >= 1, "train.grad_accumulation must be >= 1, got ", grad_accumulation);
  CTDET_CHECK(batch_size % grad_accumulation == 0,
              "train.grad_accumulation ", grad_accumulation, " must divide train.batch_size ", batch_size,
              " (each micro-batch holds batch_size / grad_accumulation images)");
  if (!memory_budget.empty()) {
    size_t b = 0;
    try {
      b = parse_bytes(memory_budget);
    } catch (const Error& e) {
      CTDET_FAIL("train.memory_budget: ", e.what());
    }
    CTDET_CHECK(b > 0, "train.memory_budget must be > 0 or \"\" (device free memory), got '", memory_budget, "'");
  }
  CTDET_CHECK(checkpoint_every >= 0, "train.checkpoint_every must be >= 0 (0 = only at the end), got ", checkpoint_every);
  CTDET_CHECK(keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1, got ", keep_checkpoints);
  CTDET_CHECK(eval_every >= 0, "train.eval_every must be >= 0 (0 = only at the end), got ", eval_every);
  CTDET_CHECK(log_every >= 1, "train.log_every must be >= 1, got ", log_every);
  CTDET_CHECK(profile_step == 0 || profile_step >= 2,
              "train.profile_step must be 0 (off) or >= 2 (step 1 builds and plans the graph), got ", profile_step);
  CTDET_CHECK(device == "cpu" || device == "cuda" || device == "auto", "train.device: '", device,
              "' (known: cpu, cuda, auto)");
  CTDET_CHECK(flip_prob >= 0 && flip_prob <= 1, "train.flip_prob must be in [0, 1], got ", flip_prob);
  CTDET_CHECK(init.empty() || (init.size() > 12 && init.compare(init.size() - 12, 12, ".safetensors") == 0),
              "train.init: '", init, "' must be a .safetensors file (or \"\" to train from scratch)");
}

void DataConfig::validate() const {
  CTDET_CHECK(!class_names.empty(), "data.class_names must not be empty");
  std::set<std::string> seen;
  for (const auto& c : class_names) {
    CTDET_CHECK(!c.empty(), "data.class_names: empty class name");
    CTDET_CHECK(seen.insert(c).second, "data.class_names: '", c, "' listed twice");
  }
  CTDET_CHECK(num_workers >= 1 && num_workers <= 256, "data.num_workers must be in [1, 256], got ", num_workers);
}

void RunConfig::validate() const {
  model.validate();
  train.validate();
  data.validate();
  CTDET_CHECK(size_t(model.num_classes) == data.class_names.size(), "model.num_classes = ", model.num_classes,
              " but data.class_names has ", data.class_names.size(), " names");
}

// =====================================================================================================================
// The key table
// =====================================================================================================================
namespace {

enum class KT { Int, Double, Bool, String, IntList, DoubleList, StringList, LrSteps };

const char* kt_name(KT t) {
  switch (t) {
    case KT::Int: return "int";
    case KT::Double: return "double";
    case KT::Bool: return "bool";
    case KT::String: return "string";
    case KT::IntList: return "int list";
    case KT::DoubleList: return "double list";
    case KT::StringList: return "string list";
    case KT::LrSteps: return "lr steps";
  }
  return "?";
}

const char* kt_example(KT t) {
  switch (t) {
    case KT::Int: return "500";
    case KT::Double: return "0.001";
    case KT::Bool: return "true";
    case KT::String: return "text";
    case KT::IntList: return "1,1,1,1";
    case KT::DoubleList: return "0.25,0.5,1,2";
    case KT::StringList: return "GGO,CD,GGO+CD";
    case KT::LrSteps: return "900000:3e-5,1200000:3e-6";
  }
  return "";
}

struct Key {
  std::string name;     // "section.key"
  KT type;
  std::string choices;  // "a|b" for strings with a fixed set (shown as the type), else ""
  std::string doc;
  std::function<json(const RunConfig&)> get;
  std::function<void(RunConfig&, const json&)> set;  // the json is already of `type`
};

template <typename T> struct KtOf;
template <> struct KtOf<int> { static constexpr KT v = KT::Int; };
template <> struct KtOf<int64_t> { static constexpr KT v = KT::Int; };
template <> struct KtOf<double> { static constexpr KT v = KT::Double; };
template <> struct KtOf<bool> { static constexpr KT v = KT::Bool; };
template <> struct KtOf<std::string> { static constexpr KT v = KT::String; };
template <> struct KtOf<std::vector<int>> { static constexpr KT v = KT::IntList; };
template <> struct KtOf<std::vector<double>> { static constexpr KT v = KT::DoubleList; };
template <> struct KtOf<std::vector<std::string>> { static constexpr KT v = KT::StringList; };
template <> struct KtOf<std::vector<LrStep>> { static constexpr KT v = KT::LrSteps; };

int to_int_checked(const json& j, const std::string& name) {
  int64_t v = j.get<int64_t>();
  CTDET_CHECK(v >= INT_MIN && v <= INT_MAX, "config key '", name, "': ", v, " does not fit an int");
  return int(v);
}

template <typename T>
json to_js(const T& v) {
  if constexpr (std::is_same_v<T, std::vector<LrStep>>) {
    json a = json::array();
    for (const auto& s : v) a.push_back(json{{"step", s.step}, {"lr", s.lr}});
    return a;
  } else {
    return json(v);
  }
}

template <typename T>
T from_js(const json& j, const std::string& name) {
  if constexpr (std::is_same_v<T, int>) {
    return to_int_checked(j, name);
  } else if constexpr (std::is_same_v<T, std::vector<int>>) {
    std::vector<int> out;
    for (const auto& e : j) out.push_back(to_int_checked(e, name));
    return out;
  } else if constexpr (std::is_same_v<T, std::vector<LrStep>>) {
    std::vector<LrStep> out;
    for (const auto& e : j) out.push_back({e.at("step").get<int64_t>(), e.at("lr").get<double>()});
    return out;
  } else {
    return j.get<T>();
  }
}

template <typename S, typename T>
Key field(const std::string& name, S RunConfig::*sec, T S::*mem, const std::string& doc, const std::string& choices = "") {
  Key k;
  k.name = name;
  k.type = KtOf<T>::v;
  k.choices = choices;
  k.doc = doc;
  k.get = [sec, mem](const RunConfig& c) { return to_js(c.*sec.*mem); };
  k.set = [sec, mem, name](RunConfig& c, const json& j) { c.*sec.*mem = from_js<T>(j, name); };
  return k;
}

std::vector<Key> build_keys() {
  using M = FasterRcnnConfig;
  using T = TrainConfig;
  using D = DataConfig;
  auto m = &RunConfig::model;
  auto t = &RunConfig::train;
  auto d = &RunConfig::data;
  std::vector<Key> k;
  // ---- model ----
  {
    Key b;
    b.name = "model.backbone";
    b.type = KT::String;
    b.choices = "resnet101|inception_v2";
    b.doc = "backbone network (spec §3)";
    b.get = [](const RunConfig& c) { return json(backbone_kind_name(c.model.backbone)); };
    b.set = [](RunConfig& c, const json& j) { c.model.backbone = parse_backbone_kind(j.get<std::string>()); };
    k.push_back(b);
  }
  k.push_back(field("model.input_normalization", m, &M::input_normalization,
                    "pixel normalisation: auto (the backbone's: resnet for ResNet, inception for Inception), resnet "
                    "(subtract channel means), inception (x*2/255-1), none (spec §2)", "auto|resnet|inception|none"));
  k.push_back(field("model.resnet_layout", m, &M::resnet_layout,
                    "ResNet stride placement: tf_slim (the study's) or torchvision (torchvision weights load exactly) "
                    "(spec §3.1)", "tf_slim|torchvision"));
  k.push_back(field("model.resnet_base_width", m, &M::resnet_base_width,
                    "channels of the ResNet stem / first bottleneck; 64 = ResNet-101, 4 = tiny CPU model (spec §3.1)"));
  k.push_back(field("model.resnet_units", m, &M::resnet_units,
                    "bottleneck units in block1..block4; 3,4,23,3 = ResNet-101 (spec §3.1)"));
  k.push_back(field("model.depth_multiplier", m, &M::depth_multiplier,
                    "Inception-v2 channel multiplier, min depth 16 (spec §3.2)"));
  k.push_back(field("model.bn_affine_trainable", m, &M::bn_affine_trainable,
                    "frozen-BN gamma/beta receive gradients (statistics never update) (spec §3, §8)"));
  k.push_back(field("model.num_classes", m, &M::num_classes,
                    "object classes without background; must equal the length of data.class_names (spec §1)"));
  k.push_back(field("model.min_dimension", m, &M::min_dimension,
                    "keep-aspect resize: short side target, pixels (spec §2)"));
  k.push_back(field("model.max_dimension", m, &M::max_dimension,
                    "keep-aspect resize: long side cap, pixels (spec §2)"));
  k.push_back(field("model.anchor_scales", m, &M::anchor_scales,
                    "anchor scales, multiples of anchor_base (spec §4.1)"));
  k.push_back(field("model.anchor_aspect_ratios", m, &M::anchor_aspect_ratios,
                    "anchor aspect ratios width/height (spec §4.1)"));
  k.push_back(field("model.anchor_base", m, &M::anchor_base, "anchor base size, pixels (spec §4.1)"));
  k.push_back(field("model.anchor_stride", m, &M::anchor_stride,
                    "anchor centre spacing, pixels; the feature stride 16 (spec §4.1)"));
  k.push_back(field("model.anchor_offset", m, &M::anchor_offset, "first anchor centre, pixels (spec §4.1)"));
  k.push_back(field("model.rpn_conv_depth", m, &M::rpn_conv_depth, "RPN 3x3 conv channels (spec §4.2)"));
  k.push_back(field("model.rpn_init_std", m, &M::rpn_init_std,
                    "RPN conv init, truncated normal std (spec §4.2)"));
  k.push_back(field("model.rpn_positive_iou", m, &M::rpn_positive_iou,
                    "anchor is positive at IoU >= this (spec §4.4)"));
  k.push_back(field("model.rpn_negative_iou", m, &M::rpn_negative_iou,
                    "anchor is negative at IoU < this (spec §4.4)"));
  k.push_back(field("model.rpn_batch_size", m, &M::rpn_batch_size, "anchors sampled per image (spec §4.4)"));
  k.push_back(field("model.rpn_positive_fraction", m, &M::rpn_positive_fraction,
                    "largest positive share of the sampled anchors (spec §4.4)"));
  k.push_back(field("model.rpn_nms_iou", m, &M::rpn_nms_iou, "proposal NMS IoU threshold (spec §4.5)"));
  k.push_back(field("model.rpn_score_threshold", m, &M::rpn_score_threshold,
                    "proposal NMS score threshold (spec §4.5)"));
  k.push_back(field("model.max_proposals", m, &M::max_proposals,
                    "proposals kept after NMS, training and inference (spec §4.5)"));
  k.push_back(field("model.rpn_loc_weight", m, &M::rpn_loc_weight, "RPN localization loss weight (spec §4.4)"));
  k.push_back(field("model.rpn_obj_weight", m, &M::rpn_obj_weight, "RPN objectness loss weight (spec §4.4)"));
  {
    Key r;
    r.name = "model.roi_crop";
    r.type = KT::String;
    r.choices = "crop_and_resize|roi_align";
    r.doc = "ROI feature crop: TF crop_and_resize then max pool, or torchvision RoIAlign (spec §5)";
    r.get = [](const RunConfig& c) { return json(roi_crop_kind_name(c.model.roi_crop)); };
    r.set = [](RunConfig& c, const json& j) { c.model.roi_crop = parse_roi_crop_kind(j.get<std::string>()); };
    k.push_back(r);
  }
  k.push_back(field("model.crop_size", m, &M::crop_size, "ROI crop size before pooling, cells (spec §5)"));
  k.push_back(field("model.crop_pool", m, &M::crop_pool, "max pool kernel and stride after the crop (spec §5)"));
  k.push_back(field("model.box_positive_iou", m, &M::box_positive_iou,
                    "proposal is foreground at IoU >= this (spec §6.2)"));
  k.push_back(field("model.box_batch_size", m, &M::box_batch_size,
                    "proposals sampled per image for the box head (spec §6.2)"));
  k.push_back(field("model.box_positive_fraction", m, &M::box_positive_fraction,
                    "largest foreground share of the sampled proposals (spec §6.2)"));
  k.push_back(field("model.box_loc_weight", m, &M::box_loc_weight, "box head localization loss weight (spec §6)"));
  k.push_back(field("model.box_cls_weight", m, &M::box_cls_weight, "box head classification loss weight (spec §6)"));
  k.push_back(field("model.score_threshold", m, &M::score_threshold,
                    "detections kept when score > this (spec §7)"));
  k.push_back(field("model.nms_iou", m, &M::nms_iou, "per-class NMS IoU threshold (spec §7)"));
  k.push_back(field("model.max_per_class", m, &M::max_per_class, "detections kept per class (spec §7)"));
  k.push_back(field("model.max_total", m, &M::max_total, "detections kept per image (spec §7)"));
  k.push_back(field("model.box_coder_scales", m, &M::box_coder_scales,
                    "box code scales ty,tx,th,tw (spec §4.3)"));
  k.push_back(field("model.max_gt_boxes", m, &M::max_gt_boxes,
                    "ground-truth boxes per image the static graph holds; more is an error"));
  // ---- train ----
  k.push_back(field("train.steps", t, &T::steps, "total optimizer steps (the study: 316000; TF sample: 200000) (spec §1)"));
  k.push_back(field("train.batch_size", t, &T::batch_size, "images per optimizer step (spec §1, §8)"));
  k.push_back(field("train.seed", t, &T::seed, "seed of data order, flips and weight init"));
  k.push_back(field("train.lr", t, &T::lr, "base learning rate, before any lr_steps entry (spec §1)"));
  k.push_back(field("train.lr_steps", t, &T::lr_steps,
                    "manual step schedule: from `step` on the lr is `lr`; JSON [{\"step\":S,\"lr\":L}] or "
                    "\"S:L,S:L\" (spec §1, §8)"));
  k.push_back(field("train.warmup_steps", t, &T::warmup_steps, "linear warmup length, steps; 0 = none"));
  k.push_back(field("train.warmup_factor", t, &T::warmup_factor,
                    "lr multiplier at step 0, rising linearly to 1 at warmup_steps"));
  k.push_back(field("train.momentum", t, &T::momentum, "SGD momentum, not Nesterov (spec §8)"));
  k.push_back(field("train.grad_clip_norm", t, &T::grad_clip_norm, "gradient clipping L2 norm; 0 = off (spec §8)"));
  k.push_back(field("train.clip_mode", t, &T::clip_mode,
                    "global: one norm over all gradients (model_main.py); per_tensor: each tensor alone (legacy "
                    "train.py) (spec §8)", "global|per_tensor"));
  k.push_back(field("train.grad_accumulation", t, &T::grad_accumulation,
                    "micro-batches per optimizer step; must divide batch_size. With 1 the gradients are planned "
                    "in the activation arena (each live from backward to the update); with more they need a "
                    "parameter-sized block for the whole step (`ctdet plan --train --store-grads` shows that plan)"));
  k.push_back(field("train.recompute_backbone", t, &T::recompute_backbone,
                    "recompute the backbone's first stage in backward, segment by segment (gradient checkpointing): "
                    "keeps only each segment's output for backward. Same gradients (bit for bit on the CPU), one more "
                    "first-stage forward per step; ResNet-101 600x600 plans 942 -> 673 MiB (`ctdet plan --train "
                    "--recompute-backbone`)"));
  k.push_back(field("train.memory_budget", t, &T::memory_budget,
                    "device memory the plan may use, e.g. \"8GiB\"; \"\" = what the device has free, less max(256 MiB, 5%). Over "
                    "it the plan degrades: workspace caps, recomputation, then the backbone recomputed in backward"));
  k.push_back(field("train.checkpoint_every", t, &T::checkpoint_every, "steps between checkpoints; 0 = only at the end"));
  k.push_back(field("train.keep_checkpoints", t, &T::keep_checkpoints, "newest checkpoints kept"));
  k.push_back(field("train.eval_every", t, &T::eval_every,
                    "steps between evaluations on data.val; 0 = only at the end"));
  k.push_back(field("train.log_every", t, &T::log_every, "steps between log lines and TensorBoard scalars"));
  k.push_back(field("train.profile_step", t, &T::profile_step,
                    "time every node of this step (CPU wall clock or CUDA events) into RUN/profile.txt; 0 = off"));
  k.push_back(field("train.device", t, &T::device, "where to train; auto = cuda when a device is present",
                    "cpu|cuda|auto"));
  k.push_back(field("train.deterministic", t, &T::deterministic,
                    "deterministic cuDNN algorithms and reductions (slower, bitwise repeatable)"));
  k.push_back(field("train.flip", t, &T::flip, "random horizontal flip augmentation (spec §2)"));
  k.push_back(field("train.flip_prob", t, &T::flip_prob, "probability of the flip (spec §2)"));
  k.push_back(field("train.init", t, &T::init,
                    "safetensors weights to start from (backbone or whole detector); \"\" = from scratch (spec §8)"));
  // ---- data ----
  k.push_back(field("data.train", d, &D::train,
                    "training records: a `ctdet prepare --out` folder (its train-*.tfrecord), a shard prefix "
                    "DIR/train, a pattern or one .tfrecord"));
  k.push_back(field("data.val", d, &D::val, "validation records, same forms as data.train (its val-*.tfrecord)"));
  k.push_back(field("data.class_names", d, &D::class_names,
                    "class names for label ids 1..N, as in label_map.pbtxt (0 = background)"));
  k.push_back(field("data.num_workers", d, &D::num_workers, "data loader threads"));
  return k;
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = build_keys();
  return k;
}

const Key* find_key(const std::string& name) {
  for (const Key& k : keys())
    if (k.name == name) return &k;
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

[[noreturn]] void unknown_key(const std::string& where, const std::string& key) {
  CTDET_FAIL(where, ": unknown config key '", key, "' (did you mean '", nearest_config_key(key),
             "'? `ctdet train --help-config` lists every key)");
}

std::string value_text(const json& j) {
  std::string s = j.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

[[noreturn]] void wrong_type(const std::string& where, const Key& k, const std::string& value) {
  CTDET_FAIL(where, ": config key '", k.name, "' expects ", kt_name(k.type),
             k.choices.empty() ? std::string() : " (" + k.choices + ")", ", e.g. ", kt_example(k.type), "; got ",
             value);
}

bool is_int_json(const json& j) {
  if (j.is_number_integer()) return true;
  if (!j.is_number_float()) return false;
  double v = j.get<double>();
  return std::isfinite(v) && v == std::floor(v) && std::abs(v) < 9.0e15;
}

// Checks a JSON value against the key's type and normalises it (integral floats -> integers).
json checked(const std::string& where, const Key& k, const json& j) {
  auto bad = [&]() { wrong_type(where, k, value_text(j)); };
  auto as_int = [&](const json& e) -> json {
    if (!is_int_json(e)) bad();
    if (e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(INT64_MAX)) bad();
    return e.is_number_integer() ? e : json(int64_t(e.get<double>()));
  };
  switch (k.type) {
    case KT::Int: return as_int(j);
    case KT::Double: if (!j.is_number()) bad(); return json(j.get<double>());
    case KT::Bool: if (!j.is_boolean()) bad(); return j;
    case KT::String: if (!j.is_string()) bad(); return j;
    case KT::IntList: {
      if (!j.is_array()) bad();
      json a = json::array();
      for (const auto& e : j) a.push_back(as_int(e));
      return a;
    }
    case KT::DoubleList: {
      if (!j.is_array()) bad();
      json a = json::array();
      for (const auto& e : j) {
        if (!e.is_number()) bad();
        a.push_back(e.get<double>());
      }
      return a;
    }
    case KT::StringList: {
      if (!j.is_array()) bad();
      for (const auto& e : j)
        if (!e.is_string()) bad();
      return j;
    }
    case KT::LrSteps: {
      if (!j.is_array()) bad();
      json a = json::array();
      for (const auto& e : j) {
        json step, lr;
        if (e.is_object() && e.size() == 2 && e.contains("step") && e.contains("lr")) {
          step = e["step"];
          lr = e["lr"];
        } else if (e.is_array() && e.size() == 2) {
          step = e[0];
          lr = e[1];
        } else {
          bad();
        }
        if (!is_int_json(step) || !lr.is_number()) bad();
        a.push_back(json{{"step", int64_t(step.get<double>())}, {"lr", lr.get<double>()}});
      }
      return a;
    }
  }
  bad();
  return j;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t p = 0;
  while (true) {
    size_t q = s.find(sep, p);
    out.push_back(trim(s.substr(p, q == std::string::npos ? std::string::npos : q - p)));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

bool parse_int_text(const std::string& s, json* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (end && *end == '\0' && errno == 0) {
    *out = json(int64_t(v));
    return true;
  }
  // "1e6", "3.16e5": integral values written as floats
  double dv = std::strtod(s.c_str(), &end);
  if (!end || *end != '\0' || !std::isfinite(dv) || dv != std::floor(dv) || std::abs(dv) >= 9.0e15) return false;
  *out = json(int64_t(dv));
  return true;
}

bool parse_double_text(const std::string& s, json* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (!end || *end != '\0') return false;
  *out = json(v);
  return true;
}

// The override text of a value, parsed by the key's type. A JSON array / object / quoted string is taken as JSON.
json parse_text_value(const std::string& where, const Key& k, const std::string& raw) {
  const std::string s = trim(raw);
  auto bad = [&]() { wrong_type(where, k, "'" + raw + "'"); };
  if (!s.empty() && (s[0] == '[' || s[0] == '{' || (s[0] == '"' && k.type != KT::String))) {
    json j;
    try {
      j = json::parse(s);
    } catch (const std::exception&) {
      bad();
    }
    return checked(where, k, j);
  }
  json v;
  switch (k.type) {
    case KT::Int: if (!parse_int_text(s, &v)) bad(); return v;
    case KT::Double: if (!parse_double_text(s, &v)) bad(); return v;
    case KT::Bool: {
      std::string l = s;
      for (auto& c : l) c = char(std::tolower(static_cast<unsigned char>(c)));
      if (l == "true" || l == "1" || l == "yes" || l == "on") return json(true);
      if (l == "false" || l == "0" || l == "no" || l == "off") return json(false);
      bad();
      return v;
    }
    case KT::String:
      if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        try {
          return checked(where, k, json::parse(s));
        } catch (const nlohmann::json::exception&) {
          bad();
        }
      }
      return json(s);
    case KT::IntList:
    case KT::DoubleList:
    case KT::StringList:
    case KT::LrSteps: {
      json a = json::array();
      if (s.empty()) return a;
      for (const std::string& item : split(s, ',')) {
        if (item.empty()) bad();
        json e;
        if (k.type == KT::IntList) {
          if (!parse_int_text(item, &e)) bad();
        } else if (k.type == KT::DoubleList) {
          if (!parse_double_text(item, &e)) bad();
        } else if (k.type == KT::StringList) {
          e = item;
        } else {
          auto parts = split(item, ':');
          json st, lr;
          if (parts.size() != 2 || !parse_int_text(parts[0], &st) || !parse_double_text(parts[1], &lr)) bad();
          e = json{{"step", st}, {"lr", lr}};
        }
        a.push_back(e);
      }
      return a;
    }
  }
  bad();
  return v;
}

void set_key(RunConfig& cfg, const std::string& where, const Key& k, const json& value) {
  try {
    k.set(cfg, value);
  } catch (const Error& e) {
    CTDET_FAIL(where, ": ", e.what());
  }
}

// ---- JSON files -------------------------------------------------------------------------------------------------

json parse_json_text(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // byte offset -> line:col
    size_t off = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    int line = 1, col = 1;
    for (size_t i = 0; i < off; ++i) {
      if (text[i] == '\n') { ++line; col = 1; } else { ++col; }
    }
    std::string msg = e.what();
    CTDET_FAIL(source, ":", line, ":", col, ": invalid JSON (", msg, ")");
  }
}

const std::set<std::string>& sections() {
  static const std::set<std::string> s = {"model", "train", "data"};
  return s;
}

void apply_json(RunConfig& cfg, const json& root, const std::string& source, const std::string& base_dir,
                std::vector<std::string>& chain) {
  CTDET_CHECK(root.is_object(), source, ": a config file must be a JSON object with sections model, train, data");
  if (root.contains("base")) {
    const json& b = root["base"];
    CTDET_CHECK(b.is_string() && !b.get<std::string>().empty(), source, ": \"base\" must be a file name, got ",
                value_text(b));
    fs::path bp = fs::path(b.get<std::string>());
    if (bp.is_relative()) bp = fs::path(base_dir) / bp;
    std::string canon = fs::weakly_canonical(bp).string();
    CTDET_CHECK(std::find(chain.begin(), chain.end(), canon) == chain.end(), source, ": \"base\" cycle: '",
                bp.string(), "' includes itself");
    CTDET_CHECK(chain.size() < 16, source, ": \"base\" chain deeper than 16 files");
    CTDET_CHECK(fs::exists(bp), source, ": base config '", bp.string(), "' does not exist");
    chain.push_back(canon);
    json broot = parse_json_text(read_file(bp.string()), bp.string());
    apply_json(cfg, broot, bp.string(), bp.parent_path().string(), chain);
    chain.pop_back();
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& sec = it.key();
    if (sec == "base" || sec == "comment") continue;
    if (!sections().count(sec)) {
      // maybe a flat "train.steps": name the key; otherwise name the nearest section
      if (sec.find('.') != std::string::npos) unknown_key(source, sec);
      std::string best;
      size_t bd = SIZE_MAX;
      for (const auto& s : sections())
        if (edit_distance(sec, s) < bd) { bd = edit_distance(sec, s); best = s; }
      CTDET_FAIL(source, ": unknown section '", sec, "' (did you mean '", best,
                 "'? sections: model, train, data; plus \"base\" and \"comment\")");
    }
    CTDET_CHECK(it.value().is_object(), source, ": section '", sec, "' must be an object, got ", value_text(it.value()));
    for (auto kv = it.value().begin(); kv != it.value().end(); ++kv) {
      std::string name = sec + "." + kv.key();
      const Key* k = find_key(name);
      if (!k) unknown_key(source, name);
      set_key(cfg, source, *k, checked(source, *k, kv.value()));
    }
  }
}

}  // namespace

// =====================================================================================================================
// Public: keys, loading, overrides, saving
// =====================================================================================================================

std::string nearest_config_key(const std::string& key) {
  const bool no_section = key.find('.') == std::string::npos;
  std::string best;
  size_t bd = SIZE_MAX;
  for (const Key& k : keys()) {
    size_t dist = edit_distance(key, k.name);
    if (no_section) {  // "steps" -> "train.steps"
      std::string leaf = k.name.substr(k.name.find('.') + 1);
      dist = std::min(dist, edit_distance(key, leaf) + 1);
    }
    if (dist < bd) { bd = dist; best = k.name; }
  }
  return best;
}

std::vector<ConfigKeyInfo> config_keys() {
  RunConfig def;
  std::vector<ConfigKeyInfo> out;
  for (const Key& k : keys())
    out.push_back({k.name, k.choices.empty() ? kt_name(k.type) : k.choices, k.get(def).dump(), k.doc});
  return out;
}

std::string config_help() {
  std::string s =
      "ctdet train configuration keys (JSON sections model, train, data; override with KEY=VALUE, e.g.\n"
      "train.steps=500 model.anchor_scales=0.25,0.5,1,2 train.lr_steps=900000:3e-5,1200000:3e-6).\n"
      "A config file may say \"base\": \"other.json\" to start from another file. Defaults: the study's\n"
      "faster_rcnn_resnet101 (configs/faster_rcnn_resnet101.json); spec = shared/reference/faster_rcnn_spec.md.\n";
  std::string section;
  for (const ConfigKeyInfo& k : config_keys()) {
    std::string sec = k.name.substr(0, k.name.find('.'));
    if (sec != section) {
      section = sec;
      s += "\n[" + sec + "]\n";
    }
    s += str("  ", k.name, "  (", k.type, ", default ", k.default_value, ")\n      ", k.doc, "\n");
  }
  return s;
}

std::string config_markdown_table() {
  std::string s = "| key | type | default | meaning, unit, spec section |\n|---|---|---|---|\n";
  for (const ConfigKeyInfo& k : config_keys()) {
    std::string doc = k.doc, type = k.type;
    for (std::string* p : {&doc, &type}) {
      std::string e;
      for (char c : *p) e += c == '|' ? std::string("\\|") : std::string(1, c);
      *p = e;
    }
    s += "| `" + k.name + "` | " + type + " | `" + k.default_value + "` | " + doc + " |\n";
  }
  return s;
}

RunConfig run_config_from_json(const std::string& text, const std::string& source, const std::string& base_dir) {
  RunConfig cfg;
  std::vector<std::string> chain;
  apply_json(cfg, parse_json_text(text, source), source, base_dir, chain);
  try {
    cfg.validate();
  } catch (const Error& e) {
    CTDET_FAIL(source, ": ", e.what());
  }
  return cfg;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig cfg;
  std::vector<std::string> chain = {fs::weakly_canonical(fs::path(path)).string()};
  apply_json(cfg, parse_json_text(read_file(path), path), path, fs::path(path).parent_path().string(), chain);
  for (const auto& o : overrides) apply_override(cfg, o);
  try {
    cfg.validate();
  } catch (const Error& e) {
    CTDET_FAIL(path, overrides.empty() ? "" : " (with overrides)", ": ", e.what());
  }
  return cfg;
}

void apply_override(RunConfig& cfg, const std::string& kv) {
  size_t eq = kv.find('=');
  const std::string where = "override '" + kv + "'";
  CTDET_CHECK(eq != std::string::npos && eq > 0, where, ": expected KEY=VALUE, e.g. train.steps=500");
  std::string key = trim(kv.substr(0, eq));
  const Key* k = find_key(key);
  if (!k) unknown_key(where, key);
  set_key(cfg, where, *k, parse_text_value(where, *k, kv.substr(eq + 1)));
}

namespace {
// Objects one key per line; arrays on one line ([0.25, 0.5, 1.0, 2.0], [{"step":900000,"lr":3e-05}]).
void pretty(const json& j, int indent, std::string& out) {
  if (j.is_object()) {
    out += "{\n";
    size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i) {
      out += std::string(indent + 2, ' ') + json(it.key()).dump() + ": ";
      pretty(it.value(), indent + 2, out);
      out += i + 1 < j.size() ? ",\n" : "\n";
    }
    out += std::string(indent, ' ') + "}";
  } else if (j.is_array()) {
    out += "[";
    for (size_t i = 0; i < j.size(); ++i) out += (i ? ", " : "") + j[i].dump();
    out += "]";
  } else {
    out += j.dump();
  }
}
}  // namespace

std::string to_json(const RunConfig& cfg) {
  json root = json::object();
  root["model"] = json::object();
  root["train"] = json::object();
  root["data"] = json::object();
  for (const Key& k : keys()) {
    size_t dot = k.name.find('.');
    root[k.name.substr(0, dot)][k.name.substr(dot + 1)] = k.get(cfg);
  }
  std::string out;
  pretty(root, 0, out);
  return out + "\n";
}

std::string save_resolved_config(const std::string& run_dir, const RunConfig& cfg) {
  fs::create_directories(run_dir);
  std::string path = (fs::path(run_dir) / "config.json").string();
  write_file_atomic(path, to_json(cfg));
  return path;
}

RunConfig load_config_file(const std::string& path, const std::vector<std::string>& overrides,
                           std::vector<std::string>* warnings) {
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".json") return load_run_config(path, overrides);
  RunConfig cfg = read_tf_pipeline_config(path, warnings);
  for (const auto& o : overrides) apply_override(cfg, o);
  try {
    cfg.validate();
  } catch (const Error& e) {
    CTDET_FAIL(path, " (with overrides): ", e.what());
  }
  return cfg;
}

// =====================================================================================================================
// Data paths
// =====================================================================================================================
namespace {

bool wildcard_match(const char* p, const char* s) {
  if (*p == '\0') return *s == '\0';
  if (*p == '*') return wildcard_match(p + 1, s) || (*s && wildcard_match(p, s + 1));
  if (*s && (*p == '?' || *p == *s)) return wildcard_match(p + 1, s + 1);
  return false;
}

// "<anything>-NNNNN-of-MMMMM.tfrecord" -> (N, M); false otherwise.
bool shard_numbers(const std::string& name, long* n, long* m) {
  const std::string suf = ".tfrecord";
  if (name.size() < suf.size() + 15 || name.compare(name.size() - suf.size(), suf.size(), suf) != 0) return false;
  std::string core = name.substr(0, name.size() - suf.size());
  size_t of = core.rfind("-of-");
  if (of == std::string::npos) return false;
  size_t dash = core.rfind('-', of - 1);
  if (dash == std::string::npos) return false;
  std::string a = core.substr(dash + 1, of - dash - 1), b = core.substr(of + 4);
  if (a.empty() || b.empty()) return false;
  for (char c : a + b)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  *n = std::atol(a.c_str());
  *m = std::atol(b.c_str());
  return true;
}

}  // namespace

std::vector<std::string> resolve_shards(const std::string& path, const std::string& split_name) {
  CTDET_CHECK(!path.empty(), "data.", split_name, " is empty: set it to a `ctdet prepare --out` folder or shard prefix");
  fs::path p(path);
  if (fs::is_regular_file(p)) return {p.string()};
  fs::path dir;
  std::string pattern;
  if (fs::is_directory(p)) {
    dir = p;
    pattern = split_name + "-*-of-*.tfrecord";
  } else if (path.find_first_of("*?") != std::string::npos) {
    dir = p.parent_path();
    pattern = p.filename().string();
  } else {
    dir = p.parent_path();
    pattern = p.filename().string() + "-*-of-*.tfrecord";
  }
  if (dir.empty()) dir = ".";
  CTDET_CHECK(fs::is_directory(dir), "data.", split_name, ": folder '", dir.string(), "' of '", path,
              "' does not exist");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (e.is_regular_file() && wildcard_match(pattern.c_str(), n.c_str())) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  CTDET_CHECK(!names.empty(), "data.", split_name, ": no TFRecord files match '", (dir / pattern).string(),
              "' (ctdet prepare writes DIR/", split_name, "-00000-of-00001.tfrecord)");
  // complete -NNNNN-of-MMMMM sets only
  long n = 0, m = 0, m0 = -1;
  std::set<long> have;
  for (const auto& name : names) {
    if (!shard_numbers(name, &n, &m)) continue;
    CTDET_CHECK(m0 < 0 || m == m0, "data.", split_name, ": shards of different sets in '", dir.string(), "' (",
                names.front(), ", ", name, ")");
    m0 = m;
    have.insert(n);
  }
  for (long i = 0; m0 > 0 && i < m0; ++i) {
    if (!have.count(i)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "-%05ld-of-%05ld", i, m0);
      CTDET_FAIL("data.", split_name, ": shard ", i, " of ", m0, " (", buf, ".tfrecord) is missing in '",
                 dir.string(), "'");
    }
  }
  std::vector<std::string> out;
  for (const auto& name : names) out.push_back((dir / name).string());
  return out;
}

// =====================================================================================================================
// TF Object Detection API pipeline.config (protobuf text format)
// =====================================================================================================================
namespace {

struct PbNode {
  std::string name;
  int line = 0, col = 0;
  bool is_msg = false;
  bool quoted = false;  // scalar came from a string literal
  std::string value;    // scalar text (strings unescaped)
  std::vector<PbNode> kids;
  mutable bool used = false;
};

struct PbTok {
  enum Kind { kIdent, kNumber, kString, kPunct, kEnd } kind;
  std::string text;
  int line, col;
};

std::vector<PbTok> pb_tokenize(const std::string& t, const std::string& src) {
  std::vector<PbTok> out;
  size_t i = 0, n = t.size();
  int line = 1, col = 1;
  auto adv = [&]() {
    if (t[i] == '\n') { ++line; col = 1; } else { ++col; }
    ++i;
  };
  auto isid = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  auto isdig = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  while (i < n) {
    char c = t[i];
    if (std::isspace(static_cast<unsigned char>(c))) { adv(); continue; }
    if (c == '#') { while (i < n && t[i] != '\n') adv(); continue; }
    const int l0 = line, c0 = col;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::string w;
      while (i < n && (isid(t[i]) || t[i] == '.')) { w += t[i]; adv(); }
      out.push_back({PbTok::kIdent, w, l0, c0});
    } else if (isdig(c) || ((c == '-' || c == '+' || c == '.') && i + 1 < n &&
                            (isdig(t[i + 1]) || (t[i + 1] == '.' && i + 2 < n && isdig(t[i + 2]))))) {
      std::string w;
      w += t[i];
      adv();
      while (i < n) {
        char d = t[i];
        bool exp_sign = (d == '-' || d == '+') && (w.back() == 'e' || w.back() == 'E');
        if (isdig(d) || d == '.' || d == 'e' || d == 'E' || d == 'f' || d == 'F' || d == 'x' || d == 'X' ||
            (std::isxdigit(static_cast<unsigned char>(d)) && w.size() > 1 && (w[1] == 'x' || w[1] == 'X')) ||
            exp_sign) {
          w += d;
          adv();
        } else {
          break;
        }
      }
      if (i < n && isid(t[i]))
        CTDET_FAIL(src, ":", line, ":", col, ": syntax error: bad number '", w, t[i], "'");
      out.push_back({PbTok::kNumber, w, l0, c0});
    } else if (c == '"' || c == '\'') {
      const char q = c;
      adv();
      std::string w;
      while (true) {
        CTDET_CHECK(i < n && t[i] != '\n', src, ":", l0, ":", c0, ": syntax error: unterminated string");
        char d = t[i];
        if (d == q) { adv(); break; }
        if (d == '\\') {
          adv();
          CTDET_CHECK(i < n, src, ":", l0, ":", c0, ": syntax error: unterminated string");
          char e = t[i];
          adv();
          switch (e) {
            case 'n': w += '\n'; break;
            case 't': w += '\t'; break;
            case 'r': w += '\r'; break;
            case '\\': w += '\\'; break;
            case '\'': w += '\''; break;
            case '"': w += '"'; break;
            default: w += '\\'; w += e;  // kept as written
          }
          continue;
        }
        w += d;
        adv();
      }
      out.push_back({PbTok::kString, w, l0, c0});
    } else if (std::string("{}[]<>:,;").find(c) != std::string::npos) {
      out.push_back({PbTok::kPunct, std::string(1, c), l0, c0});
      adv();
    } else {
      CTDET_FAIL(src, ":", line, ":", col, ": syntax error: unexpected character '", c, "'");
    }
  }
  out.push_back({PbTok::kEnd, "", line, col});
  return out;
}

class PbParser {
 public:
  PbParser(std::vector<PbTok> toks, std::string src) : t_(std::move(toks)), src_(std::move(src)) {}

  PbNode parse() {
    PbNode root;
    root.is_msg = true;
    root.used = true;
    fields(root.kids, "", 1, 1);
    return root;
  }

 private:
  const PbTok& peek() const { return t_[p_]; }
  bool accept(const char* punct) {
    if (peek().kind == PbTok::kPunct && peek().text == punct) {
      ++p_;
      return true;
    }
    return false;
  }
  [[noreturn]] void fail(const PbTok& at, const std::string& msg) const {
    std::string found = at.kind == PbTok::kEnd ? "end of file" : "'" + at.text + "'";
    CTDET_FAIL(src_, ":", at.line, ":", at.col, ": syntax error: ", msg, ", found ", found);
  }

  void fields(std::vector<PbNode>& out, const char* close, int open_line, int open_col) {
    while (true) {
      const PbTok& tk = peek();
      if (tk.kind == PbTok::kEnd) {
        if (*close) fail(tk, str("expected '", close, "' to close the message opened at ", open_line, ":", open_col));
        return;
      }
      if (*close && accept(close)) return;
      if (tk.kind != PbTok::kIdent) fail(tk, "expected a field name");
      PbNode proto;
      proto.name = tk.text;
      proto.line = tk.line;
      proto.col = tk.col;
      ++p_;
      const bool colon = accept(":");
      if (accept("{")) {
        message(proto, "}", out);
      } else if (accept("<")) {
        message(proto, ">", out);
      } else if (colon && accept("[")) {
        if (!accept("]")) {
          while (true) {
            PbNode e = proto;
            e.line = peek().line;
            e.col = peek().col;
            if (accept("{")) message(e, "}", out);
            else if (accept("<")) message(e, ">", out);
            else out.push_back(scalar(e));
            if (accept("]")) break;
            if (!accept(",")) fail(peek(), str("expected ',' or ']' in the list of '", proto.name, "'"));
          }
        }
      } else if (colon) {
        out.push_back(scalar(proto));
      } else {
        fail(peek(), str("expected ':' or '{' after field '", proto.name, "'"));
      }
      if (!accept(",")) accept(";");
    }
  }

  void message(PbNode node, const char* close, std::vector<PbNode>& out) {
    node.is_msg = true;
    fields(node.kids, close, node.line, node.col);
    out.push_back(std::move(node));
  }

  PbNode scalar(PbNode node) {
    const PbTok& tk = peek();
    if (tk.kind == PbTok::kString) {
      node.quoted = true;
      while (peek().kind == PbTok::kString) node.value += t_[p_++].text;  // "a" "b" concatenates
    } else if (tk.kind == PbTok::kNumber || tk.kind == PbTok::kIdent) {
      node.value = tk.text;
      ++p_;
    } else {
      fail(tk, str("expected a value for field '", node.name, "'"));
    }
    return node;
  }

  std::vector<PbTok> t_;
  std::string src_;
  size_t p_ = 0;
};

// Reads values out of the tree, marking what it reads; whatever stays unmarked is reported as a warning.
struct PbReader {
  std::string src;
  std::vector<std::string> warns;

  std::string at(const PbNode& n) const { return str(src, ":", n.line, ":", n.col); }
  void warn(const PbNode& n, const std::string& msg) { warns.push_back(at(n) + ": " + msg); }

  // The last occurrence of a field (text-format semantics for a non-repeated field), or null.
  const PbNode* get(const PbNode& m, const char* name) const {
    const PbNode* r = nullptr;
    for (const auto& k : m.kids)
      if (k.name == name) { k.used = true; r = &k; }
    return r;
  }
  std::vector<const PbNode*> all(const PbNode& m, const char* name) const {
    std::vector<const PbNode*> r;
    for (const auto& k : m.kids)
      if (k.name == name) { k.used = true; r.push_back(&k); }
    return r;
  }
  const PbNode* msg(const PbNode& m, const char* name) const {
    const PbNode* n = get(m, name);
    if (n && !n->is_msg) CTDET_FAIL(at(*n), ": '", name, "' must be a message { ... }, got '", n->value, "'");
    return n;
  }
  const PbNode& scalar(const PbNode& n) const {
    if (n.is_msg) CTDET_FAIL(at(n), ": '", n.name, "' must be a value, got a message");
    return n;
  }
  double num(const PbNode& n) const {
    const std::string& v = scalar(n).value;
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (!n.quoted && end && (*end == '\0' || ((*end == 'f' || *end == 'F') && end[1] == '\0')) && !v.empty())
      return d;
    CTDET_FAIL(at(n), ": '", n.name, "' expects a number, got '", v, "'");
  }
  int64_t integer(const PbNode& n) const {
    double d = num(n);
    if (d != std::floor(d) || std::abs(d) > 9.0e15)
      CTDET_FAIL(at(n), ": '", n.name, "' expects an integer, got '", n.value, "'");
    return int64_t(d);
  }
  int int32(const PbNode& n) const {
    int64_t v = integer(n);
    if (v < INT_MIN || v > INT_MAX) CTDET_FAIL(at(n), ": '", n.name, "' = ", v, " does not fit an int");
    return int(v);
  }
  bool boolean(const PbNode& n) const {
    const std::string& v = scalar(n).value;
    if (!n.quoted && (v == "true" || v == "True" || v == "t" || v == "1")) return true;
    if (!n.quoted && (v == "false" || v == "False" || v == "f" || v == "0")) return false;
    CTDET_FAIL(at(n), ": '", n.name, "' expects true or false, got '", v, "'");
  }
  std::string text(const PbNode& n) const { return scalar(n).value; }

  // Optional scalar setters
  void set(const PbNode& m, const char* name, double& dst) { if (auto* n = get(m, name)) dst = num(*n); }
  void set(const PbNode& m, const char* name, int& dst) { if (auto* n = get(m, name)) dst = int32(*n); }
  void set(const PbNode& m, const char* name, int64_t& dst) { if (auto* n = get(m, name)) dst = integer(*n); }
  // A field ctdet follows only at one value: anything else is a warning.
  void expect(const PbNode& m, const char* name, double want, const std::string& why) {
    if (auto* n = get(m, name))
      if (num(*n) != want) warn(*n, str("'", name, "' = ", n->value, " is not supported; ", why));
  }
  void expect(const PbNode& m, const char* name, const std::string& want, const std::string& why) {
    if (auto* n = get(m, name))
      if (text(*n) != want) warn(*n, str("'", name, "' = ", n->value, " is not supported; ", why));
  }
  void mark_all(const PbNode& n) const {
    n.used = true;
    for (const auto& k : n.kids) mark_all(k);
  }
  void report_unused(const PbNode& m, const std::string& path) {
    for (const auto& k : m.kids) {
      std::string p = path.empty() ? k.name : path + "." + k.name;
      if (!k.used) warn(k, "'" + p + "' is not used by ctdet (ignored)");
      else if (k.is_msg) report_unused(k, p);
    }
  }
};

void read_hyperparams(PbReader& r, const PbNode& h, double* trunc_std, const std::string& init_why) {
  r.get(h, "op");
  if (auto* reg = r.msg(h, "regularizer")) {
    if (auto* l2 = r.msg(*reg, "l2_regularizer")) {
      if (auto* w = r.get(*l2, "weight"))
        if (r.num(*w) != 0) r.warn(*w, "weight decay (L2 " + w->value + ") is not supported; ctdet trains without");
    }
  }
  if (auto* init = r.msg(h, "initializer")) {
    if (trunc_std) {
      if (auto* tn = r.msg(*init, "truncated_normal_initializer")) {
        r.set(*tn, "stddev", *trunc_std);
        r.expect(*tn, "mean", 0.0, "the mean is 0");
      }
    } else if (auto* vs = r.msg(*init, "variance_scaling_initializer")) {
      r.expect(*vs, "factor", 1.0, init_why);
      if (auto* u = r.get(*vs, "uniform"))
        if (!r.boolean(*u)) r.warn(*u, "'uniform' = false is not supported; " + init_why);
      r.expect(*vs, "mode", "FAN_AVG", init_why);
    }
  }
}

void read_input_reader(PbReader& r, const PbNode& in, std::string& path, std::vector<std::string>& class_names,
                       bool* have_names, const std::string& base_dir) {
  if (auto* rec = r.msg(in, "tf_record_input_reader")) {
    auto paths = r.all(*rec, "input_path");
    if (!paths.empty()) path = r.text(*paths[0]);
    for (size_t i = 1; i < paths.size(); ++i)
      r.warn(*paths[i], "only the first input_path is used ('" + r.text(*paths[0]) + "')");
  }
  if (auto* lm = r.get(in, "label_map_path")) {
    std::string p = r.text(*lm);
    std::string found;
    if (fs::is_regular_file(p)) found = p;
    else if (fs::is_regular_file(fs::path(base_dir) / p)) found = (fs::path(base_dir) / p).string();
    if (found.empty()) {
      r.warn(*lm, "label map '" + p + "' not found; data.class_names keeps its value");
    } else if (!*have_names) {
      class_names = read_label_map(found);
      *have_names = true;
    }
  }
}

}  // namespace

RunConfig parse_tf_pipeline_config(const std::string& text, const std::string& source,
                                   std::vector<std::string>* warnings) {
  PbNode root = PbParser(pb_tokenize(text, source), source).parse();
  PbReader r{source, {}};
  RunConfig cfg;
  FasterRcnnConfig& m = cfg.model;
  TrainConfig& t = cfg.train;

  if (auto* model = r.msg(root, "model")) {
    const PbNode* fr = r.msg(*model, "faster_rcnn");
    if (!fr) CTDET_FAIL(r.at(*model), ": model { ... } has no faster_rcnn { ... } block; ctdet trains Faster R-CNN only");
    r.set(*fr, "num_classes", m.num_classes);
    r.expect(*fr, "number_of_stages", 2.0, "ctdet runs both stages");
    if (auto* ir = r.msg(*fr, "image_resizer")) {
      if (auto* k = r.msg(*ir, "keep_aspect_ratio_resizer")) {
        r.set(*k, "min_dimension", m.min_dimension);
        r.set(*k, "max_dimension", m.max_dimension);
        if (auto* pad = r.get(*k, "pad_to_max_dimension"))
          if (r.boolean(*pad)) r.warn(*pad, "pad_to_max_dimension is not supported; ctdet does not pad");
        r.expect(*k, "resize_method", "BILINEAR", "ctdet resizes bilinearly");
      }
    }
    if (auto* fx = r.msg(*fr, "feature_extractor")) {
      if (auto* ty = r.get(*fx, "type")) {
        std::string v = r.text(*ty);
        if (v == "faster_rcnn_resnet101") m.backbone = BackboneKind::ResNet101;
        else if (v == "faster_rcnn_inception_v2") m.backbone = BackboneKind::InceptionV2;
        else
          CTDET_FAIL(r.at(*ty), ": feature_extractor type '", v,
                     "' is not supported (known: faster_rcnn_resnet101, faster_rcnn_inception_v2)");
      }
      r.expect(*fx, "first_stage_features_stride", 16.0, "ctdet backbones have stride 16");
      if (auto* bn = r.get(*fx, "batch_norm_trainable"))
        if (r.boolean(*bn)) r.warn(*bn, "batch_norm_trainable: true is not supported; ctdet freezes BN statistics");
    }
    if (auto* ag = r.msg(*fr, "first_stage_anchor_generator")) {
      if (auto* g = r.msg(*ag, "grid_anchor_generator")) {
        auto scales = r.all(*g, "scales");
        if (!scales.empty()) {
          m.anchor_scales.clear();
          for (auto* s : scales) m.anchor_scales.push_back(r.num(*s));
        }
        auto ars = r.all(*g, "aspect_ratios");
        if (!ars.empty()) {
          m.anchor_aspect_ratios.clear();
          for (auto* a : ars) m.anchor_aspect_ratios.push_back(r.num(*a));
        }
        // pairs that ctdet keeps as one number: (height, width), (height_stride, width_stride), offsets
        auto pair = [&](const char* hn, const char* wn, double& dst) {
          const PbNode* h = r.get(*g, hn);
          const PbNode* w = r.get(*g, wn);
          if (h) dst = r.num(*h);
          else if (w) dst = r.num(*w);
          if (h && w && r.num(*h) != r.num(*w))
            r.warn(*w, str("'", wn, "' = ", w->value, " differs from '", hn, "' = ", h->value,
                           "; ctdet uses square anchors grids (", hn, ")"));
          else if (!h && w)
            r.warn(*w, str("'", wn, "' without '", hn, "': ctdet uses one value for both"));
        };
        pair("height", "width", m.anchor_base);
        pair("height_stride", "width_stride", m.anchor_stride);
        pair("height_offset", "width_offset", m.anchor_offset);
      }
    }
    r.expect(*fr, "first_stage_atrous_rate", 1.0, "ctdet uses rate 1");
    if (auto* h = r.msg(*fr, "first_stage_box_predictor_conv_hyperparams"))
      read_hyperparams(r, *h, &m.rpn_init_std, "");
    r.expect(*fr, "first_stage_box_predictor_kernel_size", 3.0, "the RPN conv is 3x3");
    r.set(*fr, "first_stage_box_predictor_depth", m.rpn_conv_depth);
    r.set(*fr, "first_stage_minibatch_size", m.rpn_batch_size);
    r.set(*fr, "first_stage_positive_balance_fraction", m.rpn_positive_fraction);
    r.set(*fr, "first_stage_nms_score_threshold", m.rpn_score_threshold);
    r.set(*fr, "first_stage_nms_iou_threshold", m.rpn_nms_iou);
    r.set(*fr, "first_stage_max_proposals", m.max_proposals);
    r.set(*fr, "first_stage_localization_loss_weight", m.rpn_loc_weight);
    r.set(*fr, "first_stage_objectness_loss_weight", m.rpn_obj_weight);
    r.set(*fr, "initial_crop_size", m.crop_size);
    {
      const PbNode* k = r.get(*fr, "maxpool_kernel_size");
      const PbNode* s = r.get(*fr, "maxpool_stride");
      if (k) m.crop_pool = r.int32(*k);
      else if (s) m.crop_pool = r.int32(*s);
      if (k && s && r.int32(*k) != r.int32(*s))
        r.warn(*s, str("maxpool_stride ", s->value, " differs from maxpool_kernel_size ", k->value,
                       "; ctdet pools with kernel = stride = ", k->value));
    }
    if (auto* bp = r.msg(*fr, "second_stage_box_predictor")) {
      if (auto* mr = r.msg(*bp, "mask_rcnn_box_predictor")) {
        if (auto* d = r.get(*mr, "use_dropout"))
          if (r.boolean(*d)) r.warn(*d, "use_dropout: true is not supported; ctdet has no dropout in the box head");
        r.get(*mr, "dropout_keep_probability");
        if (auto* h = r.msg(*mr, "fc_hyperparams"))
          read_hyperparams(r, *h, nullptr, "ctdet initialises the box head Glorot uniform (spec §1)");
      }
    }
    r.set(*fr, "second_stage_batch_size", m.box_batch_size);
    r.set(*fr, "second_stage_balance_fraction", m.box_positive_fraction);
    if (auto* pp = r.msg(*fr, "second_stage_post_processing")) {
      if (auto* nms = r.msg(*pp, "batch_non_max_suppression")) {
        r.set(*nms, "score_threshold", m.score_threshold);
        r.set(*nms, "iou_threshold", m.nms_iou);
        r.set(*nms, "max_detections_per_class", m.max_per_class);
        r.set(*nms, "max_total_detections", m.max_total);
      }
      r.expect(*pp, "score_converter", "SOFTMAX", "ctdet scores with a softmax");
    }
    r.set(*fr, "second_stage_localization_loss_weight", m.box_loc_weight);
    r.set(*fr, "second_stage_classification_loss_weight", m.box_cls_weight);
  } else {
    r.warns.push_back(source + ": no model { faster_rcnn { ... } } block; the model keeps ctdet's defaults");
  }

  if (auto* tc = r.msg(root, "train_config")) {
    r.set(*tc, "batch_size", t.batch_size);
    r.set(*tc, "num_steps", t.steps);
    r.set(*tc, "gradient_clipping_by_norm", t.grad_clip_norm);
    if (auto* opt = r.msg(*tc, "optimizer")) {
      if (auto* mo = r.msg(*opt, "momentum_optimizer")) {
        r.set(*mo, "momentum_optimizer_value", t.momentum);
        if (auto* lr = r.msg(*mo, "learning_rate")) {
          if (auto* ms = r.msg(*lr, "manual_step_learning_rate")) {
            r.set(*ms, "initial_learning_rate", t.lr);
            t.lr_steps.clear();
            for (auto* s : r.all(*ms, "schedule")) {
              if (!s->is_msg) CTDET_FAIL(r.at(*s), ": 'schedule' must be a message { step: N learning_rate: X }");
              const PbNode* st = r.get(*s, "step");
              const PbNode* lv = r.get(*s, "learning_rate");
              if (!st || !lv) CTDET_FAIL(r.at(*s), ": 'schedule' needs both step and learning_rate");
              t.lr_steps.push_back({r.integer(*st), r.num(*lv)});
            }
            bool warm = false;
            if (auto* w = r.get(*ms, "warmup")) warm = r.boolean(*w);
            if (warm && !t.lr_steps.empty() && t.lr_steps[0].step > 0 && t.lr_steps[0].lr > 0) {
              // TF interpolates linearly from initial_learning_rate to the first schedule rate over its step:
              // exactly a linear warmup from factor initial/first to 1 on top of the first rate.
              t.warmup_steps = t.lr_steps[0].step;
              t.warmup_factor = t.lr / t.lr_steps[0].lr;
              t.lr = t.lr_steps[0].lr;
              t.lr_steps.erase(t.lr_steps.begin());
            } else if (!t.lr_steps.empty() && t.lr_steps[0].step == 0) {
              // "schedule { step: 0 learning_rate: X }" (the study's files): the rate from step 0 is X
              t.lr = t.lr_steps[0].lr;
              t.lr_steps.erase(t.lr_steps.begin());
            }
          } else if (auto* cl = r.msg(*lr, "constant_learning_rate")) {
            r.set(*cl, "learning_rate", t.lr);
            t.lr_steps.clear();
          }
        }
      }
      if (auto* ma = r.get(*opt, "use_moving_average"))
        if (r.boolean(*ma)) r.warn(*ma, "use_moving_average: true is not supported; ctdet keeps no weight average");
    }
    bool flip = false;
    for (auto* da : r.all(*tc, "data_augmentation_options")) {
      if (!da->is_msg) CTDET_FAIL(r.at(*da), ": 'data_augmentation_options' must be a message");
      if (auto* hf = r.msg(*da, "random_horizontal_flip")) {
        flip = true;
        r.set(*hf, "probability", t.flip_prob);
      }
    }
    t.flip = flip;
    if (auto* ft = r.get(*tc, "fine_tune_checkpoint")) {
      std::string p = r.text(*ft);
      if (p.size() > 12 && p.compare(p.size() - 12, 12, ".safetensors") == 0) t.init = p;
      else
        r.warn(*ft, "fine_tune_checkpoint '" + p +
                        "' is a TF checkpoint; convert it to safetensors and set train.init (train.init stays \"\")");
    }
    r.get(*tc, "from_detection_checkpoint");
    r.get(*tc, "fine_tune_checkpoint_type");
  }

  const std::string base_dir = fs::path(source).parent_path().string();
  bool have_names = false;
  if (auto* in = r.msg(root, "train_input_reader"))
    read_input_reader(r, *in, cfg.data.train, cfg.data.class_names, &have_names, base_dir);
  for (auto* in : r.all(root, "eval_input_reader")) {  // TF2 allows several; the first one is data.val
    if (!in->is_msg) CTDET_FAIL(r.at(*in), ": 'eval_input_reader' must be a message");
    std::string val;
    read_input_reader(r, *in, val, cfg.data.class_names, &have_names, base_dir);
    if (cfg.data.val.empty()) cfg.data.val = val;
  }
  if (!have_names && size_t(m.num_classes) != cfg.data.class_names.size()) {
    cfg.data.class_names.clear();
    for (int i = 1; i <= m.num_classes; ++i) cfg.data.class_names.push_back(str("class_", i));
    r.warns.push_back(str(source, ": num_classes ", m.num_classes,
                          " with no readable label map: data.class_names set to class_1..class_", m.num_classes));
  }

  r.report_unused(root, "");
  try {
    cfg.validate();
  } catch (const Error& e) {
    CTDET_FAIL(source, ": ", e.what());
  }
  if (warnings) *warnings = r.warns;
  return cfg;
}

RunConfig read_tf_pipeline_config(const std::string& path, std::vector<std::string>* warnings) {
  return parse_tf_pipeline_config(read_file(path), path, warnings);
}

}  // namespace ctdet
