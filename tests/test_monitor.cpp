// ctdet monitor: morphology against brute force, segmentation / zones / lesion area on hand-made images with
// hand-counted answers, the change rule, and phantom series (io/synth) with ground-truth boxes as detections
// whose report must name exactly the constructed changes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/synth.h"
#include "nn/error.h"
#include "test_util.h"
#include "train/detections_io.h"
#include "train/monitor.h"

using namespace ctdet;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string d = std::string(CTDET_BINARY_DIR) + "/monitor_test_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Brute-force closing with the disc d^2 <= r^2 (pixels outside the image are not in the mask).
std::vector<uint8_t> brute_close(const std::vector<uint8_t>& m, int w, int h, int r) {
  auto op = [&](const std::vector<uint8_t>& in, bool dilate) {
    std::vector<uint8_t> out(in.size());
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        bool any = false, all = true;
        for (int dy = -r; dy <= r; ++dy)
          for (int dx = -r; dx <= r; ++dx) {
            if (dx * dx + dy * dy > r * r) continue;
            const int yy = y + dy, xx = x + dx;
            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;  // outside: neither in nor out
            const bool v = in[size_t(yy) * w + xx] != 0;
            any = any || v;
            all = all && v;
          }
        out[size_t(y) * w + x] = dilate ? any : all;
      }
    return out;
  };
  return op(op(m, true), false);
}

// Hand image (HU): air, a body rectangle [5,55)x[5,35) of soft tissue, lung A [10,25)x[10,30) (image left) with
// a 2x2 vessel at (15..16, 18..19), lung B [35,50)x[12,28) (image right), a 2x2 air pocket at [28,30)x[30,32).
MonitorImage hand_image() {
  MonitorImage m;
  m.width = 60;
  m.height = 40;
  m.values.assign(60 * 40, -1000.f);
  auto fill = [&](int x0, int x1, int y0, int y1, float v) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) m.values[size_t(y) * 60 + x] = v;
  };
  fill(5, 55, 5, 35, 40.f);
  fill(10, 25, 10, 30, -850.f);
  fill(15, 17, 18, 20, 40.f);
  fill(35, 50, 12, 28, -850.f);
  fill(28, 30, 30, 32, -900.f);
  return m;
}

int64_t count_side(const LungSegmentation& s, int label, int x0, int x1, int y0, int y1) {
  int64_t n = 0;
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      const bool in = x >= x0 && x < x1 && y >= y0 && y < y1;
      n += in && s.lung[size_t(y) * s.width + x] == label;
    }
  return n;
}

}  // namespace

TEST(Monitor, DistanceTransformAndClosingMatchBruteForce) {
  SynthRng r(7);
  int64_t max_err = 0, mismatches = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const int w = 13 + trial, h = 11 + (trial * 3) % 7;
    std::vector<uint8_t> m(size_t(w) * h);
    for (auto& v : m) v = r.uniform() < 0.35;
    const auto d = squared_distance_transform(m, w, h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        int64_t best = int64_t(1) << 60;
        for (int yy = 0; yy < h; ++yy)
          for (int xx = 0; xx < w; ++xx)
            if (m[size_t(yy) * w + xx]) best = std::min<int64_t>(best, int64_t(x - xx) * (x - xx) + int64_t(y - yy) * (y - yy));
        max_err = std::max<int64_t>(max_err, std::llabs(best - d[size_t(y) * w + x]));
      }
    for (int rad = 1; rad <= 3; ++rad) {
      const auto a = close_mask(m, w, h, rad), b = brute_close(m, w, h, rad);
      for (size_t i = 0; i < a.size(); ++i) mismatches += a[i] != b[i];
    }
  }
  std::printf("[err] squared distance max |err| %lld, closing pixels differing from brute force %lld\n",
              (long long)max_err, (long long)mismatches);
  EXPECT_EQ(max_err, 0);
  EXPECT_EQ(mismatches, 0);
  // Hole filling: a ring with a hole and a notch open to the border.
  std::vector<uint8_t> ring(7 * 7, 0);
  for (int y = 1; y < 6; ++y)
    for (int x = 1; x < 6; ++x) ring[size_t(y) * 7 + x] = (x == 1 || x == 5 || y == 1 || y == 5);
  const auto filled = fill_holes(ring, 7, 7);
  int n = 0;
  for (auto v : filled) n += v;
  EXPECT_EQ(n, 25);  // 5x5 block
  EXPECT_THROW(fill_holes(ring, 6, 7), Error);
}

