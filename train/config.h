// How a run is configured: the model numbers (detector/config.h), the training numbers and the data paths, read from
// JSON config files (sections "model", "train", "data"; "base" inherits from another file), command-line overrides
// ("train.steps=500") and TF Object Detection API pipeline.config files (protobuf text format).
//
// One table of keys in config.cpp (name, type, doc, getter/setter) drives loading, overrides, saving, "did you
// mean" and config_help(); there is no second list of keys anywhere. Defaults are the study's
// faster_rcnn_resnet101 run (faster_rcnn_spec.md §1, §2, §8) with the 3 lesion classes.
//
// Learning rate (TF manual_step_learning_rate semantics, `step` = updates already applied, 0 for the first):
//   lr_at(step) = the lr of the last lr_steps entry with entry.step <= step, else train.lr;
//   during warmup (step < warmup_steps) it is multiplied by warmup_factor + (1 - warmup_factor) * step / warmup_steps.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "detector/config.h"

namespace ctdet {

struct LrStep {
  int64_t step = 0;  // from this step on (inclusive) ...
  double lr = 0;     // ... the learning rate is this
  bool operator==(const LrStep& o) const { return step == o.step && lr == o.lr; }
};

struct TrainConfig {
  int64_t steps = 316000;            // total optimizer steps (the study's run)
  int batch_size = 1;                // images per optimizer step (spec §1)
  int64_t seed = 0;                  // data order, flips and weight init
  double lr = 3e-4;                  // base learning rate (spec §1 initial_learning_rate)
  std::vector<LrStep> lr_steps = {{900000, 3e-5}, {1200000, 3e-6}};  // spec §1 manual_step schedule
  int64_t warmup_steps = 0;          // linear warmup length; 0 = none
  double warmup_factor = 0.001;      // lr multiplier at step 0 of the warmup
  double momentum = 0.9;             // spec §8: accum = m*accum + g; w -= lr*accum
  double grad_clip_norm = 10.0;      // spec §8; 0 = no clipping
  std::string clip_mode = "global";  // "global" (model_main.py) or "per_tensor" (legacy train.py), spec §8
  int grad_accumulation = 1;         // micro-batches summed per optimizer step
  bool recompute_backbone = false;   // gradient checkpointing of the backbone's first stage (less memory, +1 forward)
  std::string memory_budget;         // e.g. "8GiB"; "" = what the device has free
  int64_t checkpoint_every = 5000;   // steps between checkpoints; 0 = only at the end
  int keep_checkpoints = 7;          // newest K kept (TF CheckpointManager max_to_keep)
  int64_t eval_every = 5000;         // steps between evaluations on data.val; 0 = only at the end
  int64_t log_every = 100;           // steps between console / TensorBoard lines
  int64_t profile_step = 0;          // time every node of this step (>= 2) into RUN/profile.txt; 0 = off
  std::string device = "auto";       // "cpu", "cuda" or "auto" (cuda when available)
  bool deterministic = false;        // deterministic cuDNN algorithms and reductions
  bool flip = true;                  // random horizontal flip augmentation (spec §2)
  double flip_prob = 0.5;            // its probability
  std::string init;                  // safetensors weights (backbone or detector); "" = from scratch

  double lr_at(int64_t step) const;
  void validate() const;             // throws ctdet::Error naming the key and value
};

struct DataConfig {
  // Paths of what `ctdet prepare --out DIR` writes: DIR/{train,val,test}-NNNNN-of-NNNNN.tfrecord,
  // DIR/label_map.pbtxt, DIR/summary.json. Each of train/val is the prepared folder DIR (its train/val shards are
  // used), a shard prefix ("DIR/train"), a pattern ("DIR/train-?????-of-00004.tfrecord") or one .tfrecord file.
  std::string train;
  std::string val;
  std::vector<std::string> class_names = {"GGO", "CD", "GGO+CD"};  // label ids 1..N (0 = background)
  int num_workers = 2;               // loader threads

  void validate() const;
};

struct RunConfig {
  FasterRcnnConfig model;
  TrainConfig train;
  DataConfig data;

  double lr_at(int64_t step) const { return train.lr_at(step); }
  void validate() const;  // model.validate(), train, data and the cross checks (num_classes == class_names)
};

// ---- JSON config files and overrides ------------------------------------------------------------------------
// Loads a JSON config file: defaults, then its "base" chain (paths relative to the including file), then its keys;
// overrides ("key=value") are applied last; the result is validated. Unknown keys name the nearest valid key.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from JSON text; `source` names it in errors, `base_dir` resolves "base".
RunConfig run_config_from_json(const std::string& text, const std::string& source, const std::string& base_dir = ".");

// "train.steps=500", "model.anchor_scales=0.25,0.5,1,2", "train.lr_steps=900000:3e-5,1200000:3e-6" (or a JSON
// value after '='). Does not validate (several overrides may change related keys); call RunConfig::validate().
void apply_override(RunConfig& cfg, const std::string& key_equals_value);

// Every key, fully resolved, in table order, sections "model", "train", "data". Loading it gives the same config.
std::string to_json(const RunConfig& cfg);
// Writes run_dir/config.json atomically (io/atomic_file.h); returns its path.
std::string save_resolved_config(const std::string& run_dir, const RunConfig& cfg);

// ---- the key table, for help texts and docs --------------------------------------------------------------------
struct ConfigKeyInfo {
  std::string name;           // "train.steps"
  std::string type;           // int, double, bool, string, int list, double list, string list, lr steps, or a|b|c
  std::string default_value;  // JSON text of the default
  std::string doc;            // meaning, unit and spec section
};
std::vector<ConfigKeyInfo> config_keys();
std::string nearest_config_key(const std::string& key);
std::string config_help();            // `ctdet train --help-config`
std::string config_markdown_table();  // the key table of configs/README.md

// ---- TF Object Detection API pipeline.config ----------------------------------------------------------------
// Reads the study's protobuf text format (model.faster_rcnn, train_config, train/eval_input_reader). Fields ctdet
// does not use, and values it cannot follow, are reported in `warnings` ("file:line:col: ..."), not errors; a
// syntax error throws naming file:line:col. The result is validated.
RunConfig read_tf_pipeline_config(const std::string& path, std::vector<std::string>* warnings = nullptr);
RunConfig parse_tf_pipeline_config(const std::string& text, const std::string& source,
                                   std::vector<std::string>* warnings = nullptr);
// .json -> load_run_config, anything else -> read_tf_pipeline_config (warnings go to `warnings`).
RunConfig load_config_file(const std::string& path, const std::vector<std::string>& overrides = {},
                           std::vector<std::string>* warnings = nullptr);

// ---- data paths -------------------------------------------------------------------------------------------------
// The TFRecord shard files of `split` ("train", "val") that `path` names (see DataConfig), sorted. Throws when none
// exist or when a -NNNNN-of-MMMMM set is incomplete, naming the missing shard.
std::vector<std::string> resolve_shards(const std::string& path, const std::string& split);

}  // namespace ctdet
