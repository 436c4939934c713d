// `ctdet forward` (apps/cmd_forward.cpp, detector/forward_runner.h): the library run and the built binary
// against a direct graph run of the backbone (tiny ResNet, both placements; tiny Inception-v2), with formula
// weights and with weights from a safetensors file; taps run only their prefix of the graph; bad inputs and
// bad weight files give errors that name the file and every offending tensor.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <cstring>
#include <functional>
#include <sstream>

#include "detector/backbone/inception_v2.h"
#include "detector/backbone/resnet.h"
#include "detector/forward_runner.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "nn/executor.h"
#include "nn/op_registry.h"
#include "nn/param_store.h"
#include "nn/planner.h"
#include "test_util.h"

using namespace ctdet;
namespace tu = ctdet::testing;

namespace {

std::string tmp_path(const std::string& name) {
  return str(::testing::TempDir(), "ctdet_forward_", ::getpid(), "_", name);
}

// A direct run: the backbone built by `build` (returns the tap), parameters from `fill`.
std::vector<float> direct_run(const std::function<ValueId(Graph&, ValueId)>& build, const std::vector<int64_t>& shape,
                              const std::vector<float>& x, const std::function<void(ParamStore&)>& fill,
                              Shape* out_shape) {
  Graph g(DType::F32);
  ValueId image = g.input("image", Shape(shape));
  ValueId y = build(g, image);
  g.mark_output(y);
  ParamStore ps(Device::CPU, DType::F32);
  ps.declare_from(g);
  ps.allocate();
  fill(ps);
  MemoryPlan plan = plan_memory(g, {});
  Executor ex(g, plan, ps, Device::CPU);
  ex.set(image, x);
  ex.run();
  *out_shape = g.value(y).shape;
  return ex.get<float>(y);
}

ForwardSpec tiny_resnet(const std::string& model) {
  ForwardSpec s;
  s.model = model;
  s.base_width = 4;
  s.units = {2, 1, 1, 1};
  return s;
}

ForwardSpec tiny_inception() {
  ForwardSpec s;
  s.model = "inception_v2";
  s.depth_multiplier = InceptionV2Options::tiny().depth_multiplier;
  s.min_depth = InceptionV2Options::tiny().min_depth;
  return s;
}

std::function<ValueId(Graph&, ValueId)> resnet_builder(ResNetLayout layout, const std::string& tap) {
  return [layout, tap](Graph& g, ValueId image) {
    ResNetTaps t;
    ValueId y = ResNetBackbone(ResNetOptions::tiny(layout)).first_stage(g, image, &t);
    if (tap == "stem") return t.stem;
    if (tap == "block1") return t.block1;
    if (tap == "block2") return t.block2;
    return y;
  };
}

std::function<ValueId(Graph&, ValueId)> inception_builder(const std::string& tap) {
  return [tap](Graph& g, ValueId image) {
    InceptionV2Taps t;
    ValueId y = InceptionV2Backbone(InceptionV2Options::tiny()).first_stage(g, image, &t);
    return tap.empty() ? y : t.find(tap);
  };
}

NpyArray input_npy(const std::vector<int64_t>& shape) {
  std::vector<float> x = formula_values<float>("input", Shape(shape));
  return make_npy_f32(shape, x.data());
}

void expect_same(const ForwardResult& r, const std::vector<float>& ref, const Shape& ref_shape, const std::string& what) {
  EXPECT_EQ(Shape(r.shape), ref_shape) << what;
  tu::ErrStats s = tu::compare(r.data, ref);
  tu::print_err(what, s);
  EXPECT_LE(s.max_abs, 1e-6) << what;
}

}  // namespace

