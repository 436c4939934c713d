#include "train/evaluation.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

Rect rect_of(const Box& b) { return {b.x1, b.y1, b.x2, b.y2}; }
Rect rect_of(const Detection& d) { return {d.x1, d.y1, d.x2, d.y2}; }

double rect_iou(const Rect& a, const Rect& b) { return box_iou(a.x1, a.y1, a.x2, a.y2, b.x1, b.y1, b.x2, b.y2); }

bool label_matches(int box_label, int label) { return label == 0 || box_label == label; }

// Detection indices per image (dataset order), each list in file order. Detections must be validated.
std::vector<std::vector<int>> group_by_image(const Dataset& gt, const std::vector<Detection>& dets) {
  std::unordered_map<std::string, int> index;
  for (size_t i = 0; i < gt.images.size(); ++i) index.emplace(gt.images[i].id, int(i));
  std::vector<std::vector<int>> groups(gt.images.size());
  for (size_t d = 0; d < dets.size(); ++d) {
    auto it = index.find(dets[d].image_id);
    CTDET_CHECK(it != index.end(), "eval: detection ", d, " refers to image id '", dets[d].image_id,
                "' which is not in the ground truth (mismatched files?)");
    groups[it->second].push_back(int(d));
  }
  return groups;
}

// Stable descending order by score: ties keep file order, as numpy's mergesort on -score does.
void sort_by_score(std::vector<int>& idx, const std::vector<Detection>& dets) {
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return dets[a].score > dets[b].score; });
}

std::string label_name(const Dataset& gt, int label) {
  if (label == 0) return "any lesion";
  return size_t(label) <= gt.class_names.size() ? gt.class_names[label - 1] : str("class ", label);
}

// FROC core on pooled per-lesion hit scores (-inf when never hit) and false-positive scores.
void froc_from_scores(std::vector<double> hits, std::vector<double> fps, int64_t n_images, FrocCurve& out,
                      bool keep_curve) {
  const int64_t n_lesions = int64_t(hits.size());
  out.curve.clear();
  for (int i = 0; i < kFrocPoints; ++i) out.sens_at[i] = 0;
  out.defined = n_lesions > 0 && n_images > 0;
  if (!out.defined) {
    out.score = kNaN;
    for (int i = 0; i < kFrocPoints; ++i) out.sens_at[i] = kNaN;
    return;
  }
  std::sort(hits.begin(), hits.end(), std::greater<double>());
  std::sort(fps.begin(), fps.end(), std::greater<double>());
  std::vector<double> thresholds;
  for (double h : hits)
    if (h != kNegInf) thresholds.push_back(h);
  thresholds.insert(thresholds.end(), fps.begin(), fps.end());
  std::sort(thresholds.begin(), thresholds.end(), std::greater<double>());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  size_t ih = 0, jf = 0;
  for (double s : thresholds) {
    while (ih < hits.size() && hits[ih] >= s) ++ih;
    while (jf < fps.size() && fps[jf] >= s) ++jf;
    FrocPoint p{s, double(jf) / double(n_images), double(ih) / double(n_lesions)};
    for (int i = 0; i < kFrocPoints; ++i)
      if (double(jf) <= froc_target(i) * double(n_images)) out.sens_at[i] = p.sensitivity;
    if (keep_curve) out.curve.push_back(p);
  }
  double sum = 0;
  for (int i = 0; i < kFrocPoints; ++i) sum += out.sens_at[i];
  out.score = sum / kFrocPoints;
}

}  // namespace

// ---- small pieces -----------------------------------------------------------------------------------

double parse_patient_rule(const std::string& rule) {
  if (rule == "any") return 0.0;
  const std::string prefix = "fraction:";
  CTDET_CHECK(rule.compare(0, prefix.size(), prefix) == 0, "eval: --patient-rule '", rule,
              "' is neither 'any' nor 'fraction:F'");
  const std::string v = rule.substr(prefix.size());
  char* end = nullptr;
  double f = std::strtod(v.c_str(), &end);
  CTDET_CHECK(!v.empty() && end && *end == '\0' && f > 0 && f <= 1, "eval: --patient-rule fraction '", v,
              "' must be a number in (0, 1]");
  return f;
}

double box_iou(double ax1, double ay1, double ax2, double ay2, double bx1, double by1, double bx2, double by2) {
  // pycocotools bbIou on [x,y,w,h]: overlap width/height, <= 0 means no overlap.
  const double aw = ax2 - ax1, ah = ay2 - ay1, bw = bx2 - bx1, bh = by2 - by1;
  const double w = std::min(ax1 + aw, bx1 + bw) - std::max(ax1, bx1);
  if (w <= 0) return 0;
  const double h = std::min(ay1 + ah, by1 + bh) - std::max(ay1, by1);
  if (h <= 0) return 0;
  const double inter = w * h;
  return inter / (aw * ah + bw * bh - inter);
}

