// Evaluation: COCO AP against hand computations and against pycocotools (fixtures made by
// scripts/check_ap_pycocotools.py), confusion matrix, image/patient measures, Wilson intervals, FROC,
// detection file I/O and the error paths.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/coco.h"
#include "nn/error.h"
#include "test_util.h"
#include "train/detections_io.h"
#include "train/evaluation.h"

using namespace ctdet;

namespace {

Box box(float x1, float y1, float x2, float y2, int label) {
  Box b;
  b.x1 = x1, b.y1 = y1, b.x2 = x2, b.y2 = y2, b.label = label;
  return b;
}

Detection det(const std::string& image, int label, float score, float x1, float y1, float x2, float y2) {
  Detection d;
  d.image_id = image, d.label = label, d.score = score, d.x1 = x1, d.y1 = y1, d.x2 = x2, d.y2 = y2;
  return d;
}

ImageRecord image(const std::string& id, std::vector<Box> boxes, const std::string& patient = "") {
  ImageRecord r;
  r.id = id;
  r.file = id;
  r.width = r.height = 100;
  r.boxes = std::move(boxes);
  r.patient_id = patient;
  return r;
}

Dataset dataset(std::vector<ImageRecord> images) {
  Dataset ds;
  ds.class_names = default_class_names();
  ds.images = std::move(images);
  return ds;
}

void expect_near_printed(const std::string& what, double got, double want, double tol) {
  const double err = std::abs(got - want);
  std::printf("[err] %-48s got=%.9f want=%.9f abs=%.3e\n", what.c_str(), got, want, err);
  EXPECT_LE(err, tol) << what;
}

// Expect a ctdet::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected ctdet::Error containing '" << needle << "'";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Evaluation, IouMatchesPycocotoolsConvention) {
  // [0,0,10,10] vs [5,5,15,15]: overlap 5x5 = 25, union 100+100-25 = 175 (no +1 on widths).
  expect_near_printed("iou half-overlap", box_iou(0, 0, 10, 10, 5, 5, 15, 15), 25.0 / 175.0, 1e-12);
  EXPECT_EQ(box_iou(0, 0, 10, 10, 10, 0, 20, 10), 0.0);  // touching edges: no overlap
  expect_near_printed("iou 100/120", box_iou(20, 20, 30, 30, 20, 20, 30, 32), 100.0 / 120.0, 1e-12);
}

TEST(Evaluation, HandComputedAp) {
  // One image, two GGO lesions A=[0,0,10,10], B=[20,20,30,30]. GGO detections in score order:
  //   d1 0.9 = A exactly (IoU 1) -> TP;  d2 0.8 far away -> FP;  d3 0.7 = [20,20,30,32], IoU(B) = 100/120.
  // IoU thresholds 0.50..0.80 (7 of 10): TP,FP,TP -> recall .5,.5,1; precision 1,.5,2/3; envelope 1,2/3,2/3.
  //   recall points 0..0.50 (51) read 1, points 0.51..1 (50) read 2/3: AP_t = (51 + 50*2/3)/101.
  // Thresholds 0.85, 0.90, 0.95: d3 is a FP -> recall stops at .5: AP_t = 51/101.
  Dataset ds = dataset({image("a", {box(0, 0, 10, 10, 1), box(20, 20, 30, 30, 1)})});
  std::vector<Detection> dets = {det("a", 1, 0.9f, 0, 0, 10, 10), det("a", 1, 0.8f, 50, 50, 60, 60),
                                 det("a", 1, 0.7f, 20, 20, 30, 32),
                                 det("a", 2, 0.6f, 0, 0, 10, 10)};  // class CD: has no ground truth
  EvalOptions opt;
  const double hi = (51.0 + 50.0 * 2.0 / 3.0) / 101.0, lo = 51.0 / 101.0;
  ClassAp a = coco_class_ap(ds, dets, 1, opt);
  ASSERT_TRUE(a.defined);
  expect_near_printed("AP50 hand", a.ap50, hi, 1e-12);
  expect_near_printed("AP75 hand", a.ap75, hi, 1e-12);
  expect_near_printed("AP[.5:.95] hand", a.ap, (7 * hi + 3 * lo) / 10, 1e-12);
  expect_near_printed("recall@0.5", a.recall50, 1.0, 1e-12);
  ASSERT_EQ(a.precision50.size(), size_t(kCocoRecallCount));
  EXPECT_DOUBLE_EQ(a.precision50[50], 1.0);
  EXPECT_DOUBLE_EQ(a.precision50[51], 2.0 / 3.0);
  // Operating point 0.5: TP 2 (d1, d3), FP 1 (d2), FN 0.
  EXPECT_EQ(a.tp, 2);
  EXPECT_EQ(a.fp, 1);
  EXPECT_EQ(a.fn, 0);

  // CD has detections but no ground truth, GGO+CD has neither: both undefined, left out of the mean.
  EvalReport r = evaluate(ds, dets, opt);
  EXPECT_FALSE(r.per_class[1].defined);
  EXPECT_TRUE(std::isnan(r.per_class[1].ap50));
  EXPECT_FALSE(r.per_class[2].defined);
  expect_near_printed("mAP50 = GGO only", r.map50, hi, 1e-12);
  // Any lesion: the CD box on A (0.6) is a duplicate of d1 -> FP at rank 4: recall .5,.5,1,1 precision
  // 1,.5,2/3,.5 -> same envelope at the 101 points as above for t <= 0.8.
  expect_near_printed("any-lesion AP50", r.any.ap50, hi, 1e-12);
  // The report JSON writes undefined APs as null.
  auto j = nlohmann::json::parse(eval_report_json(r));
  EXPECT_TRUE(j["ap"]["per_class"][1]["ap50"].is_null());
  EXPECT_EQ(j["ap"]["mean"]["classes_in_mean"].get<int>(), 1);
}

