#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/overlay.h"
#include "io/safetensors.h"
#include "io/svg_plot.h"
#include "kernels/optim.h"
#include "nn/device.h"
#include "nn/error.h"
#include "nn/memory.h"
#include "nn/planner.h"
#include "train/checkpoint.h"
#include "train/evaluation.h"
#include "train/optimizer.h"
#include "train/train_log.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ctdet {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kCompleted: return "completed";
    case StopReason::kStopRequested: return "stop requested";
    case StopReason::kMaxSteps: return "max steps";
    case StopReason::kNonFinite: return "non-finite loss";
  }
  return "?";
}

double ValidationResult::score() const { return std::isfinite(map50) ? map50 : any_ap50; }

int32_t step_seed(int64_t config_seed, int64_t step, int micro) {
  // splitmix64 finaliser over (seed, step, micro): neighbouring steps get unrelated sampler streams.
  uint64_t z = uint64_t(config_seed) * 0x9E3779B97F4A7C15ull ^ (uint64_t(step) << 8) ^ uint64_t(micro);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return int32_t(z & 0x7fffffffu);
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      long long kb = 0;
      if (std::sscanf(line.c_str() + 6, "%lld", &kb) == 1) return size_t(kb) * 1024;
    }
  }
  return 0;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = (long long)(s + 0.5);
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(b, sizeof b, "%llds", t);
  return b;
}

// Console + train.log. Notes end the live line first.
class RunConsole {
 public:
  RunConsole(std::ostream* out, bool live, const std::string& log_path) : out_(out), live_(live) {
    log_ = std::fopen(log_path.c_str(), "a");
    CTDET_CHECK(log_ != nullptr, "train: cannot open the log file '", log_path, "'");
  }
  ~RunConsole() {
    end_live();
    if (log_) std::fclose(log_);
  }
  void note(const std::string& line) {
    end_live();
    if (out_) *out_ << line << "\n" << std::flush;
    to_log(line);
  }
  // A progress line: redrawn on a terminal (and written to the log when `periodic`), else printed when periodic.
  void progress(const std::string& line, bool periodic) {
    if (out_ && live_) {
      *out_ << "\r" << line << "\033[K" << std::flush;
      live_open_ = true;
    } else if (out_ && periodic) {
      *out_ << line << "\n" << std::flush;
    }
    if (periodic) to_log(line);
  }

 private:
  void end_live() {
    if (live_open_ && out_) *out_ << "\n" << std::flush;
    live_open_ = false;
  }
  void to_log(const std::string& line) {
    std::fprintf(log_, "%s\n", line.c_str());
    std::fflush(log_);
  }
  std::ostream* out_;
  bool live_;
  bool live_open_ = false;
  std::FILE* log_ = nullptr;
};

Normalization norm_for(const FasterRcnnConfig& m) { return input_normalization(m); }

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name == "cuda") {
    CTDET_CHECK(cuda_device_available(), "train: --device cuda requested but ", cuda_unavailable_reason());
    return Device::CUDA;
  }
  CTDET_CHECK(name == "auto", "train: device must be cpu, cuda or auto, got '", name, "'");
  return cuda_device_available() ? Device::CUDA : Device::CPU;
}

// Keys whose values differ between two resolved configs (sections model/train/data).
std::vector<std::string> config_differences(const json& a, const json& b) {
  std::vector<std::string> out;
  for (const char* sec : {"model", "train", "data"}) {
    if (!a.contains(sec) || !b.contains(sec)) continue;
    for (auto it = a[sec].begin(); it != a[sec].end(); ++it)
      if (!b[sec].contains(it.key()) || b[sec][it.key()] != it.value()) out.push_back(std::string(sec) + "." + it.key());
  }
  return out;
}

std::vector<std::pair<std::string, double>> loss_values(const StepLosses& l) {
  const auto names = loss_names();  // loss_rpn_cls, loss_rpn_loc, loss_cls, loss_box_reg
  return {{names[0], l.rpn_cls}, {names[1], l.rpn_loc}, {names[2], l.cls}, {names[3], l.box}, {"total_loss", l.total}};
}

double term_value(const StepLosses& l, const std::string& term) {
  if (term == "loss_rpn_cls") return l.rpn_cls;
  if (term == "loss_rpn_loc") return l.rpn_loc;
  if (term == "loss_cls") return l.cls;
  if (term == "loss_box_reg") return l.box;
  return l.total;
}