Interval wilson_interval(int64_t k, int64_t n, double z) {
  if (n <= 0) return {kNaN, kNaN};
  const double nn = double(n), p = double(k) / nn, z2 = z * z;
  const double denom = 1 + z2 / nn;
  const double center = (p + z2 / (2 * nn)) / denom;
  const double half = z / denom * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

Proportion make_proportion(int64_t k, int64_t n) {
  Proportion p;
  p.k = k;
  p.n = n;
  p.value = n > 0 ? double(k) / double(n) : kNaN;
  p.ci = wilson_interval(k, n);
  return p;
}

std::vector<int> greedy_match(const std::vector<Rect>& dets, const std::vector<Rect>& gts, double thr) {
  std::vector<int> match(dets.size(), -1);
  std::vector<char> used(gts.size(), 0);
  for (size_t d = 0; d < dets.size(); ++d) {
    double best = std::min(thr, 1 - 1e-10);
    int m = -1;
    for (size_t g = 0; g < gts.size(); ++g) {
      if (used[g]) continue;
      const double iou = rect_iou(dets[d], gts[g]);
      if (iou < best) continue;  // equal IoU: the later ground truth wins, as in COCOeval
      best = iou;
      m = int(g);
    }
    if (m >= 0) {
      used[m] = 1;
      match[d] = m;
    }
  }
  return match;
}

double coco_iou_threshold(int t) {
  // np.linspace(.5, .95, 10): start + i * ((stop - start) / 9), last element set to stop exactly.
  if (t == kCocoIouCount - 1) return 0.95;
  return double(t) * ((0.95 - 0.5) / 9.0) + 0.5;
}

double coco_recall_threshold(int r) {
  if (r == kCocoRecallCount - 1) return 1.0;
  return double(r) * (1.0 / 100.0);
}

double froc_target(int i) {
  static const double kTargets[kFrocPoints] = {0.125, 0.25, 0.5, 1, 2, 4, 8};
  return kTargets[i];
}

std::string patient_of(const ImageRecord& r) {
  if (!r.patient_id.empty()) return r.patient_id;
  if (!r.series_id.empty()) return r.series_id;
  return r.id;
}

// ---- validation -------------------------------------------------------------------------------------

void validate_detections(const Dataset& gt, const std::vector<Detection>& dets) {
  const int K = int(gt.class_names.size());
  std::unordered_map<std::string, int> index;
  for (size_t i = 0; i < gt.images.size(); ++i) {
    const auto& im = gt.images[i];
    CTDET_CHECK(index.emplace(im.id, int(i)).second, "eval: ground truth has image id '", im.id, "' twice");
    for (size_t b = 0; b < im.boxes.size(); ++b) {
      const Box& x = im.boxes[b];
      CTDET_CHECK(x.label >= 1 && x.label <= K, "eval: ground-truth box ", b, " of image '", im.id, "' has label ",
                  x.label, " outside 1..", K);
      CTDET_CHECK(std::isfinite(x.x1) && std::isfinite(x.y1) && std::isfinite(x.x2) && std::isfinite(x.y2) &&
                      x.x2 >= x.x1 && x.y2 >= x.y1,
                  "eval: ground-truth box ", b, " of image '", im.id, "' is invalid (", x.x1, ",", x.y1, ",", x.x2,
                  ",", x.y2, ")");
    }
  }
  for (size_t d = 0; d < dets.size(); ++d) {
    const Detection& x = dets[d];
    CTDET_CHECK(index.count(x.image_id), "eval: detection ", d, " refers to image id '", x.image_id,
                "' which is not in the ground truth (mismatched files?)");
    CTDET_CHECK(x.label >= 1 && x.label <= K, "eval: detection ", d, " on image '", x.image_id, "' has class ",
                x.label, " outside 1..", K, " (class names: ", K, ")");
    CTDET_CHECK(std::isfinite(x.score), "eval: detection ", d, " on image '", x.image_id, "' has score ", x.score);
    CTDET_CHECK(std::isfinite(x.x1) && std::isfinite(x.y1) && std::isfinite(x.x2) && std::isfinite(x.y2) &&
                    x.x2 >= x.x1 && x.y2 >= x.y1,
                "eval: detection ", d, " on image '", x.image_id, "' has an invalid box (", x.x1, ",", x.y1, ",",
                x.x2, ",", x.y2, ")");
  }
}

// ---- COCO AP ----------------------------------------------------------------------------------------

ClassAp coco_class_ap(const Dataset& gt, const std::vector<Detection>& dets, int label, const EvalOptions& opt) {
  ClassAp r;
  r.label = label;
  r.name = label_name(gt, label);
  const auto groups = group_by_image(gt, dets);

  // evaluateImg for every image, in dataset order (pycocotools: sorted image ids).
  std::vector<double> scores;
  std::vector<std::array<char, kCocoIouCount>> matched;
  for (size_t i = 0; i < gt.images.size(); ++i) {
    // Class-agnostic (label 0): pycocotools with useCats=0 lists an image's boxes category by category
    // (then file order), which decides ties; stable-sorting by label reproduces that.
    std::vector<int> gi;
    for (size_t b = 0; b < gt.images[i].boxes.size(); ++b)
      if (label_matches(gt.images[i].boxes[b].label, label)) gi.push_back(int(b));
    std::stable_sort(gi.begin(), gi.end(),
                     [&](int a, int b) { return gt.images[i].boxes[a].label < gt.images[i].boxes[b].label; });
    std::vector<Rect> g;
    for (int b : gi) g.push_back(rect_of(gt.images[i].boxes[b]));
    std::vector<int> di;
    for (int d : groups[i])
      if (label_matches(dets[d].label, label)) di.push_back(d);
    std::stable_sort(di.begin(), di.end(), [&](int a, int b) { return dets[a].label < dets[b].label; });
    sort_by_score(di, dets);

    // Operating point: all detections >= threshold (no maxDets cap), same class, IoU >= match_iou.
    {
      std::vector<Rect> dr;
      for (int d : di)
        if (dets[d].score >= opt.score_threshold) dr.push_back(rect_of(dets[d]));
      const auto m = greedy_match(dr, g, opt.match_iou);
      const int64_t tp = std::count_if(m.begin(), m.end(), [](int x) { return x >= 0; });
      r.tp += tp;
      r.fp += int64_t(dr.size()) - tp;
      r.fn += int64_t(g.size()) - tp;
    }

    if (int(di.size()) > opt.max_dets) di.resize(size_t(opt.max_dets));
    if (g.empty() && di.empty()) continue;
    r.n_gt += int64_t(g.size());
    r.n_det += int64_t(di.size());
    std::vector<Rect> dr;
    for (int d : di) dr.push_back(rect_of(dets[d]));
    std::vector<std::array<char, kCocoIouCount>> mm(di.size());
    for (int t = 0; t < kCocoIouCount; ++t) {
      const auto m = greedy_match(dr, g, coco_iou_threshold(t));
      for (size_t k = 0; k < di.size(); ++k) mm[k][t] = m[k] >= 0;
    }
    for (size_t k = 0; k < di.size(); ++k) {
      scores.push_back(dets[di[k]].score);
      matched.push_back(mm[k]);
    }
  }

  if (r.n_gt == 0) {  // pycocotools leaves precision at -1: undefined, excluded from means
    r.defined = false;
    r.ap50 = r.ap75 = r.ap = r.recall50 = kNaN;
    return r;
  }
  r.defined = true;

  // accumulate(): pool all images, stable sort by descending score.
  std::vector<int> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  const size_t nd = order.size();
  const double eps = std::numeric_limits<double>::epsilon();  // np.spacing(1)
  double ap_sum = 0;
  std::vector<double> rc(nd), pr(nd);
  for (int t = 0; t < kCocoIouCount; ++t) {
    double tp = 0, fp = 0;
    for (size_t k = 0; k < nd; ++k) {
      if (matched[order[k]][t]) tp += 1;
      else fp += 1;
      rc[k] = tp / double(r.n_gt);
      pr[k] = tp / (fp + tp + eps);
    }
    for (size_t k = nd; k-- > 1;)  // precision envelope: make it non-increasing in recall
      if (pr[k] > pr[k - 1]) pr[k - 1] = pr[k];
    std::vector<double> q(kCocoRecallCount, 0.0);
    for (int ri = 0; ri < kCocoRecallCount; ++ri) {
      const size_t pi = size_t(std::lower_bound(rc.begin(), rc.end(), coco_recall_threshold(ri)) - rc.begin());
      if (pi < nd) q[ri] = pr[pi];
    }
    double s = 0;
    for (double v : q) s += v;
    const double ap_t = s / kCocoRecallCount;
    ap_sum += ap_t;
    if (t == 0) {
      r.ap50 = ap_t;
      r.precision50 = q;
      r.recall50 = nd ? rc[nd - 1] : 0.0;
    }
    if (t == 5) r.ap75 = ap_t;
  }
  r.ap = ap_sum / kCocoIouCount;
  return r;
}

// ---- confusion matrix -------------------------------------------------------------------------------

ConfusionMatrix confusion_matrix(const Dataset& gt, const std::vector<Detection>& dets, const EvalOptions& opt) {
  ConfusionMatrix cm;
  const int K = int(gt.class_names.size());
  cm.num_classes = K;
  cm.counts.assign(size_t(K + 1) * (K + 1), 0);
  auto cell = [&](int row, int col) -> int64_t& { return cm.counts[size_t(row) * (K + 1) + col]; };
  const auto groups = group_by_image(gt, dets);
  for (size_t i = 0; i < gt.images.size(); ++i) {
    const auto& boxes = gt.images[i].boxes;
    std::vector<Rect> g;
    for (const Box& b : boxes) g.push_back(rect_of(b));
    std::vector<int> di;
    for (int d : groups[i])
      if (dets[d].score >= opt.score_threshold) di.push_back(d);
    sort_by_score(di, dets);
    std::vector<Rect> dr;
    for (int d : di) dr.push_back(rect_of(dets[d]));
    const auto m = greedy_match(dr, g, opt.match_iou);
    std::vector<char> hit(g.size(), 0);
    for (size_t k = 0; k < di.size(); ++k) {
      const int pred = dets[di[k]].label - 1;
      if (m[k] >= 0) {
        hit[m[k]] = 1;
        cell(boxes[m[k]].label - 1, pred) += 1;
      } else {
        cell(K, pred) += 1;
      }
    }
    for (size_t j = 0; j < g.size(); ++j)
      if (!hit[j]) cell(boxes[j].label - 1, K) += 1;
  }
  return cm;
}

// ---- FROC -------------------------------------------------------------------------------------------

namespace {
// Per image: the best score of a hitting detection for each lesion (-inf: never hit) and FP scores.
struct FrocImage {
  std::vector<double> hits, fps;
};

std::vector<FrocImage> froc_images(const Dataset& gt, const std::vector<Detection>& dets, int label,
                                   const EvalOptions& opt) {
  const auto groups = group_by_image(gt, dets);
  std::vector<FrocImage> out(gt.images.size());
  for (size_t i = 0; i < gt.images.size(); ++i) {
    std::vector<Rect> g;
    for (const Box& b : gt.images[i].boxes)
      if (label_matches(b.label, label)) g.push_back(rect_of(b));
    out[i].hits.assign(g.size(), kNegInf);
    for (int d : groups[i]) {
      if (!label_matches(dets[d].label, label)) continue;
      const Rect r = rect_of(dets[d]);
      bool any = false;
      for (size_t j = 0; j < g.size(); ++j) {
        if (rect_iou(r, g[j]) >= opt.froc_iou) {
          any = true;
          out[i].hits[j] = std::max(out[i].hits[j], double(dets[d].score));
        }
      }
      if (!any) out[i].fps.push_back(dets[d].score);
    }
  }
  return out;
}
}  // namespace

FrocCurve froc(const Dataset& gt, const std::vector<Detection>& dets, int label, const EvalOptions& opt) {
  FrocCurve c;
  c.label = label;
  c.name = label_name(gt, label);
  c.n_images = int64_t(gt.images.size());
  c.score_ci = {kNaN, kNaN};
  const auto per_image = froc_images(gt, dets, label, opt);
  std::vector<double> hits, fps;
  for (const auto& f : per_image) {
    hits.insert(hits.end(), f.hits.begin(), f.hits.end());
    fps.insert(fps.end(), f.fps.begin(), f.fps.end());
  }
  c.n_lesions = int64_t(hits.size());
  froc_from_scores(hits, fps, c.n_images, c, true);

  if (opt.bootstrap > 0 && c.defined) {
    // Resample patients with replacement; each draw keeps all slices of the patient.
    std::map<std::string, std::vector<int>> by_patient;
    for (size_t i = 0; i < gt.images.size(); ++i) by_patient[patient_of(gt.images[i])].push_back(int(i));
    std::vector<const std::vector<int>*> patients;
    for (auto& kv : by_patient) patients.push_back(&kv.second);
    std::mt19937_64 rng(opt.seed);
    std::uniform_int_distribution<size_t> pick(0, patients.size() - 1);
    std::vector<double> stats;
    FrocCurve tmp;
    for (int b = 0; b < opt.bootstrap; ++b) {
      std::vector<double> bh, bf;
      int64_t n_img = 0;
      for (size_t p = 0; p < patients.size(); ++p) {
        for (int i : *patients[pick(rng)]) {
          bh.insert(bh.end(), per_image[i].hits.begin(), per_image[i].hits.end());
          bf.insert(bf.end(), per_image[i].fps.begin(), per_image[i].fps.end());
          ++n_img;
        }
      }
      froc_from_scores(bh, bf, n_img, tmp, false);
      if (tmp.defined) stats.push_back(tmp.score);
    }
    if (!stats.empty()) {
      std::sort(stats.begin(), stats.end());
      auto pct = [&](double q) {
        const double pos = q * double(stats.size() - 1);
        const size_t lo = size_t(std::floor(pos)), hi = std::min(stats.size() - 1, lo + 1);
        return stats[lo] + (pos - double(lo)) * (stats[hi] - stats[lo]);
      };
      c.score_ci = {pct(0.025), pct(0.975)};
    }
  }
  return c;
}

// ---- image and patient level ------------------------------------------------------------------------

std::vector<ImageOutcome> image_outcomes(const Dataset& gt, const std::vector<Detection>& dets,
                                         const EvalOptions& opt) {
  const auto groups = group_by_image(gt, dets);
  std::vector<ImageOutcome> out(gt.images.size());
  for (size_t i = 0; i < gt.images.size(); ++i) {
    const auto& im = gt.images[i];
    ImageOutcome& o = out[i];
    o.image_id = im.id;
    o.patient = patient_of(im);
    o.n_lesions = int(im.boxes.size());
    for (int d : groups[i]) {
      const Detection& x = dets[d];
      o.max_score = std::max(o.max_score, double(x.score));
      if (x.score < opt.score_threshold) continue;
      o.marked = true;
      for (const Box& b : im.boxes)
        if (box_iou(x.x1, x.y1, x.x2, x.y2, b.x1, b.y1, b.x2, b.y2) >= opt.localize_iou) o.localized = true;
    }
  }
  return out;
}

std::vector<PatientOutcome> patient_outcomes(const std::vector<ImageOutcome>& images, const EvalOptions& opt) {
  std::vector<PatientOutcome> out;
  std::unordered_map<std::string, size_t> index;
  for (const auto& im : images) {
    auto it = index.find(im.patient);
    if (it == index.end()) {
      it = index.emplace(im.patient, out.size()).first;
      out.push_back({});
      out.back().patient = im.patient;
    }
    PatientOutcome& p = out[it->second];
    p.n_slices += 1;
    p.n_lesion_slices += im.n_lesions > 0;
    p.n_marked += im.marked;
    p.max_score = std::max(p.max_score, im.max_score);
    p.mean_score += im.max_score;
  }
  for (auto& p : out) {
    p.share_marked = double(p.n_marked) / double(p.n_slices);
    p.mean_score /= double(p.n_slices);
    p.pred = p.n_marked > 0 && p.share_marked >= opt.patient_fraction;
    p.label = p.n_lesion_slices > 0;
  }
  return out;
}

ClinicalSummary clinical_summary(const Dataset& gt, const std::vector<ImageOutcome>& images,
                                 const std::vector<PatientOutcome>& patients) {
  ClinicalSummary s;
  int64_t n_pos = 0, n_neg = 0, pos_marked = 0, pos_loc = 0, neg_unmarked = 0;
  for (const auto& im : images) {
    if (im.n_lesions > 0) {
      ++n_pos;
      pos_marked += im.marked;
      pos_loc += im.localized;
    } else {
      ++n_neg;
      neg_unmarked += !im.marked;
    }
  }
  const int64_t n = n_pos + n_neg;
  s.pos_marked = make_proportion(pos_marked, n_pos);
  s.pos_localized = make_proportion(pos_loc, n_pos);
  s.neg_unmarked = make_proportion(neg_unmarked, n_neg);
  s.success_marked = make_proportion(pos_marked + neg_unmarked, n);
  s.success_localized = make_proportion(pos_loc + neg_unmarked, n);
  s.tp = pos_marked;
  s.fn = n_pos - pos_marked;
  s.tn = neg_unmarked;
  s.fp = n_neg - neg_unmarked;
  s.sensitivity = make_proportion(s.tp, s.tp + s.fn);
  s.specificity = make_proportion(s.tn, s.tn + s.fp);
  s.accuracy = make_proportion(s.tp + s.tn, n);
  s.ppv = make_proportion(s.tp, s.tp + s.fp);
  s.npv = make_proportion(s.tn, s.tn + s.fn);
  for (const auto& p : patients) {
    if (p.label) (p.pred ? s.patient_tp : s.patient_fn) += 1;
    else (p.pred ? s.patient_fp : s.patient_tn) += 1;
  }
  s.patient_sensitivity = make_proportion(s.patient_tp, s.patient_tp + s.patient_fn);
  s.patient_specificity = make_proportion(s.patient_tn, s.patient_tn + s.patient_fp);
  s.patient_accuracy = make_proportion(s.patient_tp + s.patient_tn, int64_t(patients.size()));
  bool all_pid = true, any_pid = false, all_sid = true, any_sid = false;
  for (const auto& im : gt.images) {
    all_pid &= !im.patient_id.empty();
    any_pid |= !im.patient_id.empty();
    all_sid &= !im.series_id.empty();
    any_sid |= !im.series_id.empty();
  }
  if (gt.images.empty() || all_pid) s.patient_key = "patient_id";
  else if (!any_pid && all_sid) s.patient_key = "series_id";
  else if (!any_pid && !any_sid) s.patient_key = "image";
  else s.patient_key = "mixed (patient_id, else series_id, else image id)";
  return s;
}

// ---- the whole evaluation ---------------------------------------------------------------------------

EvalReport evaluate(const Dataset& gt, const std::vector<Detection>& dets, const EvalOptions& opt) {
  CTDET_CHECK(!gt.class_names.empty(), "eval: the ground truth has no class names");
  CTDET_CHECK(opt.max_dets > 0, "eval: max_dets must be positive, got ", opt.max_dets);
  CTDET_CHECK(std::isfinite(opt.score_threshold), "eval: score threshold is ", opt.score_threshold);
  CTDET_CHECK(opt.patient_fraction >= 0 && opt.patient_fraction <= 1, "eval: patient fraction ",
              opt.patient_fraction, " outside [0, 1]");
  validate_detections(gt, dets);
  EvalReport r;
  r.options = opt;
  r.class_names = gt.class_names;
  r.n_images = int64_t(gt.images.size());
  r.n_dets = int64_t(dets.size());
  for (const auto& im : gt.images) {
    r.n_lesion_images += !im.boxes.empty();
    r.n_lesions += int64_t(im.boxes.size());
  }
  const int K = int(gt.class_names.size());
  double s50 = 0, s75 = 0, s = 0;
  int n_def = 0;
  for (int c = 1; c <= K; ++c) {
    r.per_class.push_back(coco_class_ap(gt, dets, c, opt));
    const ClassAp& a = r.per_class.back();
    if (a.defined) {
      s50 += a.ap50;
      s75 += a.ap75;
      s += a.ap;
      ++n_def;
    }
  }
  r.map50 = n_def ? s50 / n_def : kNaN;
  r.map75 = n_def ? s75 / n_def : kNaN;
  r.map = n_def ? s / n_def : kNaN;
  r.any = coco_class_ap(gt, dets, 0, opt);
  r.confusion = confusion_matrix(gt, dets, opt);
  r.froc_any = froc(gt, dets, 0, opt);
  EvalOptions no_boot = opt;
  no_boot.bootstrap = 0;
  for (int c = 1; c <= K; ++c) r.froc_per_class.push_back(froc(gt, dets, c, no_boot));
  r.images = image_outcomes(gt, dets, opt);
  r.patients = patient_outcomes(r.images, opt);
  r.clinical = clinical_summary(gt, r.images, r.patients);
  return r;
}

// ---- renderers --------------------------------------------------------------------------------------

namespace {
using nlohmann::json;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json prop_json(const Proportion& p) {
  return {{"k", p.k}, {"n", p.n}, {"value", num(p.value)}, {"ci95", {num(p.ci.lo), num(p.ci.hi)}}};
}

json ap_json(const ClassAp& a) {
  return {{"class", a.name},       {"label", a.label},   {"n_gt", a.n_gt}, {"n_det", a.n_det},
          {"defined", a.defined},  {"ap50", num(a.ap50)}, {"ap75", num(a.ap75)}, {"ap", num(a.ap)},
          {"recall50", num(a.recall50)}, {"tp", a.tp},   {"fp", a.fp},     {"fn", a.fn}};
}

json froc_json(const FrocCurve& c) {
  json pts = json::array();
  for (int i = 0; i < kFrocPoints; ++i) pts.push_back({{"fp_per_image", froc_target(i)}, {"sensitivity", num(c.sens_at[i])}});
  return {{"curve", c.name},       {"label", c.label},        {"n_lesions", c.n_lesions},
          {"n_images", c.n_images}, {"score", num(c.score)}, {"score_ci95", {num(c.score_ci.lo), num(c.score_ci.hi)}},
          {"points", pts}};
}

std::string fmt(double v, int digits = 4) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string fmt_prop(const Proportion& p) {
  if (p.n == 0) return "n/a (0/0)";
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%.1f%% (%lld/%lld; 95%% CI %.1f-%.1f%%)", 100 * p.value, (long long)p.k,
                (long long)p.n, 100 * p.ci.lo, 100 * p.ci.hi);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

std::string fmt_g(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// The definitions, written once and used by both the JSON and the Markdown report.
std::vector<std::pair<std::string, std::string>> definitions(const EvalOptions& o) {
  const std::string thr = fmt_g(o.score_threshold);
  return {
      {"ap", "COCO-style average precision as pycocotools COCOeval computes it (iouType bbox, area all, maxDets " +
                 std::to_string(o.max_dets) +
                 " per image and class, no crowd): detections per image in descending score order are greedily "
                 "matched to the unmatched ground-truth box of the same class with the highest IoU >= t (IoU of "
                 "[x,y,w,h] boxes without +1); precision is made non-increasing in recall and read at the 101 "
                 "recall points 0, 0.01, ..., 1 (0 beyond the highest recall reached); AP is the mean of those 101 "
                 "values. AP50: t = 0.5; AP75: t = 0.75; AP: mean over t = 0.50, 0.55, ..., 0.95."},
      {"map", "Mean of the per-class AP over the classes that have ground truth; a class without ground truth has "
              "undefined AP (null; pycocotools -1) and is left out of the mean."},
      {"any_lesion_ap", "The same AP with all classes merged into one 'lesion' class (a detection of any class may "
                        "match a lesion of any class)."},
      {"tp_fp_fn", "At the operating point: detections with score >= " + thr +
                       ", greedily matched (highest score first) to same-class lesions with IoU >= " +
                       fmt_g(o.match_iou) + "; TP = matched detections, FP = unmatched detections, FN = unmatched lesions."},
      {"confusion_matrix", "Detections with score >= " + thr + " matched greedily (highest score first) to lesions "
                           "of ANY class with IoU >= " + fmt_g(o.match_iou) +
                           "; rows = true class, columns = predicted class. Row 'background' counts detections that "
                           "matched no lesion; column 'background' counts lesions no detection matched."},
      {"marked", "An image is marked when at least one detection of any class has score >= " + thr + "."},
      {"localized", "An image with lesions is localized when one of its marked boxes (score >= " + thr +
                        ") has IoU >= " + fmt_g(o.localize_iou) +
                        " with one of its lesions (any class; a loose criterion because lesion borders, GGO "
                        "especially, are fuzzy)."},
      {"image_success", "Image with lesions: success when marked (detection) or when localized (localization). "
                        "Image without lesions: success when not marked. Success rates are shares of images with "
                        "Wilson score 95% intervals."},
      {"image_decision", "Image-level decision = marked; truth = image has >= 1 lesion. Sensitivity = TP/(TP+FN), "
                         "specificity = TN/(TN+FP), accuracy = (TP+TN)/N, PPV = TP/(TP+FP), NPV = TN/(TN+FN), each "
                         "with a Wilson score 95% interval."},
      {"patient", "Patient = ImageRecord patient_id, else series_id, else the image itself. Share marked = marked "
                  "slices / slices. Patient decision positive when at least one slice is marked and the share "
                  "marked is >= " + fmt_g(o.patient_fraction) +
                  (o.patient_fraction == 0 ? " (rule 'any slice marked')" : "") +
                  "; truth positive when any slice has a lesion. Max score = highest detection score on any slice; "
                  "mean score = mean over slices of each slice's highest score (0 for a slice without detections)."},
      {"froc", "Lesion-level FROC: a lesion is hit at threshold s when a detection of any class with score >= s has "
               "IoU >= " + fmt_g(o.froc_iou) +
               " with it; a detection with score >= s that reaches that IoU with no lesion is a false positive "
               "(further detections on an already hit lesion are neither). FP per image = FPs / all images "
               "(lesion-free images included). Sensitivity at a target rate f is the sensitivity at the lowest "
               "threshold whose FP rate is <= f (no interpolation; 0 when none qualifies). FROC score (CPM) = mean "
               "sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 FP per image. Per-class curves use detections and lesions "
               "of that class only. The 95% CI (when computed) is the percentile interval of a bootstrap that "
               "resamples patients with replacement."},
  };
}
}  // namespace

std::string eval_report_json(const EvalReport& r) {
  const auto& o = r.options;
  json j;
  json defs = json::object();
  for (auto& [k, v] : definitions(o)) defs[k] = v;
  j["definitions"] = defs;
  j["options"] = {{"score_threshold", o.score_threshold}, {"match_iou", o.match_iou},
                  {"localize_iou", o.localize_iou},       {"froc_iou", o.froc_iou},
                  {"max_dets", o.max_dets},               {"patient_fraction", o.patient_fraction},
                  {"bootstrap", o.bootstrap},             {"seed", o.seed}};
  j["counts"] = {{"images", r.n_images}, {"lesion_images", r.n_lesion_images}, {"lesions", r.n_lesions},
                 {"detections", r.n_dets}, {"patients", int64_t(r.patients.size())}};
  json pc = json::array();
  int n_def = 0;
  for (const auto& a : r.per_class) {
    pc.push_back(ap_json(a));
    n_def += a.defined;
  }
  j["ap"] = {{"method", "COCO 101-point interpolated AP (pycocotools COCOeval, bbox)"},
             {"per_class", pc},
             {"any_lesion", ap_json(r.any)},
             {"mean", {{"ap50", num(r.map50)}, {"ap75", num(r.map75)}, {"ap", num(r.map)}, {"classes_in_mean", n_def}}}};
  json labels = r.class_names;
  labels.push_back("background");
  json rows = json::array();
  for (int i = 0; i <= r.confusion.num_classes; ++i) {
    json row = json::array();
    for (int c = 0; c <= r.confusion.num_classes; ++c) row.push_back(r.confusion.at(i, c));
    rows.push_back(row);
  }
  j["confusion_matrix"] = {{"labels", labels}, {"rows", "true class"}, {"columns", "predicted class"},
                           {"counts", rows}};
  const auto& c = r.clinical;
  j["image_level"] = {{"positive_images_marked", prop_json(c.pos_marked)},
                      {"positive_images_localized", prop_json(c.pos_localized)},
                      {"negative_images_not_marked", prop_json(c.neg_unmarked)},
                      {"success_rate_marked", prop_json(c.success_marked)},
                      {"success_rate_localized", prop_json(c.success_localized)},
                      {"sensitivity", prop_json(c.sensitivity)},
                      {"specificity", prop_json(c.specificity)},
                      {"accuracy", prop_json(c.accuracy)},
                      {"ppv", prop_json(c.ppv)},
                      {"npv", prop_json(c.npv)},
                      {"tp", c.tp}, {"fp", c.fp}, {"tn", c.tn}, {"fn", c.fn}};
  j["patient_level"] = {{"patient_key", c.patient_key},
                        {"rule", o.patient_fraction == 0 ? std::string("any") : "fraction:" + fmt_g(o.patient_fraction)},
                        {"patients", int64_t(r.patients.size())},
                        {"sensitivity", prop_json(c.patient_sensitivity)},
                        {"specificity", prop_json(c.patient_specificity)},
                        {"accuracy", prop_json(c.patient_accuracy)},
                        {"tp", c.patient_tp}, {"fp", c.patient_fp}, {"tn", c.patient_tn}, {"fn", c.patient_fn}};
  json fr = json::array();
  for (const auto& f : r.froc_per_class) fr.push_back(froc_json(f));
  j["froc"] = {{"any_lesion", froc_json(r.froc_any)}, {"per_class", fr}};
  return j.dump(2) + "\n";
}

std::string eval_report_markdown(const EvalReport& r) {
  const auto& o = r.options;
  const auto defs = definitions(o);
  auto def = [&](const std::string& k) {
    for (auto& [a, b] : defs)
      if (a == k) return b;
    return std::string();
  };
  std::string m = "# ctdet evaluation report\n\n";
  m += str(r.n_images, " images (", r.n_lesion_images, " with lesions, ", r.n_images - r.n_lesion_images,
           " without), ", r.n_lesions, " lesions, ", r.n_dets, " detections, ", r.patients.size(),
           " patients. Operating point: score >= ", fmt_g(o.score_threshold), ".\n\n");
  m += "## Average precision\n\n" + def("ap") + " " + def("map") + " " + def("any_lesion_ap") + " " +
       def("tp_fp_fn") + "\n\n";
  m += "| class | GT | dets | AP50 | AP75 | AP[.5:.95] | recall@0.5 | TP | FP | FN |\n";
  m += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  auto row = [&](const ClassAp& a) {
    m += str("| ", a.name, " | ", a.n_gt, " | ", a.n_det, " | ", fmt(a.ap50), " | ", fmt(a.ap75), " | ", fmt(a.ap),
             " | ", fmt(a.recall50), " | ", a.tp, " | ", a.fp, " | ", a.fn, " |\n");
  };
  for (const auto& a : r.per_class) row(a);
  m += str("| **mean** | | | ", fmt(r.map50), " | ", fmt(r.map75), " | ", fmt(r.map), " | | | | |\n");
  row(r.any);
  m += "\n## Confusion matrix\n\n" + def("confusion_matrix") + "\n\n| true \\ predicted |";
  const int K = r.confusion.num_classes;
  std::vector<std::string> names = r.class_names;
  names.push_back("background");
  for (auto& n : names) m += " " + n + " |";
  m += "\n|---|";
  for (int c = 0; c <= K; ++c) m += "---:|";
  m += "\n";
  for (int i = 0; i <= K; ++i) {
    m += "| " + names[i] + " |";
    for (int c = 0; c <= K; ++c) m += str(" ", (i == K && c == K) ? std::string("-") : std::to_string(r.confusion.at(i, c)), " |");
    m += "\n";
  }
  const auto& c = r.clinical;
  m += "\n## Image level\n\n" + def("marked") + " " + def("localized") + " " + def("image_success") + " " +
       def("image_decision") + "\n\n| measure | value |\n|---|---|\n";
  m += "| images with lesions: marked | " + fmt_prop(c.pos_marked) + " |\n";
  m += "| images with lesions: localized | " + fmt_prop(c.pos_localized) + " |\n";
  m += "| images without lesions: not marked | " + fmt_prop(c.neg_unmarked) + " |\n";
  m += "| success rate (marked / not marked) | " + fmt_prop(c.success_marked) + " |\n";
  m += "| success rate (localized / not marked) | " + fmt_prop(c.success_localized) + " |\n";
  m += "| sensitivity | " + fmt_prop(c.sensitivity) + " |\n";
  m += "| specificity | " + fmt_prop(c.specificity) + " |\n";
  m += "| accuracy | " + fmt_prop(c.accuracy) + " |\n";
  m += "| PPV | " + fmt_prop(c.ppv) + " |\n";
  m += "| NPV | " + fmt_prop(c.npv) + " |\n";
  m += str("\nTP ", c.tp, ", FP ", c.fp, ", TN ", c.tn, ", FN ", c.fn, ".\n");
  m += "\n## Patient level\n\n" + def("patient") + " Patients keyed by: " + c.patient_key +
       ". Per-patient rows are in patient_level.csv.\n\n| measure | value |\n|---|---|\n";
  m += "| sensitivity | " + fmt_prop(c.patient_sensitivity) + " |\n";
  m += "| specificity | " + fmt_prop(c.patient_specificity) + " |\n";
  m += "| accuracy | " + fmt_prop(c.patient_accuracy) + " |\n";
  m += str("\nTP ", c.patient_tp, ", FP ", c.patient_fp, ", TN ", c.patient_tn, ", FN ", c.patient_fn, ".\n");
  m += "\n## FROC\n\n" + def("froc") + "\n\n| curve | lesions | 1/8 | 1/4 | 1/2 | 1 | 2 | 4 | 8 | FROC score |\n";
  m += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  auto frow = [&](const FrocCurve& f) {
    m += str("| ", f.name, " | ", f.n_lesions, " |");
    for (int i = 0; i < kFrocPoints; ++i) m += " " + fmt(f.sens_at[i], 3) + " |";
    m += " " + fmt(f.score);
    if (std::isfinite(f.score_ci.lo)) m += " (95% CI " + fmt(f.score_ci.lo) + "-" + fmt(f.score_ci.hi) + ")";
    m += " |\n";
  };
  frow(r.froc_any);
  for (const auto& f : r.froc_per_class) frow(f);
  m += "\nThe full curves are in froc.csv; precision-recall curves (IoU 0.5) in pr_curves.csv.\n";
  return m;
}

std::string froc_csv(const EvalReport& r) {
  std::string s = "curve,threshold,fp_per_image,sensitivity\n";
  auto add = [&](const FrocCurve& f) {
    for (const auto& p : f.curve)
      s += csv_field(f.name) + "," + fmt_g(p.threshold) + "," + fmt_g(p.fp_per_image) + "," + fmt_g(p.sensitivity) + "\n";
  };
  add(r.froc_any);
  for (const auto& f : r.froc_per_class) add(f);
  return s;
}

std::string patient_level_csv(const EvalReport& r) {
  std::string s = "patient_id,n_slices,n_lesion_slices,n_marked,share_marked,max_score,mean_score,pred,label\n";
  for (const auto& p : r.patients)
    s += str(csv_field(p.patient), ",", p.n_slices, ",", p.n_lesion_slices, ",", p.n_marked, ",", fmt_g(p.share_marked),
             ",", fmt_g(p.max_score), ",", fmt_g(p.mean_score), ",", int(p.pred), ",", int(p.label), "\n");
  return s;
}

std::string pr_curves_csv(const EvalReport& r) {
  std::string s = "class,iou,recall,precision\n";
  auto add = [&](const ClassAp& a) {
    if (!a.defined) return;
    for (int i = 0; i < kCocoRecallCount; ++i)
      s += csv_field(a.name) + ",0.5," + fmt_g(coco_recall_threshold(i)) + "," + fmt_g(a.precision50[i]) + "\n";
  };
  for (const auto& a : r.per_class) add(a);
  add(r.any);
  return s;
}

std::string eval_headline(const EvalReport& r) {
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-12s %6s %6s %8s %8s %8s %6s %6s %6s\n", "class", "GT", "dets", "AP50", "AP75",
                "AP", "TP", "FP", "FN");
  s += buf;
  auto line = [&](const ClassAp& a) {
    std::snprintf(buf, sizeof(buf), "%-12s %6lld %6lld %8s %8s %8s %6lld %6lld %6lld\n", a.name.c_str(),
                  (long long)a.n_gt, (long long)a.n_det, fmt(a.ap50).c_str(), fmt(a.ap75).c_str(), fmt(a.ap).c_str(),
                  (long long)a.tp, (long long)a.fp, (long long)a.fn);
    s += buf;
  };
  for (const auto& a : r.per_class) line(a);
  std::snprintf(buf, sizeof(buf), "%-12s %6s %6s %8s %8s %8s\n", "mean", "", "", fmt(r.map50).c_str(),
                fmt(r.map75).c_str(), fmt(r.map).c_str());
  s += buf;
  line(r.any);
  const auto& c = r.clinical;
  s += "image level (score >= " + fmt_g(r.options.score_threshold) + "): sensitivity " + fmt_prop(c.sensitivity) +
       ", specificity " + fmt_prop(c.specificity) + ", localized " + fmt_prop(c.pos_localized) + "\n";
  s += "patient level: sensitivity " + fmt_prop(c.patient_sensitivity) + ", specificity " +
       fmt_prop(c.patient_specificity) + "\n";
  s += "FROC score (any lesion): " + fmt(r.froc_any.score);
  if (std::isfinite(r.froc_any.score_ci.lo))
    s += " (95% CI " + fmt(r.froc_any.score_ci.lo) + "-" + fmt(r.froc_any.score_ci.hi) + ")";
  s += "\n";
  return s;
}

void write_eval_outputs(const EvalReport& r, const std::string& dir) {
  CTDET_CHECK(!dir.empty(), "eval: empty output directory");
  // mkdir -p
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') {
      const std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST)
        CTDET_FAIL("eval: cannot create directory '", part, "': ", std::strerror(errno));
    }
  }
  struct stat st;
  CTDET_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "eval: '", dir, "' is not a directory");
  const std::string base = dir.back() == '/' ? dir : dir + "/";
  write_file_atomic(base + "eval_report.json", eval_report_json(r));
  write_file_atomic(base + "eval_report.md", eval_report_markdown(r));
  write_file_atomic(base + "froc.csv", froc_csv(r));
  write_file_atomic(base + "patient_level.csv", patient_level_csv(r));
  write_file_atomic(base + "pr_curves.csv", pr_curves_csv(r));
}

}  // namespace ctdet
