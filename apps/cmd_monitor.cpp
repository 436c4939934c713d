// `ctdet monitor --series DIR --detections dets.csv --out DIR`: one patient's lesions followed from study to
// study per lung zone (patient right/left x upper/middle/lower) and class, from per-slice detections
// (train/monitor.h). Writes monitor.csv, monitor.md and monitor.html (self-contained, SVG charts).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/command.h"
#include "detector/inference.h"
#include "nn/error.h"
#include "train/detections_io.h"
#include "train/monitor.h"

namespace {

using ctdet::app::Args;

void monitor_usage() {
  std::printf(
      "usage: ctdet monitor --series PATH (--detections FILE | --run RUN | --config C --weights W) --out DIR [options]\n\n"
      "  --series PATH            manifest.json of the patient's studies (or its folder), as `ctdet synth --series`\n"
      "                           writes it: studies with date, folder and slices (apex to base, or by \"z\"),\n"
      "                           or a study with \"dicom_dir\" (a DICOM series; values in HU)\n"
      "  --detections FILE        detections per slice: CSV image,class,score,x1,y1,x2,y2 or COCO results JSON\n"
      "                           (.json; image ids 1..N in manifest order). CSV image = <folder>/<file>\n"
      "  --run RUN                or: detect on every slice with this trained model (`ctdet train` run folder),\n"
      "  --config C --weights W   or a config + weights; --device cpu|cuda|auto (default auto). The detections\n"
      "                           found are written to DIR/detections.csv\n"
      "  --out DIR                folder for monitor.csv, monitor.md, monitor.html\n"
      "  --classes A,B,C          class names (default GGO,CD,GGO+CD)\n"
      "  --min-score S            ignore detections below S (default 0.5)\n"
      "  --change-threshold F     relative area change beyond which larger/smaller (default 0.2)\n"
      "  --orientation O          radiological (patient's left on the image right; default) or neurological;\n"
      "                           DICOM slices use their ImageOrientationPatient when present\n"
      "  --units U                auto (default: hu for DICOM studies, u8 for PNG), hu or u8 (lung window -600/1500)\n"
      "  --body-threshold V       body = above V (default -500 HU, or its lung-window level for u8)\n"
      "  --lung-threshold V       aerated lung = below V inside the body (default -320 HU)\n"
      "  --lesion-threshold V     lesion pixels = at or above V inside boxes and lungs (default -750 HU)\n"
      "  --closing-radius N       lung mask closing radius in pixels (default 3%% of the image side)\n");
}

// The detector behind the monitor's DetectionSource: each slice (PNG/JPEG, or a DICOM file's lung window) is
// detected once when the analysis reads it; all detections are kept for DIR/detections.csv.
class ModelRunner {
 public:
  ModelRunner(const std::string& run, const std::string& config, const std::string& weights, const std::string& device,
              int total)
      : model_(ctdet::resolve_model_files(run, config, weights), device), total_(total) {}
  std::vector<ctdet::Detection> detect(const ctdet::ImageRecord& rec) {
    std::vector<ctdet::Detection> d = model_.detect(ctdet::read_slice(rec.file), 0.05f, rec.id);
    all_.insert(all_.end(), d.begin(), d.end());
    ++done_;
    if (done_ % 10 == 0 || done_ == total_) std::fprintf(stderr, "monitor: detected %d/%d slices\n", done_, total_);
    return d;
  }
  const std::vector<ctdet::Detection>& all() const { return all_; }
  int done() const { return done_; }
  std::string describe() const { return model_.describe(); }