TEST(Evaluation, MaxDetsAndTies) {
  // Ties keep file order (numpy mergesort): the first of two equal-score detections is ranked first.
  // GT A; dets e1 (0.5, FP) then e2 (0.5, TP). Ranked FP, TP: precision .5 at recall 1 -> AP = 0.5.
  Dataset ds = dataset({image("a", {box(0, 0, 10, 10, 1)})});
  std::vector<Detection> dets = {det("a", 1, 0.5f, 50, 50, 60, 60), det("a", 1, 0.5f, 0, 0, 10, 10)};
  EvalOptions opt;
  expect_near_printed("tie, FP first", coco_class_ap(ds, dets, 1, opt).ap50, 0.5, 1e-12);
  std::swap(dets[0], dets[1]);
  expect_near_printed("tie, TP first", coco_class_ap(ds, dets, 1, opt).ap50, 1.0, 1e-12);
  // maxDets = 1: only the best detection per image and class counts; here that is the FP.
  dets = {det("a", 1, 0.9f, 50, 50, 60, 60), det("a", 1, 0.8f, 0, 0, 10, 10)};
  opt.max_dets = 1;
  expect_near_printed("maxDets 1", coco_class_ap(ds, dets, 1, opt).ap50, 0.0, 1e-12);
  opt.max_dets = 2;  // both: FP, TP -> precision 1/2 at recall 1
  expect_near_printed("maxDets 2", coco_class_ap(ds, dets, 1, opt).ap50, 0.5, 1e-12);
}