TEST(ForwardRunner, FormulaWeightsMatchDirectGraphRun) {
  const std::vector<int64_t> shape{2, 3, 40, 37};
  NpyArray in = input_npy(shape);
  const std::vector<float> x = in.as<float>();
  auto formula_fill = [](ParamStore& ps) { fill_formula_weights(ps); };
  struct Case {
    ForwardSpec spec;
    std::function<ValueId(Graph&, ValueId)> build;
  };
  std::vector<Case> cases;
  for (const char* tap : {"", "stem", "block2"}) {
    ForwardSpec s = tiny_resnet("resnet101");
    s.until = tap;
    cases.push_back({s, resnet_builder(ResNetLayout::TfSlim, tap)});
    s.model = "resnet101_torchvision";
    cases.push_back({s, resnet_builder(ResNetLayout::Torchvision, tap)});
  }
  for (const char* tap : {"", "Conv2d_1a_7x7", "Mixed_3c", "Mixed_4a"}) {
    ForwardSpec s = tiny_inception();
    s.until = tap;
    cases.push_back({s, inception_builder(tap)});
  }
  for (const Case& c : cases) {
    ForwardResult r = run_forward(c.spec, in, "input.npy", "");
    Shape ref_shape;
    std::vector<float> ref = direct_run(c.build, shape, x, formula_fill, &ref_shape);
    const std::string what = str(c.spec.model, " until ", r.tap, " (", r.nodes_run, "/", r.nodes_total, " nodes)");
    expect_same(r, ref, ref_shape, what);
    EXPECT_TRUE(r.synthetic_weights);
    EXPECT_LT(r.nodes_run, r.nodes_total) << what;
    if (c.spec.until.empty()) {
      EXPECT_EQ(r.tap, c.spec.model == "inception_v2" ? "Mixed_4e" : "block3");
      EXPECT_EQ(r.shape[2], (40 + 15) / 16);
      EXPECT_EQ(r.shape[3], (37 + 15) / 16);
    }
  }
  // A tap runs only its prefix: the stem of the tiny ResNet is conv, BN, ReLU, max pool.
  ForwardSpec s = tiny_resnet("resnet101");
  s.until = "stem";
  EXPECT_EQ(build_forward_graph(s, 1, 64, 64).graph.num_nodes(), 4);
  s = tiny_inception();
  s.until = "Conv2d_1a_7x7";  // depthwise, pointwise, BN, ReLU
  ForwardGraph fg = build_forward_graph(s, 1, 64, 64);
  EXPECT_EQ(fg.graph.num_nodes(), 4);
  int params = 0;
  for (const Value& v : fg.graph.values()) params += v.kind == ValueKind::Param;
  EXPECT_EQ(params, 6);  // depthwise, pointwise, gamma, beta, mean, variance
}

// --repeat times several runs after a warm-up; the output is the same as one run's, bit for bit.
TEST(ForwardRunner, RepeatTimesRunsWithoutChangingTheOutput) {
  NpyArray in = input_npy({1, 3, 40, 37});
  ForwardSpec s = tiny_inception();
  const ForwardResult once = run_forward(s, in, "input.npy", "");
  s.repeat = 3;
  const ForwardResult rep = run_forward(s, in, "input.npy", "");
  EXPECT_EQ(once.timed_runs, 1);
  EXPECT_EQ(rep.timed_runs, 3);
  EXPECT_GT(rep.ms_min, 0.0);
  EXPECT_LE(rep.ms_min, rep.ms);
  ASSERT_EQ(rep.data.size(), once.data.size());
  EXPECT_EQ(std::memcmp(rep.data.data(), once.data.data(), once.data.size() * sizeof(float)), 0);
  s.repeat = 0;
  try {
    run_forward(s, in, "input.npy", "");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("repeat must be at least 1"), std::string::npos) << e.what();
  }
}

