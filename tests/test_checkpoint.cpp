// Checkpoints: bit-exact round trip of parameters and momentum with the sidecar, the tensor file read back
// by the safetensors reader on its own, keep-K pruning that spares `best`, interrupted writes (temporary
// files, tensors without a sidecar), fallback past a corrupt newest checkpoint, and errors that name files.
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "nn/error.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace ctdet;
namespace tu = ctdet::testing;

namespace {
std::string tmp_dir(const std::string& name) { return ctdet::testing::tmp_dir("ckpt", name); }

using ctdet::testing::expect_error;

bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

void declare(ParamStore& ps) {
  ps.declare("backbone.conv1.weight", Shape{4, 3, 3, 3});
  ps.declare("backbone.bn1.gamma", Shape{4});
  ps.declare("rpn.cls.weight", Shape{6, 4});
  ps.allocate();
}

// Values that identify the step they were saved at.
void fill(ParamStore& ps, uint64_t seed) {
  int k = 0;
  for (const auto& n : ps.names()) {
    size_t numel = size_t(ps.shape(n).numel());
    ps.set<float>(n, tu::random_vec<float>(numel, seed * 10 + uint64_t(k)), 0);
    ps.set<float>(n, tu::random_vec<float>(numel, seed * 10 + uint64_t(k) + 5, -1e-3, 1e-3), 2);
    ++k;
  }
}

double max_diff(const ParamStore& a, const ParamStore& b, int which) {
  double m = 0;
  for (const auto& n : a.names()) m = std::max(m, tu::compare(a.get<float>(n, which), b.get<float>(n, which)).max_abs);
  return m;
}

int64_t loaded_step(const std::string& where, ParamStore& ps) {
  return load_checkpoint(where, ps)["step"].get<int64_t>();
}
}  // namespace

TEST(Checkpoint, RoundTripBitExactWithSidecar) {
  std::string dir = tmp_dir("rt");
  ParamStore a;
  declare(a);
  fill(a, 42);
  nlohmann::json side = {{"config", {{"lr", 0.01}, {"backbone", "resnet101"}}},
                         {"data_position", {{"epoch", 3}, {"index", 117}}},
                         {"rng_state", "12345 67890"},
                         {"best_ap", 0.4375}};
  std::string st = save_checkpoint(dir, 100, a, side);
  EXPECT_EQ(st, dir + "/ckpt-100.safetensors");
  EXPECT_TRUE(fs::exists(dir + "/ckpt-100.json"));
  EXPECT_EQ(checkpoint_pointer(dir, "last"), 100);
  EXPECT_EQ(checkpoint_pointer(dir, "best"), -1);

  // The tensor file on its own: params under their names, optimizer state under momentum/.
  SafeTensors f = read_safetensors(st);
  EXPECT_EQ(f.tensors.size(), 6u);
  EXPECT_EQ(f.metadata.at("format"), "ctdet-checkpoint");
  EXPECT_EQ(f.at("momentum/rpn.cls.weight").as<float>(), a.get<float>("rpn.cls.weight", 2));

  for (const std::string& where : {dir, dir + "/ckpt-100.safetensors", dir + "/ckpt-100.json", dir + "/ckpt-100"}) {
    ParamStore b;
    declare(b);
    nlohmann::json got = load_checkpoint(where, b);
    double ep = max_diff(a, b, 0), em = max_diff(a, b, 2);
    std::printf("[err] checkpoint round trip via %-40s params max_abs=%.3e momentum max_abs=%.3e\n",
                fs::path(where).filename().c_str(), ep, em);
    EXPECT_EQ(ep, 0.0);
    EXPECT_EQ(em, 0.0);
    EXPECT_EQ(got["step"], 100);
    EXPECT_EQ(got["config"], side["config"]);
    EXPECT_EQ(got["data_position"], side["data_position"]);
    EXPECT_EQ(got["rng_state"], side["rng_state"]);
    EXPECT_EQ(got["best_ap"], 0.4375);
    EXPECT_EQ(got["checkpoint"], dir + "/ckpt-100.safetensors");
  }
  // Loading without momentum leaves the store's momentum alone.
  ParamStore c;
  declare(c);
  CheckpointLoadOptions no_mom;
  no_mom.momentum = false;
  load_checkpoint(dir, c, no_mom);
  EXPECT_EQ(max_diff(a, c, 0), 0.0);
  EXPECT_EQ(c.get<float>("backbone.bn1.gamma", 2), std::vector<float>(4, 0.0f));
  fs::remove_all(dir);
}