TEST(Evaluation, EmptyPredictionsAndNegativeImages) {
  Dataset ds = dataset({image("a", {box(0, 0, 10, 10, 1)}), image("b", {}), image("c", {})});
  EvalOptions opt;
  EvalReport r = evaluate(ds, {}, opt);
  EXPECT_TRUE(r.per_class[0].defined);
  EXPECT_EQ(r.per_class[0].ap50, 0.0);
  EXPECT_EQ(r.per_class[0].fn, 1);
  EXPECT_EQ(r.map50, 0.0);
  EXPECT_EQ(r.confusion.at(0, 3), 1);  // the GGO lesion missed -> background column
  EXPECT_TRUE(r.froc_any.defined);
  EXPECT_EQ(r.froc_any.score, 0.0);
  EXPECT_EQ(r.clinical.sensitivity.value, 0.0);
  EXPECT_EQ(r.clinical.specificity.value, 1.0);
  // No lesions anywhere: every AP and the FROC score are undefined, the means too.
  Dataset neg = dataset({image("b", {}), image("c", {})});
  EvalReport rn = evaluate(neg, {det("b", 1, 0.9f, 0, 0, 5, 5)}, opt);
  EXPECT_TRUE(std::isnan(rn.map50));
  EXPECT_FALSE(rn.froc_any.defined);
  EXPECT_TRUE(std::isnan(rn.clinical.sensitivity.value));
  EXPECT_EQ(rn.clinical.specificity.k, 1);  // c unmarked, b marked
  EXPECT_EQ(rn.confusion.at(3, 0), 1);      // the detection is a background row entry
  // All renderers cope with undefined values.
  EXPECT_NE(eval_report_markdown(rn).find("n/a"), std::string::npos);
  EXPECT_NO_THROW(nlohmann::json::parse(eval_report_json(rn)));
}

TEST(Evaluation, ConfusionMatrixWithBackground) {
  // Image a: GGO lesion L1=[0,0,10,10], GGO+CD lesion L2=[20,20,40,40], CD lesion L3=[60,60,70,70].
  //   p1 GGO+CD 0.9 on L1 (IoU 1)   -> row GGO, column GGO+CD
  //   p2 GGO    0.8 on L2 (IoU 1)   -> row GGO+CD, column GGO
  //   p3 GGO    0.7 on L1 again     -> L1 taken -> row background, column GGO
  //   p4 CD     0.3 on L3           -> below threshold 0.5, ignored -> L3 in column background
  // Image b (no lesions): p5 CD 0.6 -> row background, column CD.
  Dataset ds = dataset({image("a", {box(0, 0, 10, 10, 1), box(20, 20, 40, 40, 3), box(60, 60, 70, 70, 2)}),
                        image("b", {})});
  std::vector<Detection> dets = {det("a", 3, 0.9f, 0, 0, 10, 10), det("a", 1, 0.8f, 20, 20, 40, 40),
                                 det("a", 1, 0.7f, 0, 0, 10, 10), det("a", 2, 0.3f, 60, 60, 70, 70),
                                 det("b", 2, 0.6f, 0, 0, 10, 10)};
  EvalOptions opt;
  ConfusionMatrix cm = confusion_matrix(ds, dets, opt);
  // rows: GGO, CD, GGO+CD, background; columns likewise.
  const std::vector<int64_t> want = {0, 0, 1, 0,  //
                                     0, 0, 0, 1,  //
                                     1, 0, 0, 0,  //
                                     1, 1, 0, 0};
  auto e = ctdet::testing::compare(cm.counts, want);
  ctdet::testing::print_err("confusion matrix", e);
  EXPECT_EQ(cm.counts, want);
}

TEST(Evaluation, WilsonInterval) {
  // Published Wilson 95% interval for 8/10: 0.4902-0.9433 (Newcombe 1998, method 3).
  Interval w = wilson_interval(8, 10);
  expect_near_printed("wilson 8/10 lo", w.lo, 0.49016, 1e-4);
  expect_near_printed("wilson 8/10 hi", w.hi, 0.94332, 1e-4);
  // k = 0: lower 0, upper z^2 / (n + z^2) in closed form.
  const double z2 = 1.959963984540054 * 1.959963984540054;
  w = wilson_interval(0, 5);
  expect_near_printed("wilson 0/5 lo", w.lo, 0.0, 1e-12);
  expect_near_printed("wilson 0/5 hi", w.hi, z2 / (5 + z2), 1e-12);
  // k = n mirrors k = 0.
  w = wilson_interval(5, 5);
  expect_near_printed("wilson 5/5 lo", w.lo, 5 / (5 + z2), 1e-12);
  EXPECT_TRUE(std::isnan(wilson_interval(0, 0).lo));
}