TEST(Monitor, SegmentsTwoLungsInABody) {
  const MonitorImage img = hand_image();
  MonitorOptions opt;  // HU thresholds
  const LungSegmentation s = segment_lungs(img, opt, "hand");
  int64_t body = 0;
  for (auto v : s.body) body += v;
  std::printf("[info] body %lld px, right lung %lld px, left lung %lld px, components %d\n", (long long)body,
              (long long)s.pixels[0], (long long)s.pixels[1], s.components);
  EXPECT_EQ(body, 50 * 30);
  EXPECT_EQ(s.components, 2);
  // Radiological: image-left lung A is the patient's right (label 1), vessel hole filled, pocket dropped.
  EXPECT_EQ(s.pixels[0], 15 * 20);
  EXPECT_EQ(s.pixels[1], 15 * 16);
  EXPECT_EQ(count_side(s, 1, 10, 25, 10, 30), 300);
  EXPECT_EQ(count_side(s, 2, 35, 50, 12, 28), 240);
  EXPECT_NEAR(s.centroid_x[0], 17.5, 1e-9);
  EXPECT_NEAR(s.centroid_x[1], 42.5, 1e-9);
  // Neurological convention swaps the sides; so does a DICOM orientation with the row direction towards -x.
  opt.radiological = false;
  const LungSegmentation n = segment_lungs(img, opt, "hand");
  EXPECT_EQ(n.pixels[0], 240);
  EXPECT_EQ(n.pixels[1], 300);
  MonitorImage flipped = img;
  flipped.patient_left_on_image_right = 0;
  EXPECT_EQ(segment_lungs(flipped, MonitorOptions{}, "hand").pixels[0], 240);
  // 8-bit lung window thresholds are the HU ones mapped through the window.
  const MonitorOptions u8 = monitor_options_u8();
  EXPECT_NEAR(u8.lung_threshold, (-320.0 + 1350.0) / 1500.0 * 255.0, 1e-3);
  MonitorImage bad = img;
  bad.values[5] = std::nanf("");
  EXPECT_THROW(segment_lungs(bad, MonitorOptions{}, "bad"), Error);
}

TEST(Monitor, ZoneAssignment) {
  const LungSegmentation s = segment_lungs(hand_image(), MonitorOptions{}, "hand");
  SideAssignment a = assign_side(s, Box{12, 12, 20, 20, 1});
  EXPECT_EQ(a.side, 0);
  EXPECT_EQ(a.method, "overlap");
  EXPECT_EQ(a.overlap[0], 64);
  a = assign_side(s, Box{22, 14, 40, 16, 1});  // 3 columns in A, 5 in B
  EXPECT_EQ(a.overlap[0], 6);
  EXPECT_EQ(a.overlap[1], 10);
  EXPECT_EQ(a.side, 1);
  a = assign_side(s, Box{26, 5, 32, 8, 1});  // in the body above the lungs, centre x 29: nearer A (17.5)
  EXPECT_EQ(a.method, "nearest");
  EXPECT_EQ(a.side, 0);
  MonitorImage none = hand_image();
  for (auto& v : none.values)
    if (v < -500 && v > -950) v = 40.f;  // no lung left
  const LungSegmentation s0 = segment_lungs(none, MonitorOptions{}, "nolung");
  EXPECT_FALSE(s0.has_lung());
  a = assign_side(s0, Box{40, 10, 44, 14, 1});
  EXPECT_EQ(a.method, "midline");
  EXPECT_EQ(a.side, 1);  // image right = patient left (radiological)
  // Thirds of the lungs' extent: lung on slices 1..7 (n = 7).
  const std::vector<bool> has{false, true, true, true, true, true, true, true, false};
  const int want[9] = {0, 0, 0, 1, 1, 1, 2, 2, 2};
  const bool want_out[9] = {true, false, false, false, false, false, false, false, true};
  for (int i = 0; i < 9; ++i) {
    bool out = false;
    EXPECT_EQ(vertical_third(has, i, &out), want[i]) << i;
    EXPECT_EQ(out, want_out[i]) << i;
  }
  EXPECT_THROW(vertical_third(has, 9), Error);
}

