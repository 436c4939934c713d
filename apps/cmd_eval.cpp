// `ctdet eval --gt GT --dets DETS --out DIR`: scores detections against ground truth and writes
// eval_report.json, eval_report.md, froc.csv, patient_level.csv and pr_curves.csv (train/evaluation.h).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "apps/args.h"
#include "apps/command.h"
#include "nn/error.h"
#include "train/detections_io.h"
#include "train/evaluation.h"

namespace {

void eval_usage() {
  std::printf(
      "usage: ctdet eval --gt GT --dets DETS --out DIR [options]\n\n"
      "  --gt PATH            ground truth: COCO dataset JSON, VIA JSON, or VIA CSV (.csv)\n"
      "  --dets PATH          detections: COCO results JSON (.json) or CSV image,class,score,x1,y1,x2,y2\n"
      "  --out DIR            output folder (created; existing reports are replaced atomically)\n"
      "  --threshold S        operating-point score threshold (default 0.5)\n"
      "  --classes A,B,C      class names / label map (default: COCO categories, or GGO,CD,GGO+CD)\n"
      "  --class-attr NAME    VIA region attribute holding the class (default: 'lesion' or the only one)\n"
      "  --patient-rule R     'any' (default: a patient is positive when any slice is marked) or\n"
      "                       'fraction:F' (positive when >= F of its slices are marked)\n"
      "  --iou T              IoU for TP/FP/FN and the confusion matrix (default 0.5)\n"
      "  --localize-iou T     IoU for 'a marked box finds a lesion' (default 0.1)\n"
      "  --froc-iou T         FROC hit criterion (default 0.5)\n"
      "  --max-dets N         COCO maxDets per image and class (default 100)\n"
      "  --bootstrap N        patient bootstrap resamples for the FROC score CI (default 1000, 0 = off)\n"
      "  --seed N             bootstrap seed (default 1)\n");
}

double to_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  CTDET_CHECK(!v.empty() && end && *end == '\0', "eval: ", flag, " expects a number, got '", v, "'");
  return x;
}

long to_long(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  CTDET_CHECK(!v.empty() && end && *end == '\0', "eval: ", flag, " expects an integer, got '", v, "'");
  return x;
}



int run_eval(const std::vector<std::string>& args) {
  std::string gt_path, dets_path, out_dir, patient_rule = "any", class_attr;
  std::vector<std::string> classes;
  ctdet::EvalOptions opt;
  opt.bootstrap = 1000;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      eval_usage();
      return 0;
    }
    CTDET_CHECK(i + 1 < args.size(), "eval: option '", a, "' needs a value (see ctdet eval --help)");
    const std::string& v = args[++i];
    if (a == "--gt") gt_path = v;
    else if (a == "--dets") dets_path = v;
    else if (a == "--out") out_dir = v;
    else if (a == "--threshold") opt.score_threshold = float(to_double(a, v));
    else if (a == "--classes") classes = ctdet::app::split_list(v, "eval: --classes");
    else if (a == "--class-attr") class_attr = v;
    else if (a == "--patient-rule") patient_rule = v;
    else if (a == "--iou") opt.match_iou = to_double(a, v);
    else if (a == "--localize-iou") opt.localize_iou = to_double(a, v);
    else if (a == "--froc-iou") opt.froc_iou = to_double(a, v);
    else if (a == "--max-dets") opt.max_dets = int(to_long(a, v));
    else if (a == "--bootstrap") opt.bootstrap = int(to_long(a, v));
    else if (a == "--seed") opt.seed = uint64_t(to_long(a, v));
    else CTDET_FAIL("eval: unknown option '", a, "' (see ctdet eval --help)");
  }
  if (gt_path.empty() || dets_path.empty() || out_dir.empty()) {
    eval_usage();
    return 2;
  }
  opt.patient_fraction = ctdet::parse_patient_rule(patient_rule);
  for (double t : {opt.match_iou, opt.localize_iou, opt.froc_iou})
    CTDET_CHECK(t > 0 && t <= 1, "eval: IoU thresholds must be in (0, 1], got ", t);
  CTDET_CHECK(opt.bootstrap >= 0, "eval: --bootstrap must be >= 0");

  // Ground truth.
  std::vector<long long> category_ids;
  const ctdet::Dataset gt = ctdet::read_ground_truth(gt_path, classes, class_attr, "", &category_ids);
  const auto ids = ctdet::make_coco_id_map(gt, category_ids);
  const auto dets = ctdet::read_detections(dets_path, ids, gt.class_names);

  const ctdet::EvalReport report = ctdet::evaluate(gt, dets, opt);
  ctdet::write_eval_outputs(report, out_dir);
  std::printf("%s", ctdet::eval_headline(report).c_str());
  std::printf("wrote %s/{eval_report.json, eval_report.md, froc.csv, patient_level.csv, pr_curves.csv}\n",
              out_dir.c_str());
  return 0;
}

}  // namespace

CTDET_COMMAND("eval", "score detections: COCO AP, confusion matrix, image/patient measures, FROC", run_eval);
