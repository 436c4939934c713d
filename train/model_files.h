// Finding and loading a trained model for inference (ctdet infer, and later serve / the C API):
//   --run RUN_DIR            RUN_DIR/config.json and the best checkpoint (else the last) of RUN_DIR/checkpoints
//   --config C --weights W   a config file (JSON or TF pipeline.config) and a checkpoint (file or folder) or a
//                            safetensors file of parameters
#pragma once
#include <string>

#include "nn/param_store.h"
#include "train/config.h"

namespace ctdet {

struct ModelFiles {
  RunConfig config;
  std::string config_path, weights_path;
};

// Throws ctdet::Error naming what is missing (e.g. "RUN_DIR has no config.json").
ModelFiles resolve_model_files(const std::string& run_dir, const std::string& config_path, const std::string& weights);

// Loads parameters (no optimizer state) from a checkpoint folder, a checkpoint file (with its JSON sidecar) or a
// plain safetensors file into a declared and allocated store. Missing / unexpected / misshaped tensors: one error
// listing all of them.
void load_model_weights(ParamStore& ps, const std::string& weights_path);

}  // namespace ctdet
