// Backbone forward runs for `ctdet forward` (apps/cmd_forward.cpp) and the tests: build a backbone's first
// stage for an input shape, optionally stop at a named end point ("tap"), fill the parameters from a
// safetensors file or from the deterministic formula the fixtures use, run on CPU or CUDA, return the output.
//
// The formula (tests/fixtures/make_resnet_fixtures.py, tests/fixtures/inception/make_inception_fixtures.py):
//   h = FNV-1a 32-bit of the parameter name; x = (i * 0x9E3779B1 + h) mod 2^32 passed through the murmur3
//   32-bit finaliser; u = x / 2^32; value = float(lo + (hi - lo) * u) computed in double, (lo, hi) by name:
//     rank-4 conv weights (".weight", "weights")   +-sqrt(6 / fan_in), fan_in = shape[1]*shape[2]*shape[3]
//     BN scale  (".weight" rank 1, ".gamma")       [0.3, 0.8]
//     BN shift  (".bias", ".beta")                 [-0.2, 0.2]
//     running / moving mean                        [-0.2, 0.2]
//     running / moving variance                    [0.6, 1.4]
//     "input", "crops", "image"                    [-1, 1]
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/npy.h"
#include "nn/device.h"
#include "nn/graph.h"
#include "nn/param_store.h"

namespace ctdet {

// ---- formula weights --------------------------------------------------------------------------------------
uint32_t formula_name_hash(const std::string& name);              // FNV-1a 32-bit
double formula_unit(uint32_t hash, uint64_t i);                    // in [0, 1)
// (lo, hi) for a name and shape (table above); throws ctdet::Error naming the tensor when no rule applies.
std::pair<double, double> formula_range(const std::string& name, const Shape& shape);
template <typename T> std::vector<T> formula_values(const std::string& name, const Shape& shape);
// Every entry of the store (F32 or F64) from the formula.
void fill_formula_weights(ParamStore& store);

// ---- forward runs -------------------------------------------------------------------------------------------
struct ForwardSpec {
  std::string model = "resnet101";  // resnet101 (TF-slim placement) | resnet101_torchvision | inception_v2
  // ResNet: base_width and units ({} = ResNet-101's {3,4,23,3}).
  int base_width = 64;
  std::vector<int> units;
  // Inception-v2.
  double depth_multiplier = 1.0;
  int min_depth = 16;
  std::string until;                // a tap name; "" = the first stage's output
  Device device = Device::CPU;
  int repeat = 1;                   // > 1: one untimed warm-up run, then `repeat` timed runs (median and min)
};

// Known models and the tap names of one (ResNet: stem, block1, block2, block3; Inception: slim's end points
// Conv2d_1a_7x7 ... Mixed_4e). The last tap is the first stage's output.
const std::vector<std::string>& forward_models();
std::vector<std::string> forward_taps(const ForwardSpec& spec);

struct ForwardGraph {
  Graph graph{DType::F32};
  ValueId image = kNoValue;
  ValueId output = kNoValue;    // the tap's value (marked as a graph output)
  std::string tap;              // its name
  int end_node = 0;             // nodes [0, end_node) compute it: the producer of `output` and all before it
  std::string description;      // "inception_v2 (depth multiplier 0.25, min depth 16)"
};
// Builds the first stage for input (N,3,H,W). Throws naming the option for an unknown model or tap (with the
// list of known ones). The backbones are chains of blocks built in order, so every node before the tap's
// producer is one of its ancestors: running the prefix [0, end_node) runs exactly the nodes it needs.
ForwardGraph build_forward_graph(const ForwardSpec& spec, int64_t N, int64_t H, int64_t W);

// Checks a `ctdet forward` input: float32 (N,3,H,W) with H, W >= 33 (the extractors' minimum). Errors name
// `path` and the offending dtype / shape.
void check_forward_input(const NpyArray& a, const std::string& path);

struct ForwardResult {
  std::string tap;
  std::vector<int64_t> shape;
  std::vector<float> data;
  double ms = 0;                // wall time of the node runs (after weights and input are in place); the median
  double ms_min = 0;            // of spec.repeat runs, and their minimum
  int timed_runs = 1;
  int nodes_run = 0, nodes_total = 0;
  bool synthetic_weights = false;
  int loaded_tensors = 0;       // from the weights file
  int skipped_tensors = 0;      // file tensors of parts of the model this run does not build (e.g. block4)
  std::string description;
};
// Runs spec on `input` (checked with check_forward_input). weights_path "" = formula weights. A weights file
// must provide every parameter the run needs under its ctdet name (resnet.h / inception_v2.h); tensors of the
// same model that the run does not need (later taps, the second stage) are skipped, anything else is an
// error listing every missing, unexpected or misshaped tensor. Device::CUDA needs a CUDA build and a device
// (otherwise an error saying which is missing).
ForwardResult run_forward(const ForwardSpec& spec, const NpyArray& input, const std::string& input_path,
                          const std::string& weights_path);

}  // namespace ctdet