TEST(Checkpoint, KeepsKNewestAndNeverTheBest) {
  std::string dir = tmp_dir("keep");
  ParamStore a;
  declare(a);
  CheckpointOptions o;
  o.keep = 2;
  for (int s = 1; s <= 6; ++s) {
    fill(a, uint64_t(s));
    o.best = (s == 2);
    save_checkpoint(dir, s * 10, a, {{"ap", s == 2 ? 0.9 : 0.1}}, o);
  }
  std::vector<int64_t> steps;
  for (auto& c : list_checkpoints(dir)) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{20, 50, 60}));
  EXPECT_FALSE(fs::exists(dir + "/ckpt-10.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/ckpt-40.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/ckpt-20.safetensors"));
  EXPECT_EQ(checkpoint_pointer(dir, "last"), 60);
  EXPECT_EQ(checkpoint_pointer(dir, "best"), 20);
  ParamStore b, ref;
  declare(b);
  declare(ref);
  fill(ref, 2);
  EXPECT_EQ(loaded_step(dir + "/ckpt-20.safetensors", b), 20);
  EXPECT_EQ(max_diff(ref, b, 0), 0.0);
  fs::remove_all(dir);
}

TEST(Checkpoint, InterruptedWritesAreSkippedAndCleaned) {
  std::string dir = tmp_dir("intr");
  ParamStore a;
  declare(a);
  fill(a, 1);
  save_checkpoint(dir, 1, a);
  fill(a, 2);
  save_checkpoint(dir, 2, a);
  // Crash while saving step 3 after the tensors were renamed into place but before the sidecar...
  fill(a, 3);
  write_safetensors(dir + "/ckpt-3.safetensors", save_from(a));
  // ...and a crash of some earlier save in the middle of a temporary file.
  write_file_atomic(dir + "/ckpt-4.safetensors.tmp.99999", "half a checkpoint");
  write_file_atomic(dir + "/ckpt-4.json.tmp.99999", "{\"step\":");

  ParamStore b, ref;
  declare(b);
  declare(ref);
  fill(ref, 2);
  EXPECT_EQ(loaded_step(dir, b), 2);  // step 3 has no sidecar: not a checkpoint
  EXPECT_EQ(max_diff(ref, b, 0), 0.0);
  std::string e = expect_error([&] { load_checkpoint(dir + "/ckpt-3.safetensors", b); });
  EXPECT_TRUE(contains(e, dir + "/ckpt-3.json"));
  // The next save clears the leftovers.
  save_checkpoint(dir, 5, a);
  EXPECT_FALSE(fs::exists(dir + "/ckpt-3.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/ckpt-4.safetensors.tmp.99999"));
  EXPECT_FALSE(fs::exists(dir + "/ckpt-4.json.tmp.99999"));
  fs::remove_all(dir);
}

TEST(Checkpoint, CorruptNewestFallsBackOrNamesTheFile) {
  std::string dir = tmp_dir("corrupt");
  ParamStore a;
  declare(a);
  for (int s = 1; s <= 3; ++s) {
    fill(a, uint64_t(s));
    save_checkpoint(dir, s, a);
  }
  // Truncate the newest tensors (a disk-full copy, say).
  std::string bytes = read_file(dir + "/ckpt-3.safetensors");
  write_file_atomic(dir + "/ckpt-3.safetensors", bytes.substr(0, bytes.size() - 100));
  ParamStore b, ref;
  declare(b);
  declare(ref);
  fill(ref, 2);
  EXPECT_EQ(loaded_step(dir, b), 2);
  EXPECT_EQ(max_diff(ref, b, 0), 0.0);
  EXPECT_EQ(max_diff(ref, b, 2), 0.0);
  std::string e = expect_error([&] { load_checkpoint(dir + "/ckpt-3.safetensors", b); });
  EXPECT_TRUE(contains(e, dir + "/ckpt-3.safetensors") && contains(e, "truncated"));
  // Same size but a flipped byte: caught by the sidecar's CRC.
  bytes = read_file(dir + "/ckpt-2.safetensors");
  bytes[bytes.size() - 7] ^= 0x10;
  write_file_atomic(dir + "/ckpt-2.safetensors", bytes);
  e = expect_error([&] { load_checkpoint(dir + "/ckpt-2", b); });
  EXPECT_TRUE(contains(e, dir + "/ckpt-2.safetensors") && contains(e, "CRC"));
  fill(ref, 1);
  EXPECT_EQ(loaded_step(dir, b), 1);
  EXPECT_EQ(max_diff(ref, b, 0), 0.0);
  // An unreadable sidecar.
  write_file_atomic(dir + "/ckpt-1.json", "{\"step\": 1,");
  e = expect_error([&] { load_checkpoint(dir, b); });
  EXPECT_TRUE(contains(e, "ckpt-1.json") && contains(e, "ckpt-2.safetensors") && contains(e, "ckpt-3.safetensors"));
  e = expect_error([&] { load_checkpoint(dir + "/nothing-here", b); });
  const std::string empty = tmp_dir("empty");
  e = expect_error([&] { load_checkpoint(empty, b); });
  EXPECT_TRUE(contains(e, "no complete checkpoint"));
  fs::remove_all(empty);
  fs::remove_all(dir);
}

