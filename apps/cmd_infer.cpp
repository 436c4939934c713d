// ctdet infer: images, folders and DICOM series -> detections (COCO results JSON and CSV in original-image
// pixels), PNG overlays, a per-image and a per-series summary.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "apps/args.h"
#include "apps/command.h"
#include "detector/inference.h"
#include "io/atomic_file.h"
#include "io/image.h"
#include "io/overlay.h"
#include "train/detections_io.h"

namespace ctdet::app {
namespace {

namespace fs = std::filesystem;

struct InputImage {
  std::string path, id, series;  // id: unique name; series: DICOM series folder or the image's folder
};

bool has_ext(const fs::path& p, std::initializer_list<const char*> exts) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* x : exts)
    if (e == x) return true;
  return false;
}

std::vector<InputImage> collect_inputs(const std::vector<std::string>& paths) {
  std::vector<InputImage> out;
  for (const std::string& p : paths) {
    CTDET_CHECK(fs::exists(p), "infer: input '", p, "' does not exist");
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && has_ext(e.path(), {".png", ".jpg", ".jpeg", ".dcm"})) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      CTDET_CHECK(!files.empty(), "infer: folder '", p, "' has no .png, .jpg or .dcm files");
      for (const auto& f : files) {
        InputImage in;
        in.path = f.string();
        in.id = f.lexically_relative(fs::path(p)).string();  // the path inside the folder (links not resolved)
        in.series = f.parent_path().string();
        out.push_back(in);
      }
    } else {
      InputImage in;
      in.path = p;
      in.id = fs::path(p).filename().string();
      in.series = fs::path(p).parent_path().string();
      out.push_back(in);
    }
  }
  std::map<std::string, int> seen;
  for (auto& in : out)
    if (seen[in.id]++) in.id = in.path;  // keep ids unique
  return out;
}

int infer_main(const std::vector<std::string>& argv) {
  Args a("infer", argv, {"run", "config", "weights", "out", "threshold", "device", "overlay-threshold", "max-overlays"},
         {"no-overlays", "help"});
  if (a.flag("help") || a.positional().empty()) {
    std::printf(
        "usage: ctdet infer (--run RUN_DIR | --config C --weights W) [--out DIR] [--threshold 0.05]\n"
        "                   [--device cpu|cuda|auto] [--no-overlays] [--overlay-threshold 0.5] [--max-overlays N]\n"
        "                   IMAGE|FOLDER|DICOM_FOLDER...\n"
        "writes DIR/detections.json (COCO results), detections.csv, summary.csv, series_summary.csv, overlays/*.png\n");
    return a.flag("help") ? 0 : 2;
  }
  const std::string out_dir = a.get("out", "out/infer");
  const float threshold = float(a.get_double("threshold", 0.05));
  const float overlay_thr = float(a.get_double("overlay-threshold", 0.5));
  const int max_overlays = a.get_int("max-overlays", 200);
  InferenceModel model(resolve_model_files(a.get("run"), a.get("config"), a.get("weights")), a.get("device", "auto"));
  const std::vector<std::string>& classes = model.class_names();

  const std::vector<InputImage> inputs = collect_inputs(a.positional());
  fs::create_directories(out_dir);
  if (!a.flag("no-overlays")) fs::create_directories(fs::path(out_dir) / "overlays");
  std::printf("model: %s; %zu images -> %s\n", model.describe().c_str(), inputs.size(), out_dir.c_str());

  Dataset ds;
  ds.class_names = classes;
  std::vector<Detection> all;
  std::ostringstream summary;
  summary << "image,file,series,width,height,detections,max_score,marked_at_" << overlay_thr << "\n";
  std::map<std::string, std::pair<int, int>> series;  // series -> (slices, marked)
  const bool tty = isatty(fileno(stdout));
  const auto t0 = std::chrono::steady_clock::now();
  int overlays = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputImage& in = inputs[i];
    const Image img = read_slice(in.path);  // PNG, JPEG or DICOM (lung window), by content
    std::vector<Detection> dets = model.detect(img, threshold, in.id);
    ImageRecord rec;
    rec.file = in.path;
    rec.id = in.id;
    ds.images.push_back(rec);
    float mx = 0;
    for (const auto& d : dets) mx = std::max(mx, d.score);
    const bool marked = mx >= overlay_thr;
    auto& sr = series[in.series];
    sr.first++;
    sr.second += marked;
    summary << '"' << in.id << "\",\"" << in.path << "\",\"" << in.series << "\"," << img.width << "," << img.height << ","
            << dets.size() << "," << mx << "," << (marked ? 1 : 0) << "\n";
    if (!a.flag("no-overlays") && overlays < max_overlays) {
      OverlayOptions oo;
      oo.min_score = overlay_thr;
      std::string name = in.id;
      std::replace(name.begin(), name.end(), '/', '_');
      write_png((fs::path(out_dir) / "overlays" / (fs::path(name).stem().string() + ".png")).string(),
                draw_overlay(img, {}, dets, classes, oo));
      ++overlays;
    }
    all.insert(all.end(), dets.begin(), dets.end());
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = double(i + 1) / std::max(el, 1e-9);
    const double eta = double(inputs.size() - i - 1) / std::max(ips, 1e-9);
    if (tty || i + 1 == inputs.size() || (i + 1) % 20 == 0)
      std::printf("%s[%zu/%zu] %-40.40s %3zu detections  %.2f images/s  ETA %.0f s%s", tty ? "\r" : "", i + 1,
                  inputs.size(), in.id.c_str(), dets.size(), ips, eta, tty ? "" : "\n");
    std::fflush(stdout);
  }
  if (tty) std::printf("\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const CocoIdMap ids = make_coco_id_map(ds);
  write_detections_coco_json((fs::path(out_dir) / "detections.json").string(), all, ids);
  write_detections_csv((fs::path(out_dir) / "detections.csv").string(), all, classes);
  write_file_atomic((fs::path(out_dir) / "summary.csv").string(), summary.str());
  std::ostringstream ss;
  ss << "series,slices,marked_slices,marked_fraction\n";
  for (const auto& [s, v] : series)
    ss << '"' << s << "\"," << v.first << "," << v.second << "," << double(v.second) / std::max(1, v.first) << "\n";
  write_file_atomic((fs::path(out_dir) / "series_summary.csv").string(), ss.str());
  std::printf("%zu images in %.1f s (%.2f images/s), %zu detections at score >= %.2f; %d overlays\n", inputs.size(),
              secs, double(inputs.size()) / std::max(secs, 1e-9), all.size(), threshold, overlays);
  std::printf("wrote %s/{detections.json,detections.csv,summary.csv,series_summary.csv}\n", out_dir.c_str());
  return 0;
}

CTDET_COMMAND("infer", "detect lesions in images, folders or DICOM series (COCO/CSV results, overlays, summaries)",
              infer_main);

}  // namespace
}  // namespace ctdet::app