TEST(Monitor, LesionAreaUnionAndPleuralBite) {
  MonitorImage img = hand_image();
  auto fill = [&](int x0, int x1, int y0, int y1, float v) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) img.values[size_t(y) * 60 + x] = v;
  };
  fill(18, 24, 11, 15, 20.f);  // inner lesion, 24 px, in A
  fill(10, 14, 22, 26, 30.f);  // lesion at the pleura of A (touches the chest wall), 16 px
  img.pixel_area_mm2 = 0.5;
  std::vector<Detection> dets;
  auto det = [&](int label, float score, float x1, float y1, float x2, float y2) {
    Detection d;
    d.image_id = "hand";
    d.label = label;
    d.score = score;
    d.x1 = x1;
    d.y1 = y1;
    d.x2 = x2;
    d.y2 = y2;
    dets.push_back(d);
  };
  det(1, 0.9f, 17, 10, 22, 16);  // covers lesion columns 18..21
  det(1, 0.8f, 20, 10, 25, 16);  // columns 20..23 (overlaps)
  det(2, 0.7f, 17, 10, 22, 16);  // same box, other class
  det(1, 0.95f, 8, 21, 15, 27);  // pleural lesion with chest wall in the box
  det(1, 0.3f, 30, 30, 40, 35);  // below min_score: ignored
  MonitorOptions opt;
  const SliceFindings f = measure_slice(img, dets, opt, "hand");
  ASSERT_EQ(f.detections.size(), 4u);
  std::printf("[info] own lesion px per box:");
  for (const auto& d : f.detections) std::printf(" %lld", (long long)d.lesion_px);
  std::printf("\n");
  EXPECT_EQ(f.detections[0].lesion_px, 16);  // pleural: the 4x4 bite, not the chest wall columns 8, 9
  EXPECT_EQ(f.detections[1].lesion_px, 16);
  EXPECT_EQ(f.detections[2].lesion_px, 16);
  EXPECT_EQ(f.detections[3].lesion_px, 16);
  // Class 1: union of the two overlapping boxes = the whole 24 px lesion (not 32) + the 16 px bite.
  EXPECT_EQ(f.lesion_px.at({0, 1}), 24 + 16);
  EXPECT_EQ(f.lesion_px.at({0, 2}), 16);
  EXPECT_EQ(f.lesion_px.size(), 2u);
  // Through analyze_study: one slice, so the middle third; mm^2 from the pixel area.
  MonitorStudy st;
  st.study_id = "s";
  st.date = "2020-01-01";
  ImageRecord rec;
  rec.id = "hand";
  st.slices.push_back(rec);
  const StudyResult r = analyze_study(st, detections_by_image(dets), [&](const ImageRecord&) { return img; }, opt);
  EXPECT_TRUE(r.mm2);
  EXPECT_EQ(r.area_px.at({1, 1}), 40);
  EXPECT_NEAR(r.area_mm2.at({1, 1}), 20.0, 1e-12);
  EXPECT_NEAR(r.area_mm2.at({1, 2}), 8.0, 1e-12);
  EXPECT_EQ(r.count.at({1, 1}), 3);
  Detection bad = dets[0];
  bad.x2 = bad.x1 - 1;
  EXPECT_THROW(measure_slice(img, {bad}, opt, "hand"), Error);
}

TEST(Monitor, ChangeRule) {
  EXPECT_EQ(classify_change(0, 5, 0.2), ChangeKind::kNew);
  EXPECT_EQ(classify_change(5, 0, 0.2), ChangeKind::kResolved);
  EXPECT_EQ(classify_change(100, 121, 0.2), ChangeKind::kLarger);
  EXPECT_EQ(classify_change(100, 120, 0.2), ChangeKind::kStable);
  EXPECT_EQ(classify_change(100, 80, 0.2), ChangeKind::kStable);
  EXPECT_EQ(classify_change(100, 79, 0.2), ChangeKind::kSmaller);
  EXPECT_THROW(classify_change(0, 0, 0.2), Error);
  EXPECT_THROW(classify_change(-1, 3, 0.2), Error);
  StudyResult a, b;
  a.date = "2020-01-01";
  b.date = "2020-01-08";
  a.area_px[{0, 1}] = 100;
  b.area_px[{0, 1}] = 150;
  b.area_px[{4, 2}] = 30;
  a.area_px[{5, 3}] = 0;  // zero on both sides: no row
  const auto ch = compare_studies({a, b}, "px", 0.2);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].change, ChangeKind::kLarger);
  EXPECT_NEAR(ch[0].percent, 50.0, 1e-12);
  EXPECT_EQ(ch[1].zone, 4);
  EXPECT_EQ(ch[1].change, ChangeKind::kNew);
  EXPECT_TRUE(std::isnan(ch[1].percent));
}

