// `ctdet infer` end to end through the built binary: a folder of phantom slices (PNG and JPEG, in a subfolder too)
// and an untrained model (configs/small_cpu.json's architecture, seeded random weights). Checks that every image is
// reported, that COCO JSON, CSV and summary agree, that boxes lie inside each original image, that running twice gives
// identical results, and that bad input (empty folder, corrupt PNG, missing model) fails with a message naming it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "detector/session.h"
#include "io/atomic_file.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/synth.h"
#include "test_model_util.h"
#include "test_util.h"
#include "train/config.h"
#include "train/detections_io.h"

namespace ctdet {
namespace {

namespace fs = std::filesystem;

std::string binary() { return std::string(CTDET_BINARY_DIR) + "/ctdet"; }
std::string config_path() { return ctdet::testing::source_dir() + "/configs/small_cpu.json"; }

int run(const std::string& cmd, const std::string& log, std::string* out) {
  const int rc = std::system((cmd + " > " + log + " 2>&1").c_str());
  *out = read_file(log);
  return rc;
}

class InferCmd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ctdet_infer_cmd_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "slices" / "sub");
    weights_ = (dir_ / "w.safetensors").string();
    ctdet::testing::write_seeded_detector(load_config_file(config_path()).model, 5, weights_);
    // Three slices of different sizes and formats.
    sizes_ = {{"a.png", {160, 128}}, {"b.jpg", {200, 200}}, {"sub/c.png", {96, 144}}};
    int seed = 1;
    for (const auto& [name, wh] : sizes_) {
      Image img(wh.first, wh.second, 1, 8);
      for (int y = 0; y < img.height; ++y)
        for (int x = 0; x < img.width; ++x) img.at(y, x) = uint16_t((x * 7 + y * 13 + seed * 31) % 200 + 20);
      const std::string p = (dir_ / "slices" / name).string();
      if (name.size() > 4 && name.substr(name.size() - 4) == ".jpg") write_jpeg(p, img);
      else write_png(p, img);
      ++seed;
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string model_args() const { return " --config " + config_path() + " --weights " + weights_ + " --device cpu"; }

  fs::path dir_;
  std::string weights_;
  std::map<std::string, std::pair<int, int>> sizes_;
};

TEST_F(InferCmd, FolderToCocoCsvSummariesAndOverlays) {
  std::string log;
  const std::string out = (dir_ / "out").string();
  ASSERT_EQ(run(binary() + " infer" + model_args() + " --threshold 0 --out " + out + " " + (dir_ / "slices").string(),
                (dir_ / "log1").string(), &log),
            0)
      << log;
  std::printf("%s", log.c_str());
  EXPECT_NE(log.find("3 images in"), std::string::npos) << log;
  const std::vector<std::string> classes = default_class_names();
  const auto csv = read_detections_csv(out + "/detections.csv", classes);
  const auto json = nlohmann::json::parse(read_file(out + "/detections.json"));
  ASSERT_TRUE(json.is_array());
  EXPECT_EQ(json.size(), csv.size());
  EXPECT_GT(csv.size(), 0u);  // random weights, threshold 0: post-processing keeps score > 0
  size_t outside = 0;
  std::map<std::string, int> per_image;
  for (const auto& d : csv) {
    ASSERT_TRUE(sizes_.count(d.image_id)) << "unknown image id '" << d.image_id << "'";
    const auto [w, h] = sizes_[d.image_id];
    outside += !(d.x1 >= 0 && d.y1 >= 0 && d.x2 <= w && d.y2 <= h && d.x1 <= d.x2 && d.y1 <= d.y2);
    per_image[d.image_id]++;
    EXPECT_TRUE(d.label >= 1 && d.label <= 3);
  }
  EXPECT_EQ(outside, 0u);
  // summary.csv: one row per image with its detection count.
  const std::string summary = read_file(out + "/summary.csv");
  for (const auto& [name, wh] : sizes_) {
    std::ostringstream row;
    row << "\"" << name << "\",";
    EXPECT_NE(summary.find(row.str()), std::string::npos) << name << "\n" << summary;
    EXPECT_NE(summary.find(std::to_string(wh.first) + "," + std::to_string(wh.second) + "," +
                           std::to_string(per_image[name]) + ","),
              std::string::npos)
        << name << "\n" << summary;
  }
  EXPECT_TRUE(fs::exists(out + "/series_summary.csv"));
  EXPECT_TRUE(fs::exists(out + "/overlays/a.png"));
  EXPECT_TRUE(fs::exists(out + "/overlays/sub_c.png"));
  // Deterministic: a second run writes the same CSV.
  ASSERT_EQ(run(binary() + " infer" + model_args() + " --threshold 0 --no-overlays --out " + out + "2 " +
                    (dir_ / "slices").string(),
                (dir_ / "log2").string(), &log),
            0)
      << log;
  EXPECT_EQ(read_file(out + "/detections.csv"), read_file(out + "2/detections.csv"));
  std::printf("[err] infer: %zu detections on 3 images, 0 outside their image, second run identical\n", csv.size());
}

TEST_F(InferCmd, BadInputsNameTheProblem) {
  std::string log;
  fs::create_directories(dir_ / "empty");
  EXPECT_NE(run(binary() + " infer" + model_args() + " --out " + (dir_ / "o").string() + " " + (dir_ / "empty").string(),
                (dir_ / "log3").string(), &log),
            0);
  EXPECT_NE(log.find("has no .png, .jpg or .dcm files"), std::string::npos) << log;
  write_file_atomic((dir_ / "bad.png").string(), "\x89PNG\r\n\x1a\nthis is not a png");
  EXPECT_NE(run(binary() + " infer" + model_args() + " --out " + (dir_ / "o").string() + " " + (dir_ / "bad.png").string(),
                (dir_ / "log4").string(), &log),
            0);
  EXPECT_NE(log.find("bad.png"), std::string::npos) << log;
  EXPECT_NE(run(binary() + " infer --config " + config_path() + " --weights " + (dir_ / "missing.safetensors").string() +
                    " " + (dir_ / "slices").string(),
                (dir_ / "log5").string(), &log),
            0);
  EXPECT_NE(log.find("missing.safetensors"), std::string::npos) << log;
  std::printf("[err] infer bad inputs: empty folder, corrupt PNG and missing weights each fail naming the path\n");
}

}  // namespace
}  // namespace ctdet