void load_init_weights(ParamStore& ps, const std::string& path, RunConsole& con) {
  const SafeTensors st = read_safetensors(path);
  LoadOptions lo;
  lo.allow_missing = true;       // a backbone file initialises the backbone; new layers keep their init
  lo.allow_unexpected = true;    // e.g. an ImageNet classifier head
  lo.ignore_prefixes = {"momentum/"};  // a ctdet checkpoint: weights only
  const LoadReport r = load_into(ps, st, lo);
  CTDET_CHECK(r.loaded > 0, "train: --init '", path, "': no tensor matches a detector parameter (",
              st.tensors.size(), " tensors in the file, ", ps.names().size(), " parameters); expected ctdet names");
  std::string msg = str("init: ", r.loaded, " tensors from '", path, "' (weights only); ", r.missing.size(),
                        " parameters keep their initialisation");
  if (!r.unexpected.empty()) {
    msg += str("; ", r.unexpected.size(), " file tensors unused (e.g. '", r.unexpected.front(), "')");
  }
  con.note(msg);
}

std::shared_ptr<SampleSource> source_for(const std::string& path, const std::string& split,
                                         const std::vector<std::string>& class_names) {
  return tfrecord_source(resolve_shards(path, split), class_names);
}

LoaderOptions base_loader_options(const RunConfig& cfg) {
  LoaderOptions lo;
  lo.num_threads = std::max(1, cfg.data.num_workers);
  lo.norm = norm_for(cfg.model);
  lo.min_side = cfg.model.min_dimension;
  lo.max_side = cfg.model.max_dimension;
  lo.resize = ResizeMode::kKeepAspect;
  return lo;
}

std::string ap_text(double v) { return std::isfinite(v) ? fmt("%.3f", v) : std::string("n/a"); }

}  // namespace

// ---- validation --------------------------------------------------------------------------------------------
ValidationResult validate_on(DetectorSession& session, const std::shared_ptr<SampleSource>& source,
                             const RunConfig& cfg, int64_t step) {
  CTDET_CHECK(source != nullptr, "validate: no validation source");
  ValidationResult v;
  v.step = step;
  Dataset gt;
  gt.class_names = cfg.data.class_names;
  for (size_t i = 0; i < source->size(); ++i) {
    ImageRecord r = source->get(i).record;
    v.gt_boxes += int64_t(r.boxes.size());
    gt.images.push_back(std::move(r));
  }
  LoaderOptions lo = base_loader_options(cfg);
  lo.batch_size = 1;
  lo.shuffle = false;
  lo.flip_prob = 0;
  lo.num_epochs = 1;
  DataLoader dl(source, lo);
  std::vector<Detection> dets;
  Batch b;
  while (dl.next(&b)) {
    for (auto& per_image : session.detect(b, 0.0f))
      for (auto& d : per_image) dets.push_back(std::move(d));
    v.images += b.n;
  }
  v.detections = int64_t(dets.size());
  validate_detections(gt, dets);
  EvalOptions eo;
  double sum = 0;
  int defined = 0;
  for (int label = 1; label <= int(gt.class_names.size()); ++label) {
    const ClassAp c = coco_class_ap(gt, dets, label, eo);
    v.ap50.push_back({gt.class_names[size_t(label - 1)], c.defined ? c.ap50 : kNaN});
    if (c.defined) {
      sum += c.ap50;
      ++defined;
    }
  }
  v.map50 = defined > 0 ? sum / defined : kNaN;
  const ClassAp any = coco_class_ap(gt, dets, 0, eo);
  v.any_ap50 = any.defined ? any.ap50 : kNaN;
  return v;
}

// ---- charts ------------------------------------------------------------------------------------------------
MetricRows read_metrics_jsonl(const std::string& path) {
  MetricRows rows;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const std::exception&) {
      continue;  // a torn last line (a crash mid-write); TrainLog removes it on resume
    }
    if (!j.is_object() || !j.contains("step")) continue;
    std::vector<std::pair<std::string, double>> vals;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step" || it.key() == "wall_time") continue;
      vals.push_back({it.key(), it.value().is_number() ? it.value().get<double>() : kNaN});
    }
    rows.push_back({j["step"].get<int64_t>(), std::move(vals)});
  }
  return rows;
}

