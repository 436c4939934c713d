// `ctdet monitor` with the detector behind it (--config/--weights): runs the built binary on a phantom series made
// by `ctdet synth --series`, with an untrained model (configs/small_cpu.json's architecture, seeded random weights),
// and checks that every slice went through the detector, that the detections file matches what the monitor saw and
// that a results-file run over that file gives the same report (the two DetectionSources agree).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "detector/session.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "test_model_util.h"
#include "test_util.h"
#include "train/config.h"

namespace ctdet {
namespace {

namespace fs = std::filesystem;

std::string binary() { return std::string(CTDET_BINARY_DIR) + "/ctdet"; }

int run(const std::string& cmd, std::string* out) {
  const std::string full = cmd + " > " + out->c_str() + ".log 2>&1";
  const int rc = std::system(full.c_str());
  *out = read_file(*out + ".log");
  return rc;
}

std::string tu_config_path() { return ctdet::testing::source_dir() + "/configs/small_cpu.json"; }

TEST(MonitorModel, DetectorPathAgreesWithResultsFilePath) {
  const fs::path dir = fs::temp_directory_path() / ("ctdet_monitor_model_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string config = tu_config_path();
  const std::string weights = (dir / "w.safetensors").string();
  ctdet::testing::write_seeded_detector(load_config_file(config).model, 11, weights);

  std::string log = (dir / "synth").string();
  ASSERT_EQ(run(binary() + " synth --series --out " + (dir / "series").string() + " --seed 3 --count 2 --studies 3", &log), 0)
      << log;
  log = (dir / "mon").string();
  ASSERT_EQ(run(binary() + " monitor --series " + (dir / "series").string() + " --config " + config + " --weights " +
                    weights + " --device cpu --min-score 0 --out " + (dir / "out_model").string(),
                &log),
            0)
      << log;
  std::printf("%s\n", log.substr(0, 600).c_str());
  EXPECT_NE(log.find("detector: resnet101"), std::string::npos) << log;
  EXPECT_NE(log.find("6 slices"), std::string::npos) << log;  // 3 studies x 2 slices, each detected once
  const std::string dets = (dir / "out_model" / "detections.csv").string();
  ASSERT_TRUE(fs::exists(dets));
  // The same detections through the results-file path give the same monitor table.
  log = (dir / "mon2").string();
  ASSERT_EQ(run(binary() + " monitor --series " + (dir / "series").string() + " --detections " + dets +
                    " --min-score 0 --out " + (dir / "out_file").string(),
                &log),
            0)
      << log;
  const std::string a = read_file((dir / "out_model" / "monitor.csv").string());
  const std::string b = read_file((dir / "out_file" / "monitor.csv").string());
  EXPECT_EQ(a, b);
  std::printf("[err] monitor.csv from the detector vs from its detections file: %s (%zu bytes)\n",
              a == b ? "identical" : "DIFFERENT", a.size());
  // A model argument together with --detections is refused with the usage text (exit 2).
  log = (dir / "mon3").string();
  EXPECT_NE(run(binary() + " monitor --series " + (dir / "series").string() + " --detections " + dets + " --config " +
                    config + " --weights " + weights + " --out " + (dir / "x").string(),
                &log),
            0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ctdet
