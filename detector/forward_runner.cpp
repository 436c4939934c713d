// Backbone forward runs for `ctdet forward` and the tests. See forward_runner.h.
#include "detector/forward_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "detector/backbone/inception_v2.h"
#include "detector/backbone/resnet.h"
#include "io/safetensors.h"
#include "nn/executor.h"
#include "nn/planner.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

// ---- formula ------------------------------------------------------------------------------------------------
uint32_t formula_name_hash(const std::string& name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : name) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

double formula_unit(uint32_t hash, uint64_t i) {
  uint64_t x = (i * 0x9E3779B1ull + hash) & 0xFFFFFFFFull;
  x ^= x >> 16;
  x = (x * 0x85EBCA6Bull) & 0xFFFFFFFFull;
  x ^= x >> 13;
  x = (x * 0xC2B2AE35ull) & 0xFFFFFFFFull;
  x ^= x >> 16;
  return double(x) / 4294967296.0;
}

namespace {
bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
}  // namespace

std::pair<double, double> formula_range(const std::string& name, const Shape& shape) {
  if (name == "input" || name == "crops" || name == "image") return {-1.0, 1.0};
  if (ends_with(name, "running_mean") || ends_with(name, "moving_mean")) return {-0.2, 0.2};
  if (ends_with(name, "running_var") || ends_with(name, "moving_variance")) return {0.6, 1.4};
  if (ends_with(name, ".bias") || ends_with(name, ".beta")) return {-0.2, 0.2};
  if ((ends_with(name, ".weight") && shape.rank() == 1) || ends_with(name, ".gamma")) return {0.3, 0.8};
  if ((ends_with(name, ".weight") || ends_with(name, "weights")) && shape.rank() == 4) {
    const double a = std::sqrt(6.0 / double(shape[1] * shape[2] * shape[3]));
    return {-a, a};
  }
  CTDET_FAIL("formula weights: no rule for tensor '", name, "' ", shape.str());
}

template <typename T> std::vector<T> formula_values(const std::string& name, const Shape& shape) {
  const auto [lo, hi] = formula_range(name, shape);
  const uint32_t h = formula_name_hash(name);
  std::vector<T> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = T(float(lo + (hi - lo) * formula_unit(h, i)));
  return v;
}
template std::vector<float> formula_values<float>(const std::string&, const Shape&);
template std::vector<double> formula_values<double>(const std::string&, const Shape&);

void fill_formula_weights(ParamStore& store) {
  for (const auto& n : store.names()) {
    if (store.dtype() == DType::F64) store.set<double>(n, formula_values<double>(n, store.shape(n)));
    else store.set<float>(n, formula_values<float>(n, store.shape(n)));
  }
}

// ---- graphs -------------------------------------------------------------------------------------------------
const std::vector<std::string>& forward_models() {
  static const std::vector<std::string> m = {"resnet101", "resnet101_torchvision", "inception_v2"};
  return m;
}

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

bool is_resnet(const ForwardSpec& s) { return s.model == "resnet101" || s.model == "resnet101_torchvision"; }

void check_model(const ForwardSpec& s) {
  const auto& m = forward_models();
  CTDET_CHECK(std::find(m.begin(), m.end(), s.model) != m.end(), "forward: unknown model '", s.model,
              "' (known: ", join(m), ")");
}

ResNetOptions resnet_options(const ForwardSpec& s) {
  ResNetOptions o = ResNetOptions::resnet101(s.model == "resnet101" ? ResNetLayout::TfSlim : ResNetLayout::Torchvision);
  o.base_width = s.base_width;
  if (!s.units.empty()) {
    CTDET_CHECK(s.units.size() == 4, "forward: ResNet units must list 4 blocks, got ", s.units.size());
    for (size_t i = 0; i < 4; ++i) o.units[i] = s.units[i];
  }
  return o;
}

InceptionV2Options inception_options(const ForwardSpec& s) {
  InceptionV2Options o;
  o.depth_multiplier = s.depth_multiplier;
  o.min_depth = s.min_depth;
  return o;
}

