// Named model graphs for planning and benchmarking (`ctdet plan`, bench/): each builds the full graph
// (forward, and backward with a stand-in loss when training) for an input size and batch.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "nn/graph.h"

namespace ctdet {

struct ModelSpec {
  std::string name;
  int height = 600, width = 600, batch = 1;
  bool train = false;
};

struct ModelGraph {
  Graph graph;
  ValueId input = kNoValue;
  ValueId output = kNoValue;  // the loss when training
  std::string description;
  // Detectors: the backbone first stage's recomputation segments (backbone_recompute_segments), for
  // apply_segment_recompute on training graphs.
  std::vector<std::pair<int, int>> recompute_segments;
};

// Throws ctdet::Error listing the known models for an unknown name.
ModelGraph build_model_graph(const ModelSpec& spec);
std::vector<std::string> known_models();

}  // namespace ctdet
