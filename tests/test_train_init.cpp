// `ctdet train --init`: a backbone-only safetensors file (what scripts/torchvision_to_safetensors.py produces for a
// torchvision ResNet) initialises the backbone; the new layers (RPN, box head) keep their seeded initialisation, and
// the step counter and optimizer state start fresh. Checked on the first checkpoint a run writes (ckpt-0).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "detector/session.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "test_model_util.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"

namespace ctdet {
namespace {

namespace fs = std::filesystem;

bool is_head(const std::string& n) { return n.rfind("rpn.", 0) == 0 || n.rfind("box_head.", 0) == 0; }

TEST(TrainInit, BackboneFileInitialisesTheBackboneOnly) {
  const fs::path dir = fs::temp_directory_path() / ("ctdet_train_init_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  RunConfig cfg = load_config_file(testing::source_dir() + "/configs/small_cpu.json");
  apply_override(cfg, "train.steps=1");
  apply_override(cfg, "train.eval_every=1000");
  cfg.validate();

  // The "pretrained backbone": every non-head parameter with values from another seed.
  const auto src = ctdet::testing::seeded_detector_params(cfg.model, 12345);
  std::vector<StTensor> all = save_from(*src), backbone;
  for (auto& t : all)
    if (!is_head(t.name)) backbone.push_back(t);
  ASSERT_GT(backbone.size(), 10u);
  const std::string file = (dir / "backbone.safetensors").string();
  write_safetensors(file, backbone);

  // Two tiny training images.
  Dataset ds;
  ds.class_names = cfg.data.class_names;
  for (int i = 0; i < 2; ++i) {
    Image img(128, 128, 1, 8);
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x) img.at(y, x) = uint16_t((x > 40 && x < 80 && y > 30 && y < 70) ? 200 : 40 + i);
    ImageRecord r;
    r.file = (dir / ("img" + std::to_string(i) + ".png")).string();
    r.id = "img" + std::to_string(i);
    r.boxes.push_back(Box{40, 30, 80, 70, 1});
    write_png(r.file, img);
    ds.images.push_back(r);
  }
  TrainOptions o;
  o.run_dir = (dir / "run").string();
  o.init = file;
  o.device = "cpu";
  o.train_source = dataset_source(ds);
  o.val_source = dataset_source(ds);
  const TrainResult res = run_training(cfg, o);
  ASSERT_EQ(res.reason, StopReason::kCompleted) << res.message;

  ParamStore ck(Device::CPU);
  declare_faster_rcnn_params(ck, cfg.model);
  ck.allocate();
  load_checkpoint(o.run_dir + "/checkpoints/ckpt-0.safetensors", ck);
  const auto fresh = ctdet::testing::seeded_detector_params(cfg.model, uint64_t(cfg.train.seed));
  int from_file = 0, from_init = 0;
  for (const auto& n : ck.names()) {
    const auto got = ck.get<float>(n);
    const auto want = is_head(n) ? fresh->get<float>(n) : src->get<float>(n);
    ASSERT_EQ(got.size(), want.size()) << n;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << n;
    (is_head(n) ? from_init : from_file)++;
  }
  const auto mom = ck.all_momentum();
  double msum = 0;
  for (int64_t i = 0; i < mom.numel(); ++i) msum += std::abs(mom.ptr<float>()[i]);
  EXPECT_EQ(msum, 0.0);  // weights only: the optimizer state starts at zero
  std::printf("[err] --init: %d backbone tensors bitwise from the file, %d head tensors bitwise from the seeded init, "
              "momentum sum %.1f\n", from_file, from_init, msum);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ctdet