 private:
  ctdet::InferenceModel model_;
  std::vector<ctdet::Detection> all_;
  int done_ = 0, total_ = 0;
};

int run_monitor_cmd(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      monitor_usage();
      return 0;
    }
  Args a("monitor", argv,
         {"series", "detections", "run", "config", "weights", "device", "out", "classes", "min-score",
          "change-threshold", "orientation", "units",
          "body-threshold", "lung-threshold", "lesion-threshold", "closing-radius"},
         {});
  const bool use_model = a.has("run") || a.has("config") || a.has("weights");
  if (!a.has("series") || !a.has("out") || (a.has("detections") == use_model)) {
    monitor_usage();
    return 2;
  }
  const ctdet::MonitorSeries series = ctdet::read_monitor_manifest(a.get("series"));
  int dicom = 0;
  for (const auto& s : series.studies) dicom += s.dicom;
  std::string units = a.get("units", "auto");
  CTDET_CHECK(units == "auto" || units == "hu" || units == "u8", "monitor: --units must be auto, hu or u8, got '",
              units, "'");
  if (units == "auto") {
    CTDET_CHECK(dicom == 0 || dicom == int(series.studies.size()), "monitor: ", dicom, " of ",
                series.studies.size(), " studies are DICOM (HU) and the others 8-bit images; pass --units");
    units = dicom ? "hu" : "u8";
  }
  ctdet::MonitorOptions opt = units == "hu" ? ctdet::MonitorOptions{} : ctdet::monitor_options_u8();
  opt.body_threshold = float(a.get_double("body-threshold", opt.body_threshold));
  opt.lung_threshold = float(a.get_double("lung-threshold", opt.lung_threshold));
  opt.lesion_threshold = float(a.get_double("lesion-threshold", opt.lesion_threshold));
  opt.closing_radius = a.get_int("closing-radius", opt.closing_radius);
  opt.min_score = float(a.get_double("min-score", opt.min_score));
  opt.change_threshold = a.get_double("change-threshold", opt.change_threshold);
  CTDET_CHECK(opt.change_threshold >= 0, "monitor: --change-threshold ", opt.change_threshold, " must be >= 0");
  const std::string orient = a.get("orientation", "radiological");
  CTDET_CHECK(orient == "radiological" || orient == "neurological",
              "monitor: --orientation must be radiological or neurological, got '", orient, "'");
  opt.radiological = orient == "radiological";
  const std::vector<std::string> classes = a.has("classes") ? ctdet::app::split_list(a.get("classes"), "monitor: --classes")
                                                            : ctdet::default_class_names();

  // Per-slice detections: from a results file, or from the detector run on each slice as it is analysed.
  const ctdet::Dataset ds = ctdet::monitor_dataset(series, classes);
  ctdet::DetectionSource source;
  std::unique_ptr<ModelRunner> model;
  if (use_model) {
    model = std::make_unique<ModelRunner>(a.get("run"), a.get("config"), a.get("weights"), a.get("device", "auto"),
                                          int(ds.images.size()));
    ModelRunner* m = model.get();
    source = [m](const ctdet::ImageRecord& rec) { return m->detect(rec); };
  } else {
    const std::vector<ctdet::Detection> dets =
        ctdet::read_detections(a.get("detections"), ctdet::make_coco_id_map(ds), classes);
    const std::vector<std::string> unknown = ctdet::unknown_detection_ids(series, dets);
    CTDET_CHECK(unknown.empty(), "monitor: ", unknown.size(), " image id(s) of '", a.get("detections"),
                "' name no slice of the series, e.g. '", unknown.empty() ? "" : unknown[0],
                "' (CSV ids are <folder>/<file>, e.g. '", ds.images.empty() ? "" : ds.images[0].id, "')");
    source = ctdet::detections_by_image(dets);
  }

  const ctdet::MonitorReport r = ctdet::run_monitor(series, source, ctdet::load_monitor_image, opt, classes);
  const ctdet::MonitorPaths p = ctdet::write_monitor_outputs(r, a.get("out"));
  if (model) {
    const std::string path = (std::filesystem::path(a.get("out")) / "detections.csv").string();
    ctdet::write_detections_csv(path, model->all(), classes);
    std::printf("detector: %s; %d slices, %zu detections -> %s\n", model->describe().c_str(), model->done(),
                model->all().size(), path.c_str());
  }
  std::printf("%s\n", ctdet::monitor_markdown(r).c_str());
  std::printf("wrote %s\n      %s\n      %s\n", p.csv.c_str(), p.md.c_str(), p.html.c_str());
  return 0;
}

}  // namespace

CTDET_COMMAND("monitor", "follow one patient's lesions across studies per lung zone and class", run_monitor_cmd);