TEST(ForwardRunner, WeightsFromSafetensors) {
  // Random weights for the whole tiny Inception (both stages) written to a file; the first-stage run loads what it
  // needs and skips the second stage's tensors.
  Graph whole(DType::F32);
  InceptionV2Backbone net(InceptionV2Options::tiny());
  net.second_stage(whole, net.first_stage(whole, whole.input("image", {1, 3, 64, 64})));
  ParamStore file_store(Device::CPU, DType::F32);
  file_store.declare_from(whole);
  file_store.allocate();
  uint64_t seed = 40;
  for (const auto& n : file_store.names()) {
    const Shape sh = file_store.shape(n);
    auto [lo, hi] = formula_range(n, sh);
    file_store.set<float>(n, tu::random_vec<float>(size_t(sh.numel()), ++seed, lo, hi));
  }
  const std::string path = tmp_path("w.safetensors");
  write_safetensors(path, save_from(file_store));

  const std::vector<int64_t> shape{1, 3, 35, 50};
  NpyArray in = input_npy(shape);
  ForwardSpec spec = tiny_inception();
  spec.until = "Mixed_4b";
  ForwardResult r = run_forward(spec, in, "input.npy", path);
  EXPECT_FALSE(r.synthetic_weights);
  auto copy_fill = [&](ParamStore& ps) {
    for (const auto& n : ps.names()) ps.set<float>(n, file_store.get<float>(n));
  };
  Shape ref_shape;
  std::vector<float> ref = direct_run(inception_builder("Mixed_4b"), shape, in.as<float>(), copy_fill, &ref_shape);
  expect_same(r, ref, ref_shape, "tiny inception until Mixed_4b, safetensors weights");
  std::printf("       %d tensors loaded, %d skipped (later blocks and the second stage), file has %zu\n",
              r.loaded_tensors, r.skipped_tensors, file_store.names().size());
  EXPECT_EQ(size_t(r.loaded_tensors + r.skipped_tensors), file_store.names().size());
  EXPECT_GT(r.skipped_tensors, 0);

  // A bad file: one tensor missing, one misshaped, one foreign. One error lists all three.
  std::vector<StTensor> ts = save_from(file_store);
  std::vector<StTensor> bad;
  for (auto& t : ts) {
    if (t.name == "Mixed_3b.Branch_0.Conv2d_0a_1x1.weights") continue;
    if (t.name == "Conv2d_2c_3x3.BatchNorm.beta") t = StTensor::from<float>(t.name, {5}, std::vector<float>(5, 0.f));
    bad.push_back(t);
  }
  bad.push_back(StTensor::from<float>("fc.weight", {2}, {1.f, 2.f}));
  const std::string bad_path = tmp_path("bad.safetensors");
  write_safetensors(bad_path, bad);
  try {
    run_forward(spec, in, "input.npy", bad_path);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    std::printf("       bad weights file -> %s\n", m.c_str());
    for (const char* want : {"Mixed_3b.Branch_0.Conv2d_0a_1x1.weights", "Conv2d_2c_3x3.BatchNorm.beta", "fc.weight"})
      EXPECT_NE(m.find(want), std::string::npos) << want << " not named in: " << m;
  }
  std::remove(path.c_str());
  std::remove(bad_path.c_str());
}

TEST(ForwardRunner, BadInputsNameTheFile) {
  ForwardSpec s = tiny_inception();
  auto expect_error = [&](const NpyArray& a, const std::string& needle) {
    try {
      run_forward(s, a, "scan_07.npy", "");
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("scan_07.npy"), std::string::npos) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  };
  expect_error(input_npy({3, 40, 40}), "rank 3");
  expect_error(input_npy({1, 1, 40, 40}), "(1,1,40,40)");
  expect_error(input_npy({1, 3, 32, 40}), "at least 33x33");
  NpyArray f8 = input_npy({1, 3, 40, 40});
  f8.dtype = "f8";
  expect_error(f8, "'f8'");
  s.until = "Mixed_9z";
  try {
    run_forward(s, input_npy({1, 3, 40, 40}), "x.npy", "");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Mixed_4e"), std::string::npos) << e.what();  // lists the known taps
  }
  s = tiny_inception();
  s.model = "vgg16";
  EXPECT_THROW(forward_taps(s), Error);
  s = tiny_inception();
  s.device = Device::CUDA;
  if (!cuda_device_available()) {
    try {
      run_forward(s, input_npy({1, 3, 40, 40}), "x.npy", "");
      ADD_FAILURE() << "expected an error without a CUDA device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
    }
  }
}

// The built `ctdet` binary (the ctdet_cli target) on the same cases.
namespace {
std::string binary() { return std::string(CTDET_BINARY_DIR) + "/ctdet"; }

int run_cli(const std::string& args, std::string* out) {
  const std::string log = tmp_path("cli.log");
  int rc = std::system((binary() + " forward " + args + " > " + log + " 2>&1").c_str());
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  std::remove(log.c_str());
  return rc;
}
}  // namespace

