#include "train/model_files.h"

#include <filesystem>

#include "io/safetensors.h"
#include "train/checkpoint.h"

namespace ctdet {

namespace fs = std::filesystem;

ModelFiles resolve_model_files(const std::string& run_dir, const std::string& config_path, const std::string& weights) {
  ModelFiles m;
  if (!run_dir.empty()) {
    CTDET_CHECK(fs::is_directory(run_dir), "model: run folder '", run_dir, "' does not exist");
    m.config_path = config_path.empty() ? (fs::path(run_dir) / "config.json").string() : config_path;
    CTDET_CHECK(fs::exists(m.config_path), "model: '", run_dir, "' has no config.json (is it a `ctdet train` run folder?)");
    if (!weights.empty()) {
      m.weights_path = weights;
    } else {
      const fs::path ck = fs::path(run_dir) / "checkpoints";
      CTDET_CHECK(fs::is_directory(ck), "model: '", run_dir, "' has no checkpoints/ folder");
      m.weights_path = ck.string();
      // Prefer the best checkpoint (by validation AP) when one was recorded.
      try {
        const int64_t best = checkpoint_pointer(ck.string(), "best");
        if (best >= 0) m.weights_path = (ck / ("ckpt-" + std::to_string(best) + ".safetensors")).string();
      } catch (const Error&) {
      }
    }
  } else {
    CTDET_CHECK(!config_path.empty() && !weights.empty(), "model: give --run RUN_DIR, or --config FILE and --weights FILE");
    m.config_path = config_path;
    m.weights_path = weights;
  }
  std::vector<std::string> warnings;
  m.config = load_config_file(m.config_path, {}, &warnings);
  return m;
}

void load_model_weights(ParamStore& ps, const std::string& path) {
  CTDET_CHECK(fs::exists(path), "weights '", path, "' do not exist");
  const fs::path p(path);
  const bool checkpoint = fs::is_directory(p) || fs::exists(fs::path(p).replace_extension(".json"));
  if (checkpoint) {
    CheckpointLoadOptions o;
    o.momentum = false;
    o.require_momentum = false;
    load_checkpoint(path, ps, o);
  } else {
    SafeTensors st = read_safetensors(path);
    load_into(ps, st);
  }
}

}  // namespace ctdet