TEST(Evaluation, ImageAndPatientMeasures) {
  // P1: a (lesion; det 0.9 on it -> marked, localized), b (no lesion; det 0.6 -> marked)
  // P2: c (no lesion; det 0.4 -> not marked), d (no lesion, no det)
  // P3: e (lesion; det 0.7 far from it -> marked, not localized), f (lesion, no det)
  Dataset ds = dataset({image("a", {box(0, 0, 20, 20, 1)}, "P1"), image("b", {}, "P1"), image("c", {}, "P2"),
                        image("d", {}, "P2"), image("e", {box(0, 0, 20, 20, 2)}, "P3"),
                        image("f", {box(0, 0, 20, 20, 2)}, "P3")});
  std::vector<Detection> dets = {det("a", 1, 0.9f, 2, 2, 22, 22), det("b", 1, 0.6f, 0, 0, 9, 9),
                                 det("c", 2, 0.4f, 0, 0, 9, 9), det("e", 2, 0.7f, 60, 60, 80, 80)};
  EvalOptions opt;
  EvalReport r = evaluate(ds, dets, opt);
  const auto& c = r.clinical;
  // Images with lesions a, e, f: marked a, e (2/3); localized a (1/3). Without: b, c, d: unmarked c, d (2/3).
  EXPECT_EQ(c.pos_marked.k, 2);
  EXPECT_EQ(c.pos_marked.n, 3);
  EXPECT_EQ(c.pos_localized.k, 1);
  EXPECT_EQ(c.neg_unmarked.k, 2);
  EXPECT_EQ(c.neg_unmarked.n, 3);
  EXPECT_EQ(c.success_localized.k, 3);
  EXPECT_EQ(c.success_marked.k, 4);
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fn, 1);
  EXPECT_EQ(c.tn, 2);
  EXPECT_EQ(c.fp, 1);
  expect_near_printed("image accuracy", c.accuracy.value, 4.0 / 6.0, 1e-12);
  expect_near_printed("image sensitivity CI lo (2/3)", c.sensitivity.ci.lo, 0.2076596, 1e-6);
  // Patients (rule any): P1 pred+ label+ (TP), P2 pred- label- (TN), P3 1/2 marked -> pred+ label+ (TP).
  ASSERT_EQ(r.patients.size(), 3u);
  EXPECT_EQ(r.patients[0].patient, "P1");
  expect_near_printed("P1 mean score", r.patients[0].mean_score, (0.9 + 0.6) / 2, 1e-6);
  expect_near_printed("P3 share marked", r.patients[2].share_marked, 0.5, 1e-12);
  EXPECT_EQ(c.patient_tp, 2);
  EXPECT_EQ(c.patient_tn, 1);
  EXPECT_EQ(c.patient_fp + c.patient_fn, 0);
  EXPECT_EQ(c.patient_key, "patient_id");
  // Rule fraction:0.6: P3 (0.5 marked) becomes a false negative.
  opt.patient_fraction = parse_patient_rule("fraction:0.6");
  EvalReport r2 = evaluate(ds, dets, opt);
  EXPECT_EQ(r2.clinical.patient_fn, 1);
  EXPECT_EQ(r2.clinical.patient_sensitivity.value, 0.5);
  const std::string csv = patient_level_csv(r2);
  EXPECT_NE(csv.find("P3,2,2,1,0.5,0.699999988,0.349999994,0,1"), std::string::npos) << csv;
  // Without patient ids every image is its own patient.
  for (auto& im : ds.images) im.patient_id.clear();
  EvalReport r3 = evaluate(ds, dets, EvalOptions{});
  EXPECT_EQ(r3.patients.size(), 6u);
  EXPECT_EQ(r3.clinical.patient_key, "image");
}

TEST(Evaluation, PatientRuleParsing) {
  EXPECT_EQ(parse_patient_rule("any"), 0.0);
  EXPECT_EQ(parse_patient_rule("fraction:0.2"), 0.2);
  expect_error([] { parse_patient_rule("fraction:1.5"); }, "1.5");
  expect_error([] { parse_patient_rule("most"); }, "most");
}

