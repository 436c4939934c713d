// `ctdet eval`: detection metrics (COCO-style AP exactly as pycocotools computes it), a confusion matrix
// with a background row and column, the study's image- and patient-level measures with Wilson intervals,
// and FROC (lesion-level sensitivity at 1/8 .. 8 false positives per image).
//
// Boxes: ctdet::Box / ctdet::Detection corners x1,y1,x2,y2 in original-image pixels. IoU follows
// pycocotools' bbox convention: w = x2-x1, h = y2-y1 (no +1), computed in double.
//
// Every definition used in a report is also written out in words by eval_report_markdown().
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

// ---- options ---------------------------------------------------------------------------------------
struct EvalOptions {
  float score_threshold = 0.5f;  // operating point: a detection "marks" its image when score >= this
  double match_iou = 0.5;        // IoU for TP/FP/FN at the operating point and for the confusion matrix
  double localize_iou = 0.1;     // a marked box "finds" a lesion when IoU >= this (any class)
  double froc_iou = 0.5;         // FROC hit criterion: IoU >= this with a detection of any class
  int max_dets = 100;            // COCO maxDets per image and class (AP only)
  // Patient rule: a patient is positive when (marked slices / slices) >= patient_fraction and at least
  // one slice is marked. patient_fraction = 0 is the rule "any slice marked".
  double patient_fraction = 0.0;
  int bootstrap = 0;             // > 0: patient-level bootstrap resamples for a 95% CI of the FROC score
  uint64_t seed = 1;             // bootstrap seed
};

// Parses --patient-rule: "any" or "fraction:F" with 0 < F <= 1. Throws ctdet::Error otherwise.
double parse_patient_rule(const std::string& rule);

// ---- small pieces (exposed for tests) -------------------------------------------------------------
// IoU of two corner boxes with pycocotools' [x,y,w,h] convention (no +1); 0 when they do not overlap.
double box_iou(double ax1, double ay1, double ax2, double ay2, double bx1, double by1, double bx2, double by2);

struct Interval {
  double lo = 0, hi = 0;  // NaN when n == 0
};
// Wilson score interval for k successes in n trials (z = 1.959963984540054 for 95%).
Interval wilson_interval(int64_t k, int64_t n, double z = 1.959963984540054);

struct Proportion {
  int64_t k = 0, n = 0;
  double value = 0;  // k / n, NaN when n == 0
  Interval ci;       // Wilson 95%
};
Proportion make_proportion(int64_t k, int64_t n);

// pycocotools' greedy matching for one image: dets (indices into boxes, already in descending score
// order) each take the not yet matched ground-truth box with the highest IoU >= thr (ties: the later
// ground truth wins, as in COCOeval.evaluateImg). Returns the matched gt index per det, or -1.
struct Rect {
  double x1, y1, x2, y2;
};
std::vector<int> greedy_match(const std::vector<Rect>& dets, const std::vector<Rect>& gts, double thr);

// ---- COCO AP ---------------------------------------------------------------------------------------
constexpr int kCocoIouCount = 10;      // 0.50:0.05:0.95
constexpr int kCocoRecallCount = 101;  // 0:0.01:1
double coco_iou_threshold(int t);      // the value np.linspace(.5, .95, 10)[t] has
double coco_recall_threshold(int r);   // np.linspace(0, 1, 101)[r]

struct ClassAp {
  std::string name;   // class name, or "any lesion"
  int label = 0;      // 1-based; 0 = all classes merged (class-agnostic)
  int64_t n_gt = 0;   // ground-truth boxes of the class
  int64_t n_det = 0;  // detections that entered AP (after the maxDets cut per image and class)
  bool defined = false;  // false when the class has no ground truth (pycocotools: -1); excluded from means
  double ap50 = 0, ap75 = 0, ap = 0;  // ap = AP@[.5:.95]; NaN when !defined
  double recall50 = 0;                // recall at IoU 0.5 with all detections (maxDets); NaN when !defined
  std::vector<double> precision50;    // 101 interpolated precisions on the recall grid at IoU 0.5
  // At the operating point (score >= threshold, IoU >= match_iou, same class, greedy):
  int64_t tp = 0, fp = 0, fn = 0;
};

// AP for one class (label >= 1) or all classes merged (label == 0), as COCOeval with iouType bbox,
// area "all", maxDets = opt.max_dets, no crowd. Detections must be validated (validate_detections).
ClassAp coco_class_ap(const Dataset& gt, const std::vector<Detection>& dets, int label, const EvalOptions& opt);

// ---- confusion matrix -----------------------------------------------------------------------------
// (K+1) x (K+1), row = true class (index label-1; index K = background: detections that matched nothing),
// column = predicted class (index K = background: lesions no detection matched). Detections with score
// >= threshold, greedy matching by IoU >= match_iou regardless of class, highest score first.
struct ConfusionMatrix {
  int num_classes = 0;
  std::vector<int64_t> counts;  // row-major (K+1)*(K+1)
  int64_t at(int row, int col) const { return counts[size_t(row) * (num_classes + 1) + col]; }
};
ConfusionMatrix confusion_matrix(const Dataset& gt, const std::vector<Detection>& dets, const EvalOptions& opt);

