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
#include "detector/session.h"
#include "io/atomic_file.h"
#include "io/dicom.h"
#include "io/image.h"
#include "io/overlay.h"
#include "io/resize.h"
#include "nn/device.h"
#include "train/detections_io.h"
#include "train/model_files.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet::app {
namespace {

namespace fs = std::filesystem;

struct InputImage {
  std::string path, id, series;  // id: unique name; series: DICOM series folder or the image's folder
  bool dicom = false;
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
        in.dicom = has_ext(f, {".dcm"});
        out.push_back(in);
      }
    } else {
      InputImage in;
      in.path = p;
      in.id = fs::path(p).filename().string();
      in.series = fs::path(p).parent_path().string();
      in.dicom = has_ext(fs::path(p), {".dcm"});
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
  ModelFiles mf = resolve_model_files(a.get("run"), a.get("config"), a.get("weights"));
  const FasterRcnnConfig& cfg = mf.config.model;

  std::string dev = a.get("device", "auto");
  CTDET_CHECK(dev == "cpu" || dev == "cuda" || dev == "auto", "infer: --device must be cpu, cuda or auto, got '", dev, "'");
  if (dev == "auto") dev = cuda_device_available() ? "cuda" : "cpu";
  const Device device = dev == "cuda" ? Device::CUDA : Device::CPU;
  CTDET_CHECK(device == Device::CPU || cuda_device_available(), "infer: --device cuda: ", cuda_unavailable_reason());
#if CTDET_WITH_CUDA
  std::unique_ptr<CudaContext> cuda;
  if (device == Device::CUDA) cuda = std::make_unique<CudaContext>(0);
  CudaContext* cx = cuda.get();
#else
  CudaContext* cx = nullptr;
#endif
  ParamStore ps(device, DType::F32);
  declare_faster_rcnn_params(ps, cfg);
  ps.allocate();
  load_model_weights(ps, mf.weights_path);
  DetectorSession session(cfg, ps, device, cx);
  const std::vector<std::string>& classes = mf.config.data.class_names;

  const std::vector<InputImage> inputs = collect_inputs(a.positional());
  fs::create_directories(out_dir);
  if (!a.flag("no-overlays")) fs::create_directories(fs::path(out_dir) / "overlays");
  std::printf("model: %s (weights %s), %s, %zu images -> %s\n", backbone_kind_name(cfg.backbone),
              mf.weights_path.c_str(), dev.c_str(), inputs.size(), out_dir.c_str());

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
    Image img;
    if (in.dicom) {
      DicomSlice s = read_dicom_slice(in.path);
      img = s.windowed;
    } else {
      img = read_image(in.path);
    }
    Batch b = single_image_batch(cfg, img, in.id);
    b.samples[0].file = in.path;
    std::vector<Detection> dets = session.detect(b, threshold)[0];
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