namespace {

struct Expect {
  std::string zone, cls, date_after, change;
  bool operator<(const Expect& o) const {
    return std::tie(zone, cls, date_after, change) < std::tie(o.zone, o.cls, o.date_after, o.change);
  }
};

}  // namespace

// A series made here with io/synth's renderer: one lesion per trajectory, placed in chosen zones.
TEST(Monitor, PhantomSeriesNamesExactlyTheConstructedChanges) {
  const std::string dir = fresh_dir("phantom");
  const int S = 192, K = 6, studies = 3;
  const uint64_t anatomy = 99;
  const char* dates[studies] = {"2021-01-04", "2021-01-11", "2021-01-20"};
  struct Plan {
    int slice, label;
    bool image_left;  // lung on the image left (patient's right)
    double scale[studies];
    const char* id;
  };
  // 0 grows (right upper), 1 vanishes (left lower), 2 is new (left middle), 3 is stable (right middle).
  const Plan plans[4] = {{0, kSynthGGO, true, {0.6, 0.9, 1.2}, "grow"},
                         {5, kSynthCD, false, {1.0, 0.75, 0.0}, "vanish"},
                         {2, kSynthMixed, false, {0.0, 0.7, 1.0}, "new"},
                         {3, kSynthGGO, true, {1.0, 1.0, 1.0}, "stable"}};
  nlohmann::json manifest;
  manifest["patient_id"] = "T001";
  manifest["studies"] = nlohmann::json::array();
  std::vector<Detection> dets;
  std::map<std::string, bool> truth_left;
  for (int s = 0; s < studies; ++s) {
    const std::string folder = std::string("study_") + dates[s];
    fs::create_directories(dir + "/" + folder);
    nlohmann::json st;
    st["date"] = dates[s];
    st["folder"] = folder;
    st["slices"] = nlohmann::json::array();
    for (int k = K - 1; k >= 0; --k) {  // listed base first: the reader orders by z
      SliceSpec spec;
      spec.size = S;
      spec.anatomy_seed = anatomy;
      spec.z = 0.1 + 0.8 * (k + 0.5) / K;
      spec.detail_seed = 1000 + uint64_t(k);
      spec.noise_seed = synth_mix_seed(uint64_t(k), uint64_t(s) + 1);
      // Lesion centres: the centroid of the chosen lung on a lesion-free rendering.
      const SynthSlice empty = render_slice(spec);
      for (const Plan& p : plans) {
        if (p.slice != k || p.scale[s] == 0) continue;
        double sx = 0, sy = 0, n = 0;
        for (int y = 0; y < S; ++y)
          for (int x = 0; x < S; ++x)
            if (empty.lung[size_t(y) * S + x] && ((x < S / 2) == p.image_left)) {
              sx += x + 0.5;
              sy += y + 0.5;
              n += 1;
            }
        LesionSpec L;
        L.label = p.label;
        L.cx = sx / n / (S * 0.5) - 1.0;
        L.cy = sy / n / (S * 0.5) - 1.0;
        L.rx = 0.09;
        L.ry = 0.075;
        L.theta = 0.3;
        L.scale = p.scale[s];
        L.target_hu = -400;
        L.cd_hu = 20;
        L.shape_seed = 5 + uint64_t(p.slice);
        L.id = p.id;
        spec.lesions.push_back(L);
      }
      const SynthSlice sl = render_slice(spec);
      char name[32];
      std::snprintf(name, sizeof(name), "slice_%03d.png", k);
      write_png(dir + "/" + folder + "/" + name, sl.window8());
      st["slices"].push_back({{"file", name}, {"z", spec.z}});
      for (const auto& l : sl.lesions) {
        Detection d;
        d.image_id = folder + "/" + name;
        d.label = l.label;
        d.score = 1;
        d.x1 = l.box.x1;
        d.y1 = l.box.y1;
        d.x2 = l.box.x2;
        d.y2 = l.box.y2;
        dets.push_back(d);
        truth_left[l.id] = l.patient_left;
      }
    }
    manifest["studies"].push_back(st);
  }
  // Truth of the construction: sides from the renderer (centroid side), independent of the segmentation.
  EXPECT_FALSE(truth_left["grow"]);
  EXPECT_TRUE(truth_left["vanish"]);
  EXPECT_TRUE(truth_left["new"]);
  EXPECT_FALSE(truth_left["stable"]);
  write_file_atomic(dir + "/manifest.json", manifest.dump(2));
  const auto classes = default_class_names();
  write_detections_csv(dir + "/dets.csv", dets, classes);

  const MonitorSeries series = read_monitor_manifest(dir);
  ASSERT_EQ(series.studies.size(), 3u);
  EXPECT_EQ(series.studies[0].slices[0].id, "study_2021-01-04/slice_000.png");
  const auto read = read_detections(dir + "/dets.csv", make_coco_id_map(monitor_dataset(series, classes)), classes);
  EXPECT_TRUE(unknown_detection_ids(series, read).empty());
  const MonitorReport r =
      run_monitor(series, detections_by_image(read), load_monitor_image, monitor_options_u8(), classes);
  EXPECT_EQ(r.unit, "px");
  std::set<Expect> got, want = {
                            {"right_upper", "GGO", dates[1], "larger"},
                            {"right_upper", "GGO", dates[2], "larger"},
                            {"left_lower", "CD", dates[1], "smaller"},
                            {"left_lower", "CD", dates[2], "resolved"},
                            {"left_middle", "GGO+CD", dates[1], "new"},
                            {"left_middle", "GGO+CD", dates[2], "larger"},
                            {"right_middle", "GGO", dates[1], "stable"},
                            {"right_middle", "GGO", dates[2], "stable"},
                        };
  double max_stable = 0;
  for (const auto& c : r.changes) {
    got.insert({monitor_zone_name(c.zone), classes[size_t(c.label - 1)], c.date_after, change_name(c.change)});
    std::printf("[info] %-12s %-6s %s -> %s  %6.0f -> %6.0f  %+7.1f%%  %s\n", monitor_zone_name(c.zone),
                classes[size_t(c.label - 1)].c_str(), c.date_before.c_str(), c.date_after.c_str(), c.before, c.after,
                c.percent, change_name(c.change));
    if (c.change == ChangeKind::kStable) max_stable = std::max(max_stable, std::abs(c.percent));
  }
  std::printf("[err] stable lesion: max |relative area change| %.2f%% (noise only)\n", max_stable);
  EXPECT_EQ(got.size(), want.size());
  for (const auto& w : want) EXPECT_TRUE(got.count(w)) << w.zone << " " << w.cls << " " << w.date_after << " " << w.change;
  for (const auto& g : got) EXPECT_TRUE(want.count(g)) << "spurious: " << g.zone << " " << g.cls << " " << g.change;
  for (const auto& st : r.studies) EXPECT_TRUE(st.notes.empty()) << st.notes.size() << " notes in " << st.date;

  const MonitorPaths p = write_monitor_outputs(r, dir + "/out");
  const std::string csv = read_file(p.csv), md = read_file(p.md), html = read_file(p.html);
  int lines = 0;
  for (char c : csv) lines += c == '\n';
  EXPECT_EQ(lines, 1 + 8);
  EXPECT_NE(csv.find("left_lower,CD,2021-01-11,2021-01-20,"), std::string::npos);
  EXPECT_NE(md.find("| left_middle | GGO+CD | 0 |"), std::string::npos);
  size_t svgs = 0;
  for (size_t pos = html.find("<svg"); pos != std::string::npos; pos = html.find("<svg", pos + 1)) ++svgs;
  EXPECT_EQ(svgs, 4u);  // one chart per zone with lesions
  EXPECT_EQ(html.find("http"), html.find("http://www.w3.org"));  // no external reference besides the SVG namespace
}