namespace {

struct ChartSeries {
  std::vector<PlotSeries> series;
  double last_total = kNaN;
  int64_t last_step = 0;
};

ChartSeries chart_series(const MetricRows& rows) {
  static const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#888888"};
  std::vector<std::string> tags = loss_names();
  tags.push_back("total_loss");
  ChartSeries cs;
  for (size_t t = 0; t < tags.size(); ++t) {
    PlotSeries s;
    s.name = tags[t];
    s.color = kColors[t % 5];
    s.stroke_width = tags[t] == "total_loss" ? 2.2 : 1.4;
    for (const auto& r : rows)
      for (const auto& kv : r.second)
        if (kv.first == tags[t]) {
          s.x.push_back(double(r.first));
          s.y.push_back(std::isfinite(kv.second) ? kv.second : kNaN);
          if (tags[t] == "total_loss") {
            cs.last_total = kv.second;
            cs.last_step = r.first;
          }
        }
    cs.series.push_back(std::move(s));
  }
  // The total smoothed as TensorBoard's default (EMA 0.9, debiased), like darknet's "avg loss".
  PlotSeries ema;
  ema.name = "total_loss (smoothed)";
  ema.color = "#9467bd";
  ema.stroke_width = 2.4;
  double acc = 0, w = 0;
  const PlotSeries& tot = cs.series.back();
  for (size_t i = 0; i < tot.x.size(); ++i) {
    if (!std::isfinite(tot.y[i])) continue;
    acc = 0.9 * acc + 0.1 * tot.y[i];
    w = 0.9 * w + 0.1;
    ema.x.push_back(tot.x[i]);
    ema.y.push_back(acc / w);
  }
  cs.series.push_back(std::move(ema));
  return cs;
}

PlotOptions chart_options(const ChartSeries& cs, int w, int h) {
  PlotOptions o;
  o.width = w;
  o.height = h;
  o.title = str("training losses (total ", ap_text(cs.last_total), " at step ", cs.last_step, ")");
  o.x_label = "step";
  o.y_label = "loss";
  o.y_min = 0;
  bool any = false;
  for (const auto& s : cs.series) any = any || !s.x.empty();
  if (!any) {
    o.x_min = 0;
    o.x_max = 1;
    o.y_max = 1;
  }
  return o;
}

void draw_line(Image& img, double x0, double y0, double x1, double y1, Rgb c, int thick) {
  const double dx = x1 - x0, dy = y1 - y0;
  const int n = std::max(1, int(std::ceil(std::max(std::fabs(dx), std::fabs(dy)))));
  for (int i = 0; i <= n; ++i) {
    const int x = int(std::lround(x0 + dx * i / n)), y = int(std::lround(y0 + dy * i / n));
    fill_rect(img, x - thick / 2, y - thick / 2, x + (thick - 1) / 2, y + (thick - 1) / 2, c);
  }
}

Rgb hex_color(const std::string& s) {
  auto h = [&](size_t i) { return uint8_t(std::stoi(s.substr(i, 2), nullptr, 16)); };
  return Rgb{h(1), h(3), h(5)};
}

}  // namespace

std::string loss_chart_svg(const MetricRows& rows) {
  const ChartSeries cs = chart_series(rows);
  return svg_line_chart(cs.series, chart_options(cs, 720, 420));
}