// ---- FROC ------------------------------------------------------------------------------------------
// A lesion is hit at threshold s when a detection (of any class for the class-agnostic curve; of the
// lesion's class for a per-class curve) with score >= s has IoU >= froc_iou with it. A detection with
// score >= s that reaches IoU >= froc_iou with no lesion is a false positive; a second detection on an
// already hit lesion is neither (DeepLesion/LUNA convention). FP rate = FPs / number of images (all images,
// negatives included). Sensitivity at a target rate f = sensitivity at the lowest threshold whose FP
// rate is <= f (no interpolation); 0 when no threshold qualifies.
constexpr int kFrocPoints = 7;
double froc_target(int i);  // 1/8, 1/4, 1/2, 1, 2, 4, 8

struct FrocPoint {
  double threshold = 0, fp_per_image = 0, sensitivity = 0;
};
struct FrocCurve {
  std::string name;  // "any lesion" or a class name
  int label = 0;
  int64_t n_lesions = 0, n_images = 0;
  bool defined = false;             // false when there are no lesions
  std::vector<FrocPoint> curve;     // one point per distinct score, thresholds descending
  double sens_at[kFrocPoints] = {};  // sensitivity at froc_target(i)
  double score = 0;                 // mean of sens_at (CPM); NaN when !defined
  Interval score_ci{};              // patient-bootstrap 95% percentile CI (NaN when not computed)
};
FrocCurve froc(const Dataset& gt, const std::vector<Detection>& dets, int label, const EvalOptions& opt);

// ---- image and patient level -----------------------------------------------------------------------
struct ImageOutcome {
  std::string image_id, patient;
  int n_lesions = 0;
  double max_score = 0;    // highest detection score on the image, 0 when none
  bool marked = false;     // >= 1 detection with score >= threshold
  bool localized = false;  // a marked box has IoU >= localize_iou with a lesion
};

struct PatientOutcome {
  std::string patient;
  int n_slices = 0, n_lesion_slices = 0, n_marked = 0;
  double share_marked = 0, max_score = 0, mean_score = 0;  // mean over slices of the slice max score
  bool pred = false, label = false;
};

struct ClinicalSummary {
  // Images with lesions: success when marked / when localized. Images without lesions: success when not marked.
  Proportion pos_marked, pos_localized, neg_unmarked;
  Proportion success_marked, success_localized;  // over all images
  // Image-level decision "marked" vs truth "has lesions".
  Proportion sensitivity, specificity, accuracy, ppv, npv;
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  // Patient-level decision (patient rule) vs truth "any slice with lesions".
  Proportion patient_sensitivity, patient_specificity, patient_accuracy;
  int64_t patient_tp = 0, patient_fp = 0, patient_tn = 0, patient_fn = 0;
  std::string patient_key;  // "patient_id", "series_id", "image" or "mixed"
};

// Patient of an image: patient_id, else series_id, else the image id itself.
std::string patient_of(const ImageRecord& r);

std::vector<ImageOutcome> image_outcomes(const Dataset& gt, const std::vector<Detection>& dets, const EvalOptions& opt);
std::vector<PatientOutcome> patient_outcomes(const std::vector<ImageOutcome>& images, const EvalOptions& opt);
ClinicalSummary clinical_summary(const Dataset& gt, const std::vector<ImageOutcome>& images,
                                 const std::vector<PatientOutcome>& patients);

// ---- the whole evaluation --------------------------------------------------------------------------
// Throws ctdet::Error naming the detection when it refers to an image id not in gt, a label outside
// 1..K, or has a NaN/infinite score or coordinate.
void validate_detections(const Dataset& gt, const std::vector<Detection>& dets);

struct EvalReport {
  EvalOptions options;
  std::vector<std::string> class_names;
  int64_t n_images = 0, n_lesion_images = 0, n_lesions = 0, n_dets = 0;
  std::vector<ClassAp> per_class;  // one per class, in label order
  ClassAp any;                     // all classes merged
  double map50 = 0, map75 = 0, map = 0;  // means over classes with ground truth (NaN when none)
  ConfusionMatrix confusion;
  FrocCurve froc_any;
  std::vector<FrocCurve> froc_per_class;
  std::vector<ImageOutcome> images;
  std::vector<PatientOutcome> patients;
  ClinicalSummary clinical;
};

EvalReport evaluate(const Dataset& gt, const std::vector<Detection>& dets, const EvalOptions& opt);

// Renderers (strings, so tests can read them) and the writer of all five files.
std::string eval_report_json(const EvalReport& r);
std::string eval_report_markdown(const EvalReport& r);
std::string froc_csv(const EvalReport& r);           // curve,threshold,fp_per_image,sensitivity
std::string patient_level_csv(const EvalReport& r);  // patient_id,n_slices,...,pred,label
std::string pr_curves_csv(const EvalReport& r);      // class,iou,recall,precision
std::string eval_headline(const EvalReport& r);      // the short table `ctdet eval` prints
// Writes eval_report.json, eval_report.md, froc.csv, patient_level.csv, pr_curves.csv into dir
// (created if missing), each atomically; existing files are replaced.
void write_eval_outputs(const EvalReport& r, const std::string& dir);

}  // namespace ctdet