TEST(Evaluation, FrocHandComputed) {
  // 4 images, lesions L1 (img1) and L2 (img2); img3, img4 lesion-free.
  // dets: img1 0.9 on L1, img1 0.5 on L1 again (duplicate: neither hit nor FP), img1 0.3 FP,
  //       img2 0.6 on L2, img3 0.8 FP, img4 0.7 FP.
  // thresholds (best hit score per lesion and FP scores; the duplicate adds none):
  //   0.9 -> (fp/img 0, sens .5); 0.8 -> (.25, .5); 0.7 -> (.5, .5); 0.6 -> (.5, 1); 0.3 -> (.75, 1).
  // at 1/8: .5; 1/4: .5; 1/2: 1; 1, 2, 4, 8: 1  -> FROC score 6/7.
  Dataset ds = dataset({image("1", {box(0, 0, 10, 10, 1)}), image("2", {box(0, 0, 10, 10, 2)}), image("3", {}),
                        image("4", {})});
  std::vector<Detection> dets = {det("1", 1, 0.9f, 0, 0, 10, 10), det("1", 3, 0.5f, 0, 0, 10, 11),
                                 det("1", 2, 0.3f, 50, 50, 60, 60), det("2", 1, 0.6f, 1, 0, 10, 10),
                                 det("3", 1, 0.8f, 0, 0, 10, 10), det("4", 1, 0.7f, 0, 0, 10, 10)};
  EvalOptions opt;
  FrocCurve f = froc(ds, dets, 0, opt);
  const double want_sens[kFrocPoints] = {0.5, 0.5, 1, 1, 1, 1, 1};
  auto e = ctdet::testing::compare(f.sens_at, want_sens, kFrocPoints);
  ctdet::testing::print_err("FROC sensitivities at 1/8..8", e);
  EXPECT_EQ(e.max_abs, 0.0);
  expect_near_printed("FROC score", f.score, 6.0 / 7.0, 1e-12);
  ASSERT_EQ(f.curve.size(), 5u);
  expect_near_printed("curve[1].fp_per_image", f.curve[1].fp_per_image, 0.25, 1e-12);
  expect_near_printed("curve[3].sensitivity", f.curve[3].sensitivity, 1.0, 1e-12);
  expect_near_printed("curve[4].fp_per_image", f.curve[4].fp_per_image, 0.75, 1e-12);
  // Per-class curve for GGO: lesion L1 only; GGO dets: 0.9 hit, 0.6 on L2 (a CD lesion: FP for the GGO
  // curve), 0.8, 0.7 FPs -> at 1/8 FP/img: 0.9 (fp 0) -> sens 1 everywhere.
  FrocCurve g = froc(ds, dets, 1, opt);
  EXPECT_EQ(g.n_lesions, 1);
  expect_near_printed("GGO FROC score", g.score, 1.0, 1e-12);
  // Bootstrap CI brackets a defined score and is reproducible with the same seed.
  opt.bootstrap = 200;
  FrocCurve b1 = froc(ds, dets, 0, opt), b2 = froc(ds, dets, 0, opt);
  EXPECT_TRUE(std::isfinite(b1.score_ci.lo));
  EXPECT_LE(b1.score_ci.lo, b1.score_ci.hi);
  EXPECT_EQ(b1.score_ci.lo, b2.score_ci.lo);
}

TEST(Evaluation, BadInputNamesTheCulprit) {
  Dataset ds = dataset({image("slice_1", {box(0, 0, 10, 10, 1)})});
  EvalOptions opt;
  expect_error([&] { evaluate(ds, {det("slice_9", 1, 0.5f, 0, 0, 1, 1)}, opt); }, "slice_9");
  expect_error([&] { evaluate(ds, {det("slice_1", 7, 0.5f, 0, 0, 1, 1)}, opt); }, "class 7");
  expect_error([&] { evaluate(ds, {det("slice_1", 1, std::nanf(""), 0, 0, 1, 1)}, opt); }, "score nan");
  auto ids = make_coco_id_map(ds);
  expect_error([&] { parse_detections_coco_json(R"([{"image_id":5,"category_id":1,"bbox":[0,0,1,1],"score":0.5}])", "r.json", ids); },
               "image_id 5");
  expect_error([&] { parse_detections_coco_json(R"([{"image_id":1,"category_id":9,"bbox":[0,0,1,1],"score":0.5}])", "r.json", ids); },
               "category_id 9");
  expect_error([&] { parse_detections_coco_json(R"([{"image_id":1,"category_id":1,"bbox":[0,0,1,1],"score":null}])", "r.json", ids); },
               "r.json: [0]");
  expect_error([&] { parse_detections_csv("image,class,score,x1,y1,x2,y2\nslice_1,GGO,nan,0,0,1,1\n", "d.csv", ds.class_names); },
               "d.csv:2");
  expect_error([&] { parse_detections_csv("image,class,score,x1,y1,x2,y2\nslice_1,XYZ,0.5,0,0,1,1\n", "d.csv", ds.class_names); },
               "XYZ");
}