void write_loss_chart_png(const MetricRows& rows, const std::string& path) {
  const ChartSeries cs = chart_series(rows);
  PlotOptions o = chart_options(cs, 800, 480);
  o.left = 70;
  o.bottom = 40;
  const PlotFrame fr = plot_frame(cs.series, o);
  Image img(o.width, o.height, 3, 8);
  std::fill(img.data.begin(), img.data.end(), uint16_t(255));
  const Rgb grid{225, 225, 225}, axis{60, 60, 60};
  double xlo = fr.x_min, xhi = fr.x_max, ylo = fr.y_min, yhi = fr.y_max;
  const auto xt = nice_ticks(xlo, xhi, 6), yt = nice_ticks(ylo, yhi, 5);
  const int L = int(fr.left), T = int(fr.top), R = int(fr.left + fr.plot_w), B = int(fr.top + fr.plot_h);
  for (double t : yt) {
    if (t < fr.y_min || t > fr.y_max) continue;
    const int y = int(std::lround(fr.py(t)));
    draw_line(img, L, y, R, y, grid, 1);
    const std::string lab = fmt("%g", t);
    draw_text(img, L - 6 - text_width(lab), y - 3, lab, axis);
  }
  for (double t : xt) {
    if (t < fr.x_min || t > fr.x_max) continue;
    const int x = int(std::lround(fr.px(t)));
    draw_line(img, x, T, x, B, grid, 1);
    const std::string lab = fmt("%g", t);
    draw_text(img, x - text_width(lab) / 2, B + 6, lab, axis);
  }
  draw_rect(img, L, T, R, B, axis, 1);
  for (const auto& s : cs.series) {
    const Rgb c = hex_color(s.color);
    for (size_t i = 1; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i - 1]) || !std::isfinite(s.y[i])) continue;
      draw_line(img, fr.px(s.x[i - 1]), fr.py(s.y[i - 1]), fr.px(s.x[i]), fr.py(s.y[i]), c,
                s.name == "total_loss" ? 1 : (s.name == "total_loss (smoothed)" ? 3 : 1));
    }
  }
  draw_text(img, L, 10, o.title, axis, 2);
  draw_text(img, (L + R) / 2 - text_width("step") / 2, o.height - 14, "step", axis);
  int ly = T + 8;
  for (const auto& s : cs.series) {
    const int w = text_width(s.name);
    fill_rect(img, R - w - 30, ly + 2, R - w - 16, ly + 4, hex_color(s.color));
    draw_text(img, R - w - 10, ly, s.name, axis);
    ly += 12;
  }
  write_png(path, img);
}