// Builds the first stage (and, with `second`, the second stage on (1, C, 7, 7) crops) into g; returns the taps
// in order (name, value).
std::vector<std::pair<std::string, ValueId>> build_model(const ForwardSpec& s, Graph& g, ValueId image,
                                                         bool second, std::string* description) {
  check_model(s);
  std::vector<std::pair<std::string, ValueId>> taps;
  if (is_resnet(s)) {
    ResNetBackbone net(resnet_options(s));
    ResNetTaps t;
    ValueId y = net.first_stage(g, image, &t);
    taps = {{"stem", t.stem}, {"block1", t.block1}, {"block2", t.block2}, {"block3", t.block3}};
    if (second) net.second_stage(g, g.input("crops", {1, net.first_stage_channels(), 7, 7}));
    (void)y;
    if (description) {
      const auto& o = net.options();
      *description = str(s.model, " (", resnet_layout_name(o.layout), " stride placement, base width ", o.base_width,
                         ", units ", o.units[0], ",", o.units[1], ",", o.units[2], ",", o.units[3], ")");
    }
  } else {
    InceptionV2Backbone net(inception_options(s));
    InceptionV2Taps t;
    net.first_stage(g, image, &t);
    taps = t.end_points;
    if (second) net.second_stage(g, g.input("crops", {1, net.first_stage_channels(), 7, 7}));
    if (description)
      *description = str(s.model, " (depth multiplier ", s.depth_multiplier, ", min depth ", s.min_depth, ")");
  }
  return taps;
}

}  // namespace

std::vector<std::string> forward_taps(const ForwardSpec& spec) {
  check_model(spec);
  if (is_resnet(spec)) return {"stem", "block1", "block2", "block3"};
  return inception_v2_first_stage_end_points();
}

ForwardGraph build_forward_graph(const ForwardSpec& spec, int64_t N, int64_t H, int64_t W) {
  Graph full(DType::F32);
  ForwardGraph fg;
  ValueId image = full.input("image", {N, 3, H, W});
  auto taps = build_model(spec, full, image, false, &fg.description);
  fg.tap = spec.until.empty() ? taps.back().first : spec.until;
  ValueId target = kNoValue;
  for (auto& [n, v] : taps)
    if (n == fg.tap) target = v;
  if (target == kNoValue) {
    std::vector<std::string> names;
    for (auto& t : taps) names.push_back(t.first);
    CTDET_FAIL("forward: --until '", spec.until, "' is not a tap of ", spec.model, " (known: ", join(names), ")");
  }
  // The producer of the tap; the nodes before it are its ancestors (chain of blocks built in order).
  int producer = -1;
  for (int i = 0; i < full.num_nodes() && producer < 0; ++i)
    for (ValueId o : full.node(i).outputs)
      if (o == target) producer = i;
  CTDET_CHECK(producer >= 0, "forward: tap '", fg.tap, "' has no producing node");
  fg.end_node = producer + 1;

  // Replay nodes [0, end_node) into a graph of their own: only the parameters they read are declared.
  Graph& g = fg.graph;
  std::vector<ValueId> map(size_t(full.num_values()), kNoValue);
  auto mapped = [&](ValueId v) {
    if (map[size_t(v)] != kNoValue) return map[size_t(v)];
    const Value& x = full.value(v);
    if (x.kind == ValueKind::Param) {
      map[size_t(v)] = g.param(x.name, x.shape);
      g.value_mut(map[size_t(v)]).requires_grad = x.requires_grad;
    } else {
      CTDET_CHECK(x.kind == ValueKind::Input, "forward: value ", full.describe(v), " is read before it is made");
      map[size_t(v)] = g.input(x.name, x.shape, x.dtype);
    }
    return map[size_t(v)];
  };
  for (int i = 0; i < fg.end_node; ++i) {
    const Node& n = full.node(i);
    std::vector<ValueId> ins;
    for (ValueId v : n.inputs) ins.push_back(mapped(v));
    std::vector<ValueId> outs = g.add(n.op, n.name, ins, n.attrs);
    CTDET_CHECK(outs.size() == n.outputs.size(), "forward: replaying node '", n.name, "' gave ", outs.size(),
                " outputs, expected ", n.outputs.size());
    for (size_t k = 0; k < outs.size(); ++k) map[size_t(n.outputs[k])] = outs[k];
  }
  fg.image = mapped(image);
  fg.output = map[size_t(target)];
  g.mark_output(fg.output);
  return fg;
}

