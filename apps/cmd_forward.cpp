// `ctdet forward`: runs a backbone's first stage (or up to a named tap) on an (N,3,H,W) float32 .npy input,
// with weights from a safetensors file or the deterministic formula weights of the tests, on CPU or CUDA;
// writes the output as .npy and prints its shape, min/max/mean and the run time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "apps/args.h"
#include "apps/command.h"
#include "detector/forward_runner.h"
#include "io/npy.h"

namespace ctdet::app {

static void forward_usage() {
  std::printf(
      "usage: ctdet forward --model resnet101|resnet101_torchvision|inception_v2 --input x.npy\n"
      "                     [--weights w.safetensors] [--until TAP] [--output out.npy] [--device cpu|cuda]\n"
      "                     [--base-width 64] [--units 3,4,23,3]           (ResNet)\n"
      "                     [--depth-multiplier 1.0] [--min-depth 16]      (Inception-v2)\n"
      "                     [--repeat N]   (time N runs after a warm-up: median and min)\n"
      "       ctdet forward --model NAME --list-taps\n"
      "Runs the backbone's first stage (or only the nodes up to --until TAP) on an (N,3,H,W) float32 input\n"
      "(H, W >= 33, already preprocessed). Without --weights the parameters come from the deterministic formula\n"
      "the tests use. Weights are matched by ctdet name (see detector/backbone/resnet.h, inception_v2.h).\n");
}

static int cmd_forward(const std::vector<std::string>& argv) {
  for (auto& a : argv)
    if (a == "--help" || a == "-h") {
      forward_usage();
      return 0;
    }
  Args a("forward", argv,
         {"model", "input", "weights", "until", "output", "device", "base-width", "units", "depth-multiplier",
          "min-depth", "repeat"},
         {"list-taps"});
  CTDET_CHECK(a.positional().empty(), "forward: unexpected argument '", a.positional().empty() ? "" : a.positional()[0],
              "'");
  ForwardSpec s;
  s.model = a.get("model", "");
  CTDET_CHECK(!s.model.empty(), "forward: --model is required (resnet101, resnet101_torchvision, inception_v2)");
  s.base_width = a.get_int("base-width", 64);
  CTDET_CHECK(s.base_width > 0, "forward: --base-width must be positive, got ", s.base_width);
  if (a.has("units")) {
    for (const auto& u : split_list(a.get("units"), "forward: --units")) {
      try {
        size_t used = 0;
        int v = std::stoi(u, &used);
        CTDET_CHECK(used == u.size() && v > 0, "forward: --units items must be positive integers, got '", u, "'");
        s.units.push_back(v);
      } catch (const std::logic_error&) {
        CTDET_FAIL("forward: --units items must be positive integers, got '", u, "'");
      }
    }
    CTDET_CHECK(s.units.size() == 4, "forward: --units needs 4 numbers (block1..block4), got ", s.units.size());
  }
  s.depth_multiplier = a.get_double("depth-multiplier", 1.0);
  CTDET_CHECK(s.depth_multiplier > 0, "forward: --depth-multiplier must be positive, got ", s.depth_multiplier);
  s.min_depth = a.get_int("min-depth", 16);
  s.until = a.get("until", "");
  s.repeat = a.get_int("repeat", 1);
  CTDET_CHECK(s.repeat >= 1 && s.repeat <= 1000, "forward: --repeat must be between 1 and 1000, got ", s.repeat);
  if (a.flag("list-taps")) {
    for (const auto& t : forward_taps(s)) std::printf("%s\n", t.c_str());
    return 0;
  }
  const std::string dev = a.get("device", "cpu");
  CTDET_CHECK(dev == "cpu" || dev == "cuda", "forward: --device must be cpu or cuda, got '", dev, "'");
  s.device = dev == "cpu" ? Device::CPU : Device::CUDA;
  const std::string in_path = a.get("input", "");
  CTDET_CHECK(!in_path.empty(), "forward: --input x.npy is required");
  const std::string weights = a.get("weights", "");

  NpyArray x = read_npy(in_path);
  ForwardResult r = run_forward(s, x, in_path, weights);
  std::printf("model %s, input %s (%lld,%lld,%lld,%lld), device %s\n", r.description.c_str(), in_path.c_str(),
              (long long)x.shape[0], (long long)x.shape[1], (long long)x.shape[2], (long long)x.shape[3], dev.c_str());
  if (r.synthetic_weights)
    std::printf("weights: SYNTHETIC (deterministic formula weights, no --weights given; outputs are not meaningful "
                "features)\n");
  else
    std::printf("weights: %s (%d tensors loaded, %d of this model not needed by this run skipped)\n", weights.c_str(),
                r.loaded_tensors, r.skipped_tensors);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  size_t nonfinite = 0;
  for (float v : r.data) {
    if (!std::isfinite(v)) {
      ++nonfinite;
      continue;
    }
    lo = std::min(lo, double(v));
    hi = std::max(hi, double(v));
    sum += v;
  }
  std::string shape = "(";
  for (size_t i = 0; i < r.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(r.shape[i]);
  shape += ")";
  const size_t finite = r.data.size() - nonfinite;
  std::printf("tap %s: shape %s, min %.6g, max %.6g, mean %.6g%s\n", r.tap.c_str(), shape.c_str(), lo, hi,
              finite ? sum / double(finite) : 0.0,
              nonfinite ? str(" (", nonfinite, " non-finite values left out)").c_str() : "");
  if (r.timed_runs > 1)
    std::printf("time median %.3f ms, min %.3f ms over %d runs after a warm-up (%d nodes run; the whole backbone, "
                "both stages, has %d)\n",
                r.ms, r.ms_min, r.timed_runs, r.nodes_run, r.nodes_total);
  else
    std::printf("time %.3f ms (%d nodes run; the whole backbone, both stages, has %d)\n", r.ms, r.nodes_run,
                r.nodes_total);
  if (a.has("output")) {
    const std::string out = a.get("output");
    write_npy(out, make_npy_f32(r.shape, r.data.data()));
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

CTDET_COMMAND("forward", "run a backbone's first stage (or up to a tap) on an .npy input and write the output",
              cmd_forward);

}  // namespace ctdet::app
