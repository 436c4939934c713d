// Training checkpoints in a directory:
//   ckpt-<step>.safetensors  parameters under their own names + optimizer state as "momentum/<name>"
//                            (__metadata__: format=ctdet-checkpoint, step)
//   ckpt-<step>.json         sidecar: the caller's JSON (config, data position, rng state, best AP, ...)
//                            plus "step", "safetensors" (file name), "safetensors_bytes", "safetensors_crc32c"
//   last                     {"step": N, "checkpoint": "ckpt-N"}  pointer to the newest checkpoint
//   best                     the same for the checkpoint saved with best = true (optional)
// Every file is written atomically (tmp + fsync + rename, then the directory is fsynced). The sidecar is
// written after the tensors, so a checkpoint is complete iff its .json exists; the pointers come last.
// Pruning keeps the `keep` newest complete checkpoints and never the one `best` points to; it deletes a
// checkpoint's .json first, so an interrupted prune leaves only an incomplete (ignored) one. Leftover
// temporary files ("*.tmp.*") and tensor files without a sidecar are removed at each save.
//
// Loading:
//   load_checkpoint(dir)  "last": starts from the checkpoint `last` names (or the newest complete one when
//                         the pointer is missing/stale) and, when its files are corrupt (sidecar unreadable,
//                         tensor file missing, truncated, wrong size or CRC), warns on stderr and falls back
//                         to the next older complete checkpoint. A store that does not match the file
//                         (missing / unexpected / misshaped parameters) is an error, not a fallback.
//   load_checkpoint(file) a specific ckpt-<step>.safetensors / .json / "ckpt-<step>" path: any problem
//                         is a ctdet::Error naming the file.
// The store is written only after the whole checkpoint has been validated.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/param_store.h"

namespace ctdet {

struct CheckpointOptions {
  int keep = 5;              // complete checkpoints kept (>= 1), the best one not counted against it
  bool save_momentum = true;
  bool best = false;         // also point `best` at this checkpoint
};

struct CheckpointInfo {
  int64_t step = 0;
  std::string safetensors;  // full paths
  std::string json;
};

// Returns the path of the .safetensors written.
std::string save_checkpoint(const std::string& dir, int64_t step, const ParamStore& store,
                            const nlohmann::json& sidecar = nlohmann::json::object(),
                            const CheckpointOptions& opt = {});

struct CheckpointLoadOptions {
  bool momentum = true;          // load "momentum/<name>" into the store's momentum
  bool require_momentum = true;  // when loading momentum, a file without it is an error (else zeros)
};

// Returns the sidecar JSON of the checkpoint loaded (with "step" and "checkpoint": its .safetensors path).
nlohmann::json load_checkpoint(const std::string& dir_or_file, ParamStore& store,
                               const CheckpointLoadOptions& opt = {});

// Complete checkpoints (those with a .json) in dir, oldest first.
std::vector<CheckpointInfo> list_checkpoints(const std::string& dir);
// Step named by the `last` / `best` pointer, -1 when there is none.
int64_t checkpoint_pointer(const std::string& dir, const std::string& which = "last");

}  // namespace ctdet