TEST(Evaluation, DetectionFilesRoundTrip) {
  Dataset ds = dataset({image("a,1.png", {}), image("b.png", {})});
  ds.images[1].attributes["coco_id"] = "42";
  std::vector<Detection> dets = {det("a,1.png", 3, 0.123456789f, 1.25f, 2.5f, 30.75f, 40.125f),
                                 det("b.png", 1, 0.9f, 0, 0, 512, 512)};
  // CSV (an image name with a comma is quoted); class by name and by number.
  auto back = parse_detections_csv(detections_to_csv(dets, ds.class_names), "mem.csv", ds.class_names);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].image_id, "a,1.png");
  EXPECT_EQ(back[0].label, 3);
  EXPECT_EQ(back[0].score, dets[0].score);
  EXPECT_EQ(back[0].x2, dets[0].x2);
  auto num = parse_detections_csv("image,class,score,x1,y1,x2,y2\r\nb.png,2,0.5,0,0,1,1\r\n", "m.csv", ds.class_names);
  ASSERT_EQ(num.size(), 1u);
  EXPECT_EQ(num[0].label, 2);
  // COCO results with non-default ids: image 1 (dataset position) and 42 (coco_id), category ids 7,8,9.
  auto ids = make_coco_id_map(ds, {7, 8, 9});
  const std::string js = detections_to_coco_json(dets, ids);
  auto j = nlohmann::json::parse(js);
  EXPECT_EQ(j[0]["image_id"].get<long long>(), 1);
  EXPECT_EQ(j[0]["category_id"].get<long long>(), 9);
  EXPECT_EQ(j[1]["image_id"].get<long long>(), 42);
  auto back2 = parse_detections_coco_json(js, "mem.json", ids);
  ASSERT_EQ(back2.size(), 2u);
  EXPECT_EQ(back2[1].image_id, "b.png");
  EXPECT_EQ(back2[0].label, 3);
  const double e = std::abs(double(back2[0].x2) - double(dets[0].x2)) + std::abs(back2[0].score - dets[0].score);
  std::printf("[err] %-48s max_abs=%.3e\n", "COCO results round trip", e);
  EXPECT_LE(e, 1e-5);
  // An empty result list is valid: no detections.
  EXPECT_TRUE(parse_detections_coco_json("[]", "empty.json", ids).empty());
}

