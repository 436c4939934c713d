// `ctdet train`: a training run from a config (JSON or TF pipeline.config) into a run folder; resume, init,
// signals and console progress. The loop itself is train/trainer.h.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/command.h"
#include "nn/error.h"
#include "nn/planner.h"
#include "train/config.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace {

using namespace ctdet;

// Signal state of the app (the library only sees the stop flag).
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;
static_assert(std::atomic<bool>::is_always_lock_free, "the stop flag is set from a signal handler");

extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
  g_stop.store(true);
  // SA_RESETHAND: a second Ctrl-C kills the process at once (the first one lets the checkpoint be written).
}

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void train_usage() {
  std::printf(
      "usage: ctdet train --config FILE --run-dir DIR [options] [key=value ...]\n"
      "       ctdet train --resume --run-dir DIR [options]      (or: ctdet train --resume DIR)\n\n"
      "  --config FILE         JSON config (configs/*.json) or a TF Object Detection API pipeline.config\n"
      "  --set KEY=VALUE       override a config key (repeatable; bare KEY=VALUE arguments work too),\n"
      "                        e.g. --set train.steps=500 --set train.lr=0.001 (ctdet train --help-config)\n"
      "  --run-dir DIR         run folder: config.json, train.log, checkpoints/, metrics.csv/.jsonl,\n"
      "                        TensorBoard events (tensorboard --logdir DIR), eval/, loss_chart.svg/.png\n"
      "  --resume              continue the run in --run-dir from its last checkpoint: weights, momentum, step,\n"
      "                        data position and logs (the config defaults to DIR/config.json)\n"
      "  --init FILE           start a NEW run from these weights (safetensors; a backbone or a whole detector;\n"
      "                        weights only: no step, no optimizer state)\n"
      "  --device D            cpu | cuda | auto (default: train.device of the config)\n"
      "  --memory-budget B     e.g. 8GiB: the planner fits each graph into it (train.memory_budget)\n"
      "  --steps N             total steps (train.steps)\n"
      "  --overwrite           a fresh run may replace the checkpoints and logs already in --run-dir\n"
      "  --help-config         every config key with its type, default and meaning\n\n"
      "SIGINT (Ctrl-C) / SIGTERM: the current step finishes, a checkpoint is written and the command exits\n"
      "with 130 / 143; a second Ctrl-C stops at once. A NaN/Inf loss stops the run (exit code 3) naming the\n"
      "loss term; the last good checkpoint stays in place.\n");
}

int cmd_train(const std::vector<std::string>& argv_in) {
  // --set may repeat: take those (and bare key=value arguments) out before the strict option reader.
  std::vector<std::string> overrides, argv;
  for (size_t i = 0; i < argv_in.size(); ++i) {
    const std::string& a = argv_in[i];
    if (a == "--set") {
      CTDET_CHECK(i + 1 < argv_in.size(), "train: --set needs KEY=VALUE");
      overrides.push_back(argv_in[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      overrides.push_back(a.substr(6));
    } else if (a.rfind("--", 0) != 0 && a.find('=') != std::string::npos) {
      overrides.push_back(a);
    } else {
      argv.push_back(a);
    }
  }
  for (const auto& o : overrides)
    CTDET_CHECK(o.find('=') != std::string::npos && o.find('=') > 0, "train: override '", o,
                "' is not KEY=VALUE (e.g. train.steps=500)");
  app::Args a("train", argv, {"config", "run-dir", "init", "device", "memory-budget", "steps"},
              {"help", "resume", "overwrite", "help-config"});
  if (a.flag("help")) {
    train_usage();
    return 0;
  }
  if (a.flag("help-config")) {
    std::printf("%s", config_help().c_str());
    return 0;
  }
  TrainOptions opt;
  opt.resume = a.flag("resume");
  opt.run_dir = a.get("run-dir");
  if (opt.resume && opt.run_dir.empty() && a.positional().size() == 1) opt.run_dir = a.positional()[0];
  else
    CTDET_CHECK(a.positional().empty(), "train: unexpected argument '", a.positional().empty() ? "" : a.positional()[0],
                "' (options start with --; overrides are KEY=VALUE)");
  if (opt.run_dir.empty()) {
    train_usage();
    CTDET_FAIL("train: --run-dir is required");
  }
  std::string config = a.get("config");
  if (config.empty() && opt.resume) config = (fs::path(opt.run_dir) / "config.json").string();
  CTDET_CHECK(!config.empty(), "train: --config is required for a new run (configs/small_cpu.json, ...)");
  if (a.has("memory-budget")) {
    const std::string b = a.get("memory-budget");
    parse_bytes(b);  // a bad size fails here, naming the text
    overrides.push_back("train.memory_budget=" + b);
  }
  if (a.has("steps")) overrides.push_back(str("train.steps=", a.get_int("steps", 0)));
  std::vector<std::string> warnings;
  const RunConfig cfg = load_config_file(config, overrides, &warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "ctdet train: warning: %s\n", w.c_str());
  opt.init = a.get("init");
  opt.device = a.get("device");
  opt.overwrite = a.flag("overwrite");
  opt.stop = &g_stop;
  opt.progress = &std::cout;
  opt.live_progress = isatty(STDOUT_FILENO) != 0;
  install_handlers();

  const TrainResult r = run_training(cfg, opt);
  if (r.reason == StopReason::kNonFinite) {
    std::fprintf(stderr, "ctdet train: %s\n", r.message.c_str());
    return 3;
  }
  if (r.reason == StopReason::kStopRequested) return g_signal == SIGTERM ? 143 : 130;
  return 0;
}

}  // namespace

CTDET_COMMAND("train", "train a detector: configs, checkpoints, resume, TensorBoard logs", cmd_train);
