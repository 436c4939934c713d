// `ctdet report --eval DIR --out report.html [...]`: one self-contained HTML report (io/report.h) from a
// `ctdet eval` folder, with optional training-loss curves, a gallery of overlays and the run's config.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "apps/command.h"
#include "io/atomic_file.h"
#include "io/coco.h"
#include "io/report.h"
#include "io/via.h"
#include "nn/error.h"
#include "train/detections_io.h"
#include "train/evaluation.h"

namespace {

void report_usage() {
  std::printf(
      "usage: ctdet report --eval DIR --out report.html [options]\n\n"
      "  --eval DIR           folder written by `ctdet eval` (eval_report.json, froc.csv, pr_curves.csv, ...)\n"
      "  --out FILE           the HTML file to write (atomically; self-contained)\n"
      "  --train-log PATH     training log: the run folder (metrics.csv / metrics.jsonl) or a CSV / JSON-lines\n"
      "                       file with step,loss_total,loss_rpn_cls,loss_rpn_loc,loss_cls,loss_box_reg,lr\n"
      "  --config FILE        the run's config, shown verbatim (escaped)\n"
      "  --title TEXT         report title\n"
      "gallery (all three needed):\n"
      "  --images DIR         folder the ground-truth file names are relative to\n"
      "  --gt PATH            ground truth: COCO dataset JSON, VIA JSON or VIA CSV (.csv)\n"
      "  --dets PATH          detections: COCO results JSON (.json) or CSV image,class,score,x1,y1,x2,y2\n"
      "  --classes A,B,C      class names (default: COCO categories, or GGO,CD,GGO+CD)\n"
      "  --gallery-count N    images per gallery group (best, misses, false positives; default 3)\n"
      "  --thumb-size N       gallery thumbnails fit N x N pixels (default 384)\n");
}



int to_int(const std::string& flag, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  CTDET_CHECK(!v.empty() && end && *end == '\0' && x >= lo && x <= hi, "report: ", flag, " expects an integer in [",
              lo, ", ", hi, "], got '", v, "'");
  return int(x);
}


int run_report(const std::vector<std::string>& args) {
  std::string eval_dir, out, train_log, config, images, gt_path, dets_path, title;
  std::vector<std::string> classes;
  int per_group = 3, thumb = 384;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      report_usage();
      return 0;
    }
    CTDET_CHECK(i + 1 < args.size(), "report: option '", a, "' needs a value (see ctdet report --help)");
    const std::string& v = args[++i];
    if (a == "--eval") eval_dir = v;
    else if (a == "--out") out = v;
    else if (a == "--train-log") train_log = v;
    else if (a == "--config") config = v;
    else if (a == "--images") images = v;
    else if (a == "--gt") gt_path = v;
    else if (a == "--dets") dets_path = v;
    else if (a == "--title") title = v;
    else if (a == "--classes") classes = ctdet::app::split_list(v, "report: --classes");
    else if (a == "--gallery-count") per_group = to_int(a, v, 0, 100);
    else if (a == "--thumb-size") thumb = to_int(a, v, 16, 4096);
    else CTDET_FAIL("report: unknown option '", a, "' (see ctdet report --help)");
  }
  if (eval_dir.empty() || out.empty()) {
    report_usage();
    return 2;
  }
  const int n_gallery_args = int(!images.empty()) + int(!gt_path.empty()) + int(!dets_path.empty());
  CTDET_CHECK(n_gallery_args == 0 || n_gallery_args == 3,
              "report: the gallery needs all of --images, --gt and --dets (got ", n_gallery_args, " of 3)");

  for (const auto& [flag, path] : {std::pair<const char*, std::string>{"--config", config}}) {
    std::error_code ec;
    CTDET_CHECK(path.empty() || std::filesystem::is_regular_file(path, ec), "report: ", flag, " '", path,
                "' is not a readable file");
  }

  ctdet::ReportInputs in;
  if (!title.empty()) in.title = title;
  in.eval = ctdet::read_eval_folder(eval_dir);
  std::string cmd = "ctdet report";
  for (const auto& a : args) cmd += " " + a;
  in.command_line = cmd;
  if (!train_log.empty()) {
    in.train_log = ctdet::read_train_log(train_log);
    in.has_train_log = true;
    in.train_log_name = train_log;
  }
  if (!config.empty()) {
    in.config_text = ctdet::read_file(config);
    in.config_name = config;
  }
  if (n_gallery_args == 3 && per_group > 0) {
    // The operating point of the eval run, so the gallery agrees with the tables.
    const nlohmann::json opts = nlohmann::json::parse(in.eval.report_json).value("options", nlohmann::json::object());
    ctdet::GalleryOptions go;
    go.score_threshold = opts.value("score_threshold", 0.5f);
    go.match_iou = opts.value("match_iou", 0.5);
    go.per_group = per_group;
    std::vector<long long> category_ids;
    const ctdet::Dataset gt = ctdet::read_ground_truth(gt_path, classes, "", images, &category_ids);
    const auto ids = ctdet::make_coco_id_map(gt, category_ids);
    const auto dets = ctdet::read_detections(dets_path, ids, gt.class_names);
    ctdet::validate_detections(gt, dets);
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < gt.images.size(); ++i) index[gt.images[i].id] = i;
    std::vector<std::vector<ctdet::Detection>> per_image(gt.images.size());
    for (const auto& d : dets) per_image[index.at(d.image_id)].push_back(d);
    for (const auto& c : ctdet::select_gallery_cases(gt, dets, go)) {
      const size_t i = index.at(c.image_id);
      in.gallery.push_back(
          ctdet::make_gallery_item(gt.images[i], per_image[i], gt.class_names, c, go.score_threshold, thumb));
    }
    if (in.gallery.empty()) in.gallery_note = "No image qualified for the gallery at the operating point.";
  }
  ctdet::write_report_html(out, in);
  std::printf("wrote %s (%zu gallery images%s)\n", out.c_str(), in.gallery.size(),
              in.has_train_log ? ", training curves" : "");
  return 0;
}

}  // namespace

CTDET_COMMAND("report", "self-contained HTML report from an eval folder (tables, curves, gallery)", run_report);
