// Seeded, untrained detectors for the tests of the commands and APIs around a model (infer, monitor, serve, the C
// API, train --init): the parameters of a config's detector from init_faster_rcnn_params, in a CPU store or written
// as a safetensors weights file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "detector/faster_rcnn.h"
#include "detector/session.h"
#include "io/safetensors.h"

namespace ctdet::testing {

inline std::unique_ptr<ParamStore> seeded_detector_params(const FasterRcnnConfig& cfg, uint64_t seed) {
  auto ps = std::make_unique<ParamStore>(Device::CPU, DType::F32);
  declare_faster_rcnn_params(*ps, cfg);
  ps->allocate();
  init_faster_rcnn_params(*ps, cfg, seed);
  return ps;
}

inline void write_seeded_detector(const FasterRcnnConfig& cfg, uint64_t seed, const std::string& path) {
  write_safetensors(path, save_from(*seeded_detector_params(cfg, seed)));
}

}  // namespace ctdet::testing