TEST(ForwardCli, BinaryMatchesDirectGraphRun) {
  ASSERT_TRUE(std::ifstream(binary()).good()) << binary() << " is missing: build the ctdet_cli target first";
  const std::vector<int64_t> shape{1, 3, 45, 34};
  NpyArray in = input_npy(shape);
  const std::string in_path = tmp_path("x.npy"), out_path = tmp_path("y.npy");
  write_npy(in_path, in);
  auto formula_fill = [](ParamStore& ps) { fill_formula_weights(ps); };
  struct Case {
    std::string args;
    std::function<ValueId(Graph&, ValueId)> build;
  };
  const Case cases[] = {
      {"--model resnet101 --base-width 4 --units 2,1,1,1", resnet_builder(ResNetLayout::TfSlim, "")},
      {"--model resnet101_torchvision --base-width 4 --units 2,1,1,1 --until block1",
       resnet_builder(ResNetLayout::Torchvision, "block1")},
      {"--model inception_v2 --depth-multiplier 0.0625 --min-depth 2", inception_builder("")},
      {"--model inception_v2 --depth-multiplier 0.0625 --min-depth 2 --until MaxPool_3a_3x3",
       inception_builder("MaxPool_3a_3x3")},
  };
  for (const Case& c : cases) {
    std::string out;
    int rc = run_cli(c.args + " --input " + in_path + " --output " + out_path, &out);
    ASSERT_EQ(rc, 0) << c.args << "\n" << out;
    EXPECT_NE(out.find("SYNTHETIC"), std::string::npos) << out;
    EXPECT_NE(out.find("time "), std::string::npos) << out;
    EXPECT_NE(out.find("min "), std::string::npos) << out;
    NpyArray y = read_npy(out_path);
    Shape ref_shape;
    std::vector<float> ref = direct_run(c.build, shape, in.as<float>(), formula_fill, &ref_shape);
    EXPECT_EQ(Shape(y.shape), ref_shape) << c.args;
    tu::ErrStats s = tu::compare(y.as<float>(), ref);
    tu::print_err("cli " + c.args.substr(8), s);
    EXPECT_LE(s.max_abs, 1e-6) << c.args;
  }
  // Errors: exit code 1 and a message naming the problem.
  std::string out;
  const std::string small = tmp_path("small.npy");
  write_npy(small, input_npy({1, 3, 20, 40}));
  EXPECT_NE(run_cli("--model inception_v2 --input " + small, &out), 0);
  EXPECT_NE(out.find(small), std::string::npos) << out;
  EXPECT_NE(out.find("at least 33x33"), std::string::npos) << out;
  EXPECT_NE(run_cli("--model inception_v2 --input " + in_path + " --unti Mixed_3b", &out), 0);
  EXPECT_NE(out.find("until"), std::string::npos) << out;  // "did you mean"
  EXPECT_EQ(run_cli("--model resnet101 --list-taps", &out), 0);
  EXPECT_EQ(out, "stem\nblock1\nblock2\nblock3\n");
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  std::remove(small.c_str());
}

// The global --threads option (apps/main.cpp): before or after the command, any count gives the same output bits
// (OpenBLAS's GEMM results do not depend on its thread count for these shapes, and the other CPU kernels split only
// disjoint outputs); a bad count is an error that names the option.
TEST(ForwardCli, ThreadsOptionKeepsTheOutput) {
  ASSERT_TRUE(std::ifstream(binary()).good()) << binary() << " is missing: build the ctdet_cli target first";
  const std::vector<int64_t> shape{1, 3, 45, 34};
  const std::string in_path = tmp_path("xt.npy");
  write_npy(in_path, input_npy(shape));
  const std::string model = "--model inception_v2 --depth-multiplier 0.0625 --min-depth 2 --input " + in_path;
  std::vector<std::vector<float>> outs;
  for (const std::string threads : {"--threads 1", "--threads=2", "--threads 3"}) {
    const std::string out_path = tmp_path("yt.npy");
    std::string log;
    ASSERT_EQ(run_cli(threads + " " + model + " --output " + out_path, &log), 0) << threads << "\n" << log;
    outs.push_back(read_npy(out_path).as<float>());
    std::remove(out_path.c_str());
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    ASSERT_EQ(outs[i].size(), outs[0].size());
    EXPECT_EQ(std::memcmp(outs[i].data(), outs[0].data(), outs[0].size() * sizeof(float)), 0) << "run " << i;
  }
  std::string log;
  EXPECT_NE(run_cli("--threads 0 " + model, &log), 0);
  EXPECT_NE(log.find("--threads: expected a thread count >= 1, got '0'"), std::string::npos) << log;
  EXPECT_NE(run_cli(model + " --threads", &log), 0);
  EXPECT_NE(log.find("--threads needs a value"), std::string::npos) << log;
  std::remove(in_path.c_str());
}