TEST(Evaluation, MatchesPycocotools) {
  // Fixtures from scripts/check_ap_pycocotools.py (pycocotools COCOeval, bbox, maxDets 100).
  const std::string gt_path = ctdet::testing::fixture_path("eval/xcheck_gt.json");
  Dataset gt = read_coco(gt_path);
  ASSERT_EQ(gt.class_names.size(), 4u);
  auto ids = make_coco_id_map(gt, coco_category_ids(read_file(gt_path), gt_path, gt.class_names));
  auto dets = read_detections_coco_json(ctdet::testing::fixture_path("eval/xcheck_dets.json"), ids);
  auto want = nlohmann::json::parse(read_file(ctdet::testing::fixture_path("eval/pycocotools_expected.json")));
  ASSERT_EQ(int64_t(dets.size()), want["counts"]["detections"].get<int64_t>());

  EvalOptions opt;
  EvalReport r = evaluate(gt, dets, opt);
  double max_err = 0;
  for (size_t k = 0; k < 4; ++k) {
    const auto& w = want["per_class"][k];
    const ClassAp& a = r.per_class[k];
    ASSERT_EQ(a.name, w["name"].get<std::string>());
    ASSERT_EQ(a.defined, w["defined"].get<bool>()) << a.name;
    if (!a.defined) {
      EXPECT_TRUE(std::isnan(a.ap));
      continue;
    }
    for (auto [key, got] : {std::pair<const char*, double>{"ap50", a.ap50}, {"ap75", a.ap75}, {"ap", a.ap}}) {
      expect_near_printed(a.name + " " + key, got, w[key].get<double>(), 1e-4);
      max_err = std::max(max_err, std::abs(got - w[key].get<double>()));
    }
    auto wp = w["precision50"].get<std::vector<double>>();
    auto e = ctdet::testing::compare(a.precision50, wp);
    ctdet::testing::print_err(a.name + " precision@IoU.5 (101 points)", e);
    EXPECT_LE(e.max_abs, 1e-9);
  }
  expect_near_printed("mean AP50", r.map50, want["mean"]["ap50"].get<double>(), 1e-4);
  expect_near_printed("mean AP75", r.map75, want["mean"]["ap75"].get<double>(), 1e-4);
  expect_near_printed("mean AP", r.map, want["mean"]["ap"].get<double>(), 1e-4);
  expect_near_printed("any-lesion AP50 (useCats=0)", r.any.ap50, want["any_lesion"]["ap50"].get<double>(), 1e-4);
  expect_near_printed("any-lesion AP75 (useCats=0)", r.any.ap75, want["any_lesion"]["ap75"].get<double>(), 1e-4);
  expect_near_printed("any-lesion AP (useCats=0)", r.any.ap, want["any_lesion"]["ap"].get<double>(), 1e-4);
  auto e = ctdet::testing::compare(r.any.precision50, want["any_lesion"]["precision50"].get<std::vector<double>>());
  ctdet::testing::print_err("any-lesion precision@IoU.5 (101 points)", e);
  EXPECT_LE(e.max_abs, 1e-9);
  std::printf("[err] %-48s max_abs=%.3e\n", "per-class AP vs pycocotools", max_err);
}

TEST(Evaluation, WritesAllOutputs) {
  Dataset gt = read_coco(ctdet::testing::fixture_path("eval/xcheck_gt.json"));
  const std::string gt_path = ctdet::testing::fixture_path("eval/xcheck_gt.json");
  auto ids = make_coco_id_map(gt, coco_category_ids(read_file(gt_path), gt_path, gt.class_names));
  auto dets = read_detections_coco_json(ctdet::testing::fixture_path("eval/xcheck_dets.json"), ids);
  EvalOptions opt;
  opt.bootstrap = 100;
  EvalReport r = evaluate(gt, dets, opt);
  const std::string dir = std::string(CTDET_BINARY_DIR) + "/test_evaluation_out/nested";
  write_eval_outputs(r, dir);
  write_eval_outputs(r, dir);  // overwriting is allowed
  auto j = nlohmann::json::parse(read_file(dir + "/eval_report.json"));
  EXPECT_EQ(j["counts"]["images"].get<int>(), 50);
  EXPECT_EQ(j["patient_level"]["patients"].get<int>(), 10);  // 5 slices per patient in the fixture
  EXPECT_TRUE(j["ap"]["per_class"][3]["ap"].is_null());       // "Other": no ground truth
  EXPECT_TRUE(j["definitions"].contains("froc"));
  const std::string froc_text = read_file(dir + "/froc.csv");
  EXPECT_EQ(froc_text.rfind("curve,threshold,fp_per_image,sensitivity\n", 0), 0u);
  const std::string pr = read_file(dir + "/pr_curves.csv");
  // header + 101 rows for each of GGO, CD, GGO+CD and any lesion ("Other" has no curve)
  EXPECT_EQ(std::count(pr.begin(), pr.end(), '\n'), 1 + 4 * 101);
  const std::string pl = read_file(dir + "/patient_level.csv");
  EXPECT_EQ(std::count(pl.begin(), pl.end(), '\n'), 11);
  const std::string md = read_file(dir + "/eval_report.md");
  EXPECT_NE(md.find("## FROC"), std::string::npos);
  std::printf("%s", eval_headline(r).c_str());
}