// `ctdet synth --series` output, its own ground-truth boxes as detections: every lesion lands in the manifest's
// zone, and each change agrees with the one the manifest's true areas give (unless that one is within 10 points
// of the threshold, where measured and true areas may fall on different sides).
TEST(Monitor, SynthSeriesZonesAndChangesAgreeWithManifest) {
  SynthOptions o;
  o.out = fresh_dir("synth");
  o.force = true;
  o.count = 6;
  o.studies = 3;
  o.size = 192;
  o.seed = 3;
  const SynthSummary sum = write_synth_series(o);
  const auto m = nlohmann::json::parse(read_file(sum.manifest_path));
  const auto classes = default_class_names();
  std::vector<Detection> dets;
  std::map<std::pair<std::string, std::string>, double> truth[3];  // (zone, class) -> true area per study
  int zone_checked = 0;
  const MonitorOptions opt = monitor_options_u8();
  for (size_t s = 0; s < m["studies"].size(); ++s) {
    const auto& st = m["studies"][s];
    for (const auto& l : st["lesions"]) {
      if (l["box"].is_null()) continue;
      Detection d;
      d.image_id = st["folder"].get<std::string>() + "/" + l["slice"].get<std::string>();
      d.label = 1 + int(std::find(classes.begin(), classes.end(), l["label"].get<std::string>()) - classes.begin());
      d.score = 1;
      d.x1 = l["box"][0];
      d.y1 = l["box"][1];
      d.x2 = l["box"][2];
      d.y2 = l["box"][3];
      dets.push_back(d);
      truth[s][{l["zone"].get<std::string>(), l["label"].get<std::string>()}] += l["area_px"].get<double>();
      // Side from the segmentation of that slice, third from the slice index (all slices hold lung).
      ImageRecord rec;
      rec.file = o.out + "/" + d.image_id;
      const SliceFindings f = measure_slice(load_monitor_image(rec), {d}, opt, d.image_id);
      const int k = std::stoi(l["slice"].get<std::string>().substr(6, 3));
      const int third = vertical_third(std::vector<bool>(size_t(o.count), true), k);
      EXPECT_EQ(monitor_zone_name(f.detections[0].side * 3 + third), l["zone"].get<std::string>())
          << l["id"] << " " << d.image_id << " via " << f.detections[0].method;
      ++zone_checked;
    }
  }
  const MonitorSeries series = read_monitor_manifest(sum.manifest_path);
  const MonitorReport r = run_monitor(series, detections_by_image(dets), load_monitor_image, opt, classes);
  int agree = 0, skipped = 0;
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& c : r.changes) {
    const std::string zone = monitor_zone_name(c.zone), cls = classes[size_t(c.label - 1)];
    size_t s = 0;
    while (r.studies[s].date != c.date_after) ++s;
    const double tb = truth[s - 1][{zone, cls}], ta = truth[s][{zone, cls}];
    ASSERT_GT(tb + ta, 0) << "spurious: " << zone << " " << cls << " " << c.date_after;
    const ChangeKind want = classify_change(tb, ta, opt.change_threshold);
    const double rel = tb > 0 ? std::abs((ta - tb) / tb) : 1e9;
    std::printf("[info] %-12s %-6s %s  true %5.0f -> %5.0f  measured %5.0f -> %5.0f  %s / %s\n", zone.c_str(),
                cls.c_str(), c.date_after.c_str(), tb, ta, c.before, c.after, change_name(want),
                change_name(c.change));
    seen.insert({zone + cls, c.date_after});
    if (want != ChangeKind::kNew && want != ChangeKind::kResolved && std::abs(rel - opt.change_threshold) < 0.1) {
      ++skipped;
      continue;
    }
    EXPECT_EQ(change_name(c.change), std::string(change_name(want))) << zone << " " << cls << " " << c.date_after;
    ++agree;
  }
  // Every true change appears.
  for (size_t s = 1; s < 3; ++s) {
    std::set<std::pair<std::string, std::string>> keys;
    for (const auto* t : {&truth[s - 1], &truth[s]})
      for (const auto& [k, v] : *t)
        if (v > 0) keys.insert(k);
    for (const auto& k : keys)
      EXPECT_TRUE(seen.count({k.first + k.second, r.studies[s].date})) << k.first << " " << k.second << " missing";
  }
  std::printf("[info] %d lesion zones checked; %d changes agree with the manifest, %d near the threshold skipped\n",
              zone_checked, agree, skipped);
  EXPECT_GT(zone_checked, 10);
  EXPECT_GT(agree, 5);
}

TEST(Monitor, ManifestErrors) {
  const std::string dir = fresh_dir("bad");
  write_file_atomic(dir + "/manifest.json", "{\"studies\": []}");
  EXPECT_THROW(read_monitor_manifest(dir), Error);
  write_file_atomic(dir + "/manifest.json", "{\"studies\": [{\"folder\": \"a\", \"slices\": [\"x.png\"]}]}");
  try {
    read_monitor_manifest(dir + "/manifest.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("study 0"), std::string::npos) << e.what();
  }
}