// ---- the run -----------------------------------------------------------------------------------------------
TrainResult run_training(const RunConfig& cfg_in, const TrainOptions& opt) {
  RunConfig cfg = cfg_in;
  if (!opt.init.empty()) cfg.train.init = opt.init;
  if (!opt.device.empty()) cfg.train.device = opt.device;
  cfg.validate();
  CTDET_CHECK(!opt.run_dir.empty(), "train: a run directory is required (--run-dir)");
  CTDET_CHECK(!(opt.resume && !opt.init.empty()),
              "train: --resume continues a run with its own weights and optimizer state; --init (weights only) "
              "starts a new run — give one of them");
  const TrainConfig& tc = cfg.train;
  const std::string run_dir = opt.run_dir;
  const std::string ckpt_dir = (fs::path(run_dir) / "checkpoints").string();
  fs::create_directories(run_dir);

  TrainResult res;
  const Device device = resolve_device(tc.device);
  res.device = device_name(device);

  // Fresh run vs resume: never mix a new run into an old one silently.
  const bool has_ckpts = fs::exists(ckpt_dir) && !list_checkpoints(ckpt_dir).empty();
  if (opt.resume) {
    CTDET_CHECK(has_ckpts, "train: --resume: no checkpoint in '", ckpt_dir, "' (start the run without --resume)");
  } else if (has_ckpts) {
    CTDET_CHECK(opt.overwrite, "train: '", run_dir, "' already holds checkpoints; use --resume to continue it, ",
                "or choose a new --run-dir");
    fs::remove_all(ckpt_dir);
    fs::remove_all(fs::path(run_dir) / "eval");
  }
  RunConsole con(opt.progress, opt.live_progress, (fs::path(run_dir) / "train.log").string());
  const std::string cfg_path = save_resolved_config(run_dir, cfg);

  // Data.
  std::shared_ptr<SampleSource> train_src = opt.train_source;
  if (!train_src) {
    CTDET_CHECK(!cfg.data.train.empty(), "train: data.train is empty (the prepared records folder of `ctdet prepare`)");
    train_src = source_for(cfg.data.train, "train", cfg.data.class_names);
  }
  CTDET_CHECK(train_src->size() > 0, "train: the training set is empty (", cfg.data.train, ")");
  std::shared_ptr<SampleSource> val_src = opt.val_source;
  if (!val_src && !cfg.data.val.empty()) val_src = source_for(cfg.data.val, "val", cfg.data.class_names);
  if (val_src && val_src->size() == 0) val_src.reset();

  // Parameters.
#if CTDET_WITH_CUDA
  std::unique_ptr<CudaContext> cuda;
  if (device == Device::CUDA) {
    cuda = std::make_unique<CudaContext>(0);
    cuda->deterministic = tc.deterministic;
  }
  CudaContext* cuda_ptr = cuda.get();
#else
  CudaContext* cuda_ptr = nullptr;
#endif
  ParamStore ps(device);
  declare_faster_rcnn_params(ps, cfg.model);
  // One micro-batch per step: the gradients live in the training graph's arena, each from the node that
  // produces it to the update (param_gradients_to_arena), so the store holds parameters and momentum only.
  // Several micro-batches add their gradients up across runs: that needs the store's gradient block.
  ps.allocate(tc.grad_accumulation == 1 ? ParamUse::TrainingGradsInArena : ParamUse::Training);
  res.param_store_bytes = ps.allocated_bytes();

  int64_t start = 0;
  double best_score = kNaN;
  int64_t best_step = -1;
  if (opt.resume) {
    const json side = load_checkpoint(ckpt_dir, ps);
    start = side.at("step").get<int64_t>();
    if (side.contains("best_score") && side["best_score"].is_number()) best_score = side["best_score"].get<double>();
    if (side.contains("best_step")) best_step = side["best_step"].get<int64_t>();
    res.last_checkpoint = side.value("checkpoint", std::string());
    res.last_checkpoint_step = start;
    if (side.contains("config")) {
      const auto diff = config_differences(json::parse(to_json(cfg)), side["config"]);
      if (!diff.empty()) {
        std::string keys;
        for (const auto& k : diff) keys += (keys.empty() ? "" : ", ") + k;
        con.note("resume: the config differs from the checkpoint's in: " + keys);
      }
      const json& t0 = side["config"]["train"];
      CTDET_CHECK(t0.value("seed", tc.seed) == tc.seed && t0.value("batch_size", tc.batch_size) == tc.batch_size &&
                      t0.value("grad_accumulation", tc.grad_accumulation) == tc.grad_accumulation,
                  "train: --resume with a different train.seed / batch_size / grad_accumulation than the checkpoint's "
                  "would not continue the same data order; keep them as in '", res.last_checkpoint, "'");
    }
    con.note(str("resume: step ", start, " from '", res.last_checkpoint, "' (weights, momentum, data position, logs)"));
  } else {
    init_faster_rcnn_params(ps, cfg.model, uint64_t(tc.seed));
    if (!tc.init.empty()) load_init_weights(ps, tc.init, con);
  }
  res.start_step = res.step = start;
  if (opt.resume && start >= tc.steps) {
    res.reason = StopReason::kCompleted;
    res.message = str("resume: the run is at step ", start, " and train.steps is ", tc.steps,
                      "; nothing to do (raise --steps to train further)");
    con.note(res.message);
    return res;
  }

  size_t budget = tc.memory_budget.empty() ? 0 : parse_bytes(tc.memory_budget);
  size_t free_b = 0, total_b = 0;
  if (budget == 0 && device == Device::CUDA && device_memory_info(&free_b, &total_b)) {
    // "" = what the device has free, counting the store just allocated, less a reserve for what cuDNN, cuBLAS and
    // lazily loaded kernels take outside the plan. Over it the planner degrades (workspace caps, recomputation)
    // instead of failing to allocate; within it nothing changes.
    const size_t reserve = std::max(size_t(256) << 20, total_b / 20);
    const size_t have = free_b + ps.allocated_bytes();
    budget = have > reserve ? have - reserve : 1;
    con.note(str("memory budget: ", format_bytes(budget), " (free on the device less a ", format_bytes(reserve),
                 " reserve; train.memory_budget sets it)"));
  }
  DetectorSession session(cfg.model, ps, device, cuda_ptr, budget);
  session.recompute_backbone = tc.recompute_backbone;
  Optimizer optim(ps, cuda_ptr, tc.momentum, tc.grad_clip_norm, tc.clip_mode == "per_tensor");

  // Loader positioned at the first micro-batch of step start + 1.
  const int A = tc.grad_accumulation;
  LoaderOptions lo = base_loader_options(cfg);
  lo.batch_size = tc.batch_size / A;
  lo.seed = uint64_t(tc.seed);
  lo.shuffle = true;
  lo.flip_prob = tc.flip ? tc.flip_prob : 0.0;
  lo.num_epochs = 0;
  const int64_t per_epoch = int64_t((train_src->size() + size_t(lo.batch_size) - 1) / size_t(lo.batch_size));
  const int64_t consumed = start * A;
  lo.first_epoch = consumed / per_epoch;
  lo.first_batch = consumed % per_epoch;
  DataLoader loader(train_src, lo);
  CTDET_CHECK(loader.batches_per_epoch() == per_epoch, "train: loader has ", loader.batches_per_epoch(),
              " batches per epoch, expected ", per_epoch);

  // Logs.
  TrainLogOptions tlo;
  tlo.overwrite = !opt.resume;  // a fresh run was checked above (no checkpoints, or overwrite)
  tlo.csv_columns = {};
  for (const auto& kv : loss_values(StepLosses{})) tlo.csv_columns.push_back(kv.first);
  for (const char* c : {"lr", "grad_norm", "step_time_s", "images_per_sec", "mem_planned_peak_mib", "mem_params_mib",
                        "mem_rss_peak_mib"})
    tlo.csv_columns.push_back(c);
  TrainLog tlog(run_dir, opt.resume ? start : -1, tlo);
  std::unique_ptr<TrainLog> elog;
  if (val_src) {
    TrainLogOptions elo;
    elo.overwrite = !opt.resume;
    for (const auto& n : cfg.data.class_names) elo.csv_columns.push_back("ap50/" + n);
    elo.csv_columns.push_back("map50");
    elo.csv_columns.push_back("ap50_any");
    elog = std::make_unique<TrainLog>((fs::path(run_dir) / "eval").string(), opt.resume ? start : -1, elo);
  }

  con.note(str("train: ", backbone_kind_name(cfg.model.backbone), " on ", res.device, ", ", train_src->size(),
               " training images", val_src ? str(", ", val_src->size(), " validation images") : std::string(),
               ", steps ", start, " -> ", tc.steps, ", batch ", tc.batch_size, " (", A, " micro-batch",
               A > 1 ? "es" : "", "), parameters ", format_bytes(ps.bytes()), ", config '", cfg_path, "'"));

  auto sidecar = [&](const StepLosses* l, double lr) {
    json s;
    s["config"] = json::parse(to_json(cfg));
    s["seed"] = tc.seed;
    const int64_t c = res.step * A;
    s["data"] = {{"batches_consumed", c}, {"epoch", c / per_epoch}, {"batch", c % per_epoch},
                 {"batches_per_epoch", per_epoch}, {"micro_batch_size", lo.batch_size}};
    s["best_score"] = std::isfinite(best_score) ? json(best_score) : json(nullptr);
    s["best_step"] = best_step;
    if (l) {
      json lj;
      for (const auto& kv : loss_values(*l)) lj[kv.first] = kv.second;
      s["losses"] = lj;
      s["lr"] = lr;
    }
    return s;
  };
  auto save = [&](bool best, const StepLosses* l, double lr) {
    CheckpointOptions co;
    co.keep = tc.keep_checkpoints;
    co.best = best;
    res.last_checkpoint = save_checkpoint(ckpt_dir, res.step, ps, sidecar(l, lr), co);
    res.last_checkpoint_step = res.step;
  };
  auto write_charts = [&]() {
    tlog.flush();
    const MetricRows rows = read_metrics_jsonl(tlog.jsonl_path());
    write_file_atomic((fs::path(run_dir) / "loss_chart.svg").string(), loss_chart_svg(rows) + "\n");
    write_loss_chart_png(rows, (fs::path(run_dir) / "loss_chart.png").string());
  };
  int64_t last_eval_step = -1;
  double last_eval_seconds = 0, overhead_seconds = 0;  // validation time, kept out of steps/s
  auto run_validation = [&]() -> bool {  // true when this is a new best
    const auto tv = std::chrono::steady_clock::now();
    const ValidationResult v = validate_on(session, val_src, cfg, res.step);
    last_eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tv).count();
    overhead_seconds += last_eval_seconds;
    last_eval_step = res.step;
    res.validations.push_back(v);
    std::vector<std::pair<std::string, double>> vals;
    std::string line = str("validation @ step ", res.step, " (", v.images, " images, ", v.gt_boxes, " lesions): AP@0.5");
    for (const auto& kv : v.ap50) {
      vals.push_back({"ap50/" + kv.first, kv.second});
      line += " " + kv.first + " " + ap_text(kv.second);
    }
    vals.push_back({"map50", v.map50});
    vals.push_back({"ap50_any", v.any_ap50});
    elog->log(res.step, vals);
    elog->flush();
    const double sc = v.score();
    const bool better = std::isfinite(sc) && (!std::isfinite(best_score) || sc > best_score);
    if (better) {
      best_score = sc;
      best_step = res.step;
    }
    line += str(" | mAP@0.5 ", ap_text(v.map50), " (any lesion ", ap_text(v.any_ap50), ") | best ", ap_text(best_score),
                best_step >= 0 ? str(" @ ", best_step) : std::string(), " | ", fmt("%.1f", last_eval_seconds), " s");
    con.note(line);
    return better;
  };

  if (!opt.resume) save(false, nullptr, 0.0);  // ckpt-0: a last good state exists from the start

  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  auto t_rate0 = t_start;
  int64_t rate_steps = 0;
  double last_print = -1e9;
  int64_t last_logged = -1;
  StepLosses last_losses;
  double last_lr = 0;
  bool stopped_before_loop_end = false;
  while (true) {
    if (res.step >= tc.steps) {
      res.reason = StopReason::kCompleted;
      break;
    }
    if (opt.max_steps >= 0 && res.step >= opt.max_steps) {
      res.reason = StopReason::kMaxSteps;
      break;
    }
    if (opt.stop && opt.stop->load()) {
      res.reason = StopReason::kStopRequested;
      break;
    }
    const int64_t step = res.step + 1;
    const auto t0 = clock::now();
    if (ps.has_gradients()) ps.zero_grads();  // the arena's gradients are overwritten by each step
    session.profile = step == tc.profile_step;
    StepLosses sum;
    for (int m = 0; m < A; ++m) {
      Batch b;
      CTDET_CHECK(loader.next(&b), "train: the endless loader ended at step ", step);
      const StepLosses l = session.train_step(b, step_seed(tc.seed, step, m));
      sum.rpn_cls += l.rpn_cls;
      sum.rpn_loc += l.rpn_loc;
      sum.cls += l.cls;
      sum.box += l.box;
      sum.total += l.total;
    }
    if (session.profile) {
      session.profile = false;
      Executor* ex = session.last_executor();
      const std::string path = (fs::path(run_dir) / "profile.txt").string();
      write_file_atomic(path, str("ctdet train: per-node times of step ", step, " (", A, " micro-batch",
                                  A > 1 ? "es" : "", "; the last graph run)\n", ex->profile_table(20)));
      ex->node_ms.clear();
      ex->profiled_runs = 0;
      con.note(str("profile of step ", step, " written to '", path, "'"));
    }
    StepLosses L = sum;
    if (A > 1) {
      L.rpn_cls /= A;
      L.rpn_loc /= A;
      L.cls /= A;
      L.box /= A;
      L.total /= A;
    }
    if (res.planned_peak_bytes == 0) {
      res.planned_peak_bytes = session.planned_peak_bytes();
      // When the budget made the planner degrade, say what it chose (the last plan it tried).
      const std::string& pl = session.last_plan_log();
      if (std::count(pl.begin(), pl.end(), '\n') > 1)
        con.note("memory plan within the budget: " + pl.substr(pl.rfind('\n', pl.size() - 2) + 1, std::string::npos));
    }
    const double lr = tc.lr_at(step - 1);
    std::string bad = L.non_finite();
    double gnorm = kNaN;
    if (bad.empty()) {
      gnorm = optim.step(session, lr, A);
      if (!std::isfinite(gnorm)) bad = "grad_norm";
    }
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    StepRecord rec{step, L, lr, gnorm, dt};
    res.history.push_back(rec);
    const size_t rss = peak_rss_bytes();
    auto row = [&]() {
      auto vals = loss_values(L);
      vals.push_back({"lr", lr});
      vals.push_back({"grad_norm", gnorm});
      vals.push_back({"step_time_s", dt});
      vals.push_back({"images_per_sec", dt > 0 ? tc.batch_size / dt : kNaN});
      vals.push_back({"mem_planned_peak_mib", double(res.planned_peak_bytes) / (1 << 20)});
      vals.push_back({"mem_params_mib", double(res.param_store_bytes) / (1 << 20)});
      vals.push_back({"mem_rss_peak_mib", double(rss) / (1 << 20)});
      tlog.log(step, vals);
      last_logged = step;
    };
    if (!bad.empty()) {
      row();
      res.reason = StopReason::kNonFinite;
      res.bad_term = bad;
      const double bad_value = bad == "grad_norm" ? gnorm : term_value(L, bad);
      res.message = str("non-finite ", bad == "grad_norm" ? "gradient norm" : "loss term", " '", bad, "' = ",
                        bad_value, " at step ", step, " (lr ", lr, "): nothing of step ", step,
                        " was applied or saved; the last good checkpoint is '", res.last_checkpoint, "' (step ",
                        res.last_checkpoint_step, "). Lower train.lr (or keep train.grad_clip_norm > 0) and --resume.");
      con.note(res.message);
      stopped_before_loop_end = true;
      break;
    }
    res.step = step;
    last_losses = L;
    last_lr = lr;
    if (step > res.start_step + 1) ++rate_steps;
    else t_rate0 = clock::now();  // the first step builds and plans the graph
    const double el = std::chrono::duration<double>(clock::now() - t_rate0).count() - overhead_seconds;
    const double rate = rate_steps > 0 && el > 0 ? rate_steps / el : 1.0 / std::max(dt, 1e-9);
    res.steps_per_sec = rate;
    // ETA: training steps at the measured rate plus the validations still to come at the last one's duration.
    const int64_t evals_left = val_src ? (tc.eval_every > 0 ? (tc.steps / tc.eval_every - step / tc.eval_every) : 1) : 0;
    const double eta = double(tc.steps - step) / rate + double(evals_left) * last_eval_seconds;

    const bool periodic = tc.log_every > 0 && step % tc.log_every == 0;
    if (periodic) row();
    const double now = std::chrono::duration<double>(clock::now() - t_start).count();
    if (periodic || (opt.live_progress && now - last_print > 0.25)) {
      last_print = now;
      const double pct = 100.0 * double(step) / double(tc.steps);
      std::string line = str("step ", step, "/", tc.steps, " (", fmt("%.1f", pct), "%) ", fmt("%.2f", rate),
                             " steps/s ETA ", hms(eta), " |");
      for (const auto& kv : loss_values(L)) {
        std::string name = kv.first == "total_loss" ? "total" : kv.first.substr(5);
        line += " " + name + " " + fmt("%.4f", kv.second);
      }
      line += " | lr " + fmt("%.3g", lr) + " | mem " + format_bytes(res.planned_peak_bytes + res.param_store_bytes) +
              " planned, " + format_bytes(rss) + " rss";
      con.progress(line, periodic);
    }

    const bool eval_due = val_src && tc.eval_every > 0 && step % tc.eval_every == 0;
    const bool ckpt_due = tc.checkpoint_every > 0 && step % tc.checkpoint_every == 0;
    bool best = false;
    if (eval_due) best = run_validation();
    if (eval_due || ckpt_due) {
      save(best, &last_losses, last_lr);
      write_charts();
    }
  }

  if (!stopped_before_loop_end) {
    if (last_logged != res.step && res.step > res.start_step) {
      // the exit step's row (not a multiple of log_every)
      const StepRecord& r = res.history.back();
      auto vals = loss_values(r.losses);
      vals.push_back({"lr", r.lr});
      vals.push_back({"grad_norm", r.grad_norm});
      vals.push_back({"step_time_s", r.seconds});
      tlog.log(r.step, vals);
    }
    bool best = false;
    if (res.reason == StopReason::kCompleted && val_src && last_eval_step != res.step) best = run_validation();
    if (res.last_checkpoint_step != res.step || best)
      save(best, res.step > res.start_step ? &last_losses : nullptr, last_lr);
    switch (res.reason) {
      case StopReason::kCompleted:
        res.message = str("training completed at step ", res.step, "; checkpoint '", res.last_checkpoint, "'");
        break;
      case StopReason::kStopRequested:
        res.message = str("stopped at step ", res.step, " on request; checkpoint '", res.last_checkpoint,
                          "' (continue with --resume)");
        break;
      case StopReason::kMaxSteps:
        res.message = str("stopped at step ", res.step, " (max steps); checkpoint '", res.last_checkpoint,
                          "' (continue with --resume)");
        break;
      case StopReason::kNonFinite: break;
    }
    con.note(res.message);
  }
  tlog.flush();
  write_charts();
  tlog.close();
  if (elog) elog->close();
  res.best_score = best_score;
  res.best_step = best_step;
  res.peak_rss_bytes = peak_rss_bytes();
  const std::string summary =
      str("run: ", res.step - res.start_step, " steps at ", fmt("%.2f", res.steps_per_sec), " steps/s; planned peak ",
          format_bytes(res.planned_peak_bytes), " + parameter store ", format_bytes(res.param_store_bytes),
          "; process peak ", format_bytes(res.peak_rss_bytes));
  con.note(summary);
  return res;
}

}  // namespace ctdet