void check_forward_input(const NpyArray& a, const std::string& path) {
  CTDET_CHECK(a.dtype == "f4", "forward: input '", path, "' must be float32 (numpy '<f4'), got dtype '", a.dtype, "'");
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(a.shape[i]);
  shape += ")";
  CTDET_CHECK(a.shape.size() == 4, "forward: input '", path, "' must be (N,3,H,W), got rank ", a.shape.size(), " ",
              shape);
  CTDET_CHECK(a.shape[0] >= 1 && a.shape[1] == 3, "forward: input '", path, "' must be (N,3,H,W) with N >= 1, got ",
              shape);
  CTDET_CHECK(a.shape[2] >= 33 && a.shape[3] >= 33, "forward: input '", path,
              "' must be at least 33x33 (the feature extractors' minimum), got ", shape);
}

ForwardResult run_forward(const ForwardSpec& spec, const NpyArray& input, const std::string& input_path,
                          const std::string& weights_path) {
  check_forward_input(input, input_path);
  ForwardGraph fg = build_forward_graph(spec, input.shape[0], input.shape[2], input.shape[3]);
  ForwardResult r;
  r.tap = fg.tap;
  r.description = fg.description;
  r.nodes_run = fg.graph.num_nodes();
  {
    Graph whole(DType::F32);
    ValueId im = whole.input("image", {1, 3, 64, 64});
    build_model(spec, whole, im, true, nullptr);
    r.nodes_total = whole.num_nodes();
  }

#if CTDET_WITH_CUDA
  std::unique_ptr<CudaContext> ctx;
#endif
  if (spec.device == Device::CUDA) {
    CTDET_CHECK(cuda_built(), "forward: --device cuda, but ctdet was built without CUDA");
    CTDET_CHECK(cuda_device_available(), "forward: --device cuda, but no CUDA device can be used: ",
                cuda_unavailable_reason());
#if CTDET_WITH_CUDA
    ctx = std::make_unique<CudaContext>(0);
#endif
  }

  ParamStore ps(spec.device, DType::F32);
  ps.declare_from(fg.graph);
  ps.allocate(ParamUse::Inference);
  if (weights_path.empty()) {
    fill_formula_weights(ps);
    r.synthetic_weights = true;
  } else {
    SafeTensors file = read_safetensors(weights_path);
    // Tensors of this model that this run does not build (later taps, the second stage) are skipped.
    Graph whole(DType::F32);
    ValueId im = whole.input("image", {1, 3, 64, 64});
    build_model(spec, whole, im, true, nullptr);
    LoadOptions lo;
    for (const Value& v : whole.values())
      if (v.kind == ValueKind::Param && !ps.has(v.name) && file.has(v.name)) {
        lo.name_map[v.name] = "";
        ++r.skipped_tensors;
      }
    for (const StTensor& t : file.tensors)  // torch BN counters carry no weights
      if (t.name.size() >= 19 && t.name.compare(t.name.size() - 19, 19, "num_batches_tracked") == 0) {
        lo.name_map[t.name] = "";
        ++r.skipped_tensors;
      }
    LoadReport rep = load_into(ps, file, lo);
    r.loaded_tensors = rep.loaded;
  }

  PlanOptions popt;
  popt.device = spec.device;
  MemoryPlan plan = plan_memory(fg.graph, popt);
#if CTDET_WITH_CUDA
  Executor ex(fg.graph, plan, ps, spec.device, ctx.get());
#else
  Executor ex(fg.graph, plan, ps, spec.device, nullptr);
#endif
  ex.set(fg.image, input.bytes.data(), input.bytes.size());
  CTDET_CHECK(spec.repeat >= 1, "forward: repeat must be at least 1, got ", spec.repeat);
  std::vector<double> ms;
  for (int k = spec.repeat > 1 ? -1 : 0; k < spec.repeat; ++k) {  // k = -1: the untimed warm-up
    const auto t0 = std::chrono::steady_clock::now();
    ex.run();
#if CTDET_WITH_CUDA
    if (ctx) ctx->synchronize();
#endif
    if (k >= 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  r.ms = ms[ms.size() / 2];
  r.ms_min = ms.front();
  r.timed_runs = int(ms.size());
  const Shape& os = fg.graph.value(fg.output).shape;
  for (int i = 0; i < os.rank(); ++i) r.shape.push_back(os[i]);
  r.data = ex.get<float>(fg.output);
  return r;
}

}  // namespace ctdet