TEST(Checkpoint, StoreMismatchIsAnErrorNotAFallback) {
  std::string dir = tmp_dir("mismatch");
  ParamStore a;
  declare(a);
  fill(a, 7);
  save_checkpoint(dir, 1, a);
  save_checkpoint(dir, 2, a);
  ParamStore other;
  other.declare("backbone.conv1.weight", Shape{4, 3, 3, 3});
  other.declare("backbone.bn1.gamma", Shape{8});
  other.declare("head.new", Shape{2});
  other.allocate();
  std::string e = expect_error([&] { load_checkpoint(dir, other); });
  EXPECT_TRUE(contains(e, "ckpt-2.safetensors") && contains(e, "shape: 'backbone.bn1.gamma'") &&
              contains(e, "missing: store entry 'head.new'") && contains(e, "unexpected: 'rpn.cls.weight'") &&
              contains(e, "momentum/"));
  EXPECT_EQ(other.get<float>("backbone.conv1.weight"), std::vector<float>(108, 0.0f)) << "nothing written";
  fs::remove_all(dir);
}

TEST(Checkpoint, WithoutMomentum) {
  std::string dir = tmp_dir("nomom");
  ParamStore a;
  declare(a);
  fill(a, 9);
  CheckpointOptions o;
  o.save_momentum = false;
  save_checkpoint(dir, 3, a, {}, o);
  EXPECT_EQ(read_safetensors(dir + "/ckpt-3.safetensors").tensors.size(), 3u);
  ParamStore b;
  declare(b);
  fill(b, 1);  // momentum that must be reset
  std::string e = expect_error([&] { load_checkpoint(dir, b); });
  EXPECT_TRUE(contains(e, "missing: store entry 'rpn.cls.weight'") && contains(e, "momentum/"));
  CheckpointLoadOptions lo;
  lo.require_momentum = false;
  load_checkpoint(dir, b, lo);
  EXPECT_EQ(max_diff(a, b, 0), 0.0);
  EXPECT_EQ(b.get<float>("rpn.cls.weight", 2), std::vector<float>(24, 0.0f));
  fs::remove_all(dir);
}

// A store allocated for inference holds the parameters only: a training checkpoint loads into it without its momentum
// (as `ctdet infer` and the C API load weights), and asking it for gradients or momentum is an error naming the store.
TEST(Checkpoint, InferenceStoreHoldsParametersOnly) {
  std::string dir = tmp_dir("infer_store");
  ParamStore a;
  declare(a);
  fill(a, 4);
  save_checkpoint(dir, 5, a, {});
  ParamStore b;
  b.declare("backbone.conv1.weight", Shape{4, 3, 3, 3});
  b.declare("backbone.bn1.gamma", Shape{4});
  b.declare("rpn.cls.weight", Shape{6, 4});
  b.allocate(ParamUse::Inference);
  EXPECT_FALSE(b.has_training_state());
  EXPECT_TRUE(a.has_training_state());
  EXPECT_EQ(b.allocated_bytes(), b.bytes());
  EXPECT_EQ(a.allocated_bytes(), 3 * a.bytes());
  CheckpointLoadOptions lo;
  lo.momentum = false;
  lo.require_momentum = false;
  load_checkpoint(dir, b, lo);
  EXPECT_EQ(max_diff(a, b, 0), 0.0);
  const std::string e1 = expect_error([&] { b.grad("rpn.cls.weight"); });
  EXPECT_TRUE(contains(e1, "allocated for inference has no gradients (parameter 'rpn.cls.weight')")) << e1;
  EXPECT_TRUE(contains(expect_error([&] { b.get<float>("backbone.bn1.gamma", 2); }), "no momentum"));
  EXPECT_TRUE(contains(expect_error([&] { b.zero_grads(); }), "no gradients"));
  EXPECT_TRUE(contains(expect_error([&] { b.all_momentum(); }), "no momentum"));
  // Loading a checkpoint's momentum into it is refused, not silently dropped.
  EXPECT_TRUE(contains(expect_error([&] { load_checkpoint(dir, b); }), "no momentum"));
  fs::remove_all(dir);
}
