// Annotation import: VIA 2.x CSV / 2.x JSON / 1.x JSON, COCO dataset JSON, label masks -> boxes,
// label_map.pbtxt, and the real MedSeg data (VIA CSV vs masks, and `ctdet prepare` when the binary exists).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "io/atomic_file.h"
#include "io/coco.h"
#include "io/image.h"
#include "io/label_map.h"
#include "io/masks.h"
#include "io/tfrecord.h"
#include "io/via.h"
#include "nn/error.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ctdet;
namespace tu = ctdet::testing;

namespace {
using ctdet::testing::expect_error;
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* kHeader =
    "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes";

// Rows as VIA 2.x writes them: every row starts with \n, no trailing newline.
std::string via_csv(const std::vector<std::string>& rows) {
  std::string s = kHeader;
  for (auto& r : rows) s += "\n" + r;
  return s;
}

// theta = pi/6 written out so the CSV holds a plain number
const double kTheta = 0.52359877559829882;

std::vector<std::string> hand_rows() {
  const std::string fa = R"("{""patient_id"":""P7"",""age"":""61""}")";
  return {
      "a.png,100," + fa + R"(,6,0,"{""name"":""polygon"",""all_points_x"":[10,50,40],""all_points_y"":[5,5,30]}","{""lesion"":""GGO""}")",
      "a.png,100," + fa + R"(,6,1,"{""name"":""rect"",""x"":3,""y"":4,""width"":20,""height"":10}","{""lesion"":""CD""}")",
      "a.png,100," + fa + R"(,6,2,"{""name"":""circle"",""cx"":50,""cy"":60,""r"":7}","{""lesion"":""GGO+CD""}")",
      "a.png,100," + fa + R"(,6,3,"{""name"":""ellipse"",""cx"":100,""cy"":80,""rx"":30,""ry"":10,""theta"":0.52359877559829882}","{""lesion"":""GGO""}")",
      "a.png,100," + fa + R"(,6,4,"{""name"":""point"",""cx"":5,""cy"":5}","{""lesion"":""GGO""}")",
      "a.png,100," + fa + R"(,6,5,"{""name"":""polyline"",""all_points_x"":[1,9],""all_points_y"":[2,4]}","{""lesion"":{""CD"":true,""GGO"":false}}")",
      R"(b.png,200,"{}",0,0,"{}","{}")",
  };
}

// Extent of a rotated ellipse by dense sampling of its outline (independent of the closed form).
void ellipse_extent_sampled(double cx, double cy, double rx, double ry, double th, double* out) {
  out[0] = out[1] = 1e30, out[2] = out[3] = -1e30;
  for (int k = 0; k < 200000; ++k) {
    double t = 2 * M_PI * k / 200000.0;
    double x = cx + rx * std::cos(t) * std::cos(th) - ry * std::sin(t) * std::sin(th);
    double y = cy + rx * std::cos(t) * std::sin(th) + ry * std::sin(t) * std::cos(th);
    out[0] = std::min(out[0], x), out[1] = std::min(out[1], y), out[2] = std::max(out[2], x), out[3] = std::max(out[3], y);
  }
}

std::string medseg_dir() {
  if (const char* e = std::getenv("CTDET_MEDSEG_DIR")) return e;
  return tu::source_dir() + "/../shared/data/medseg_covid_semiseg";
}
#define REQUIRE_MEDSEG()                                                                                  \
  do {                                                                                                    \
    if (!fs::exists(medseg_dir() + "/via/train_regions.csv"))                                             \
      GTEST_SKIP() << "MedSeg data not found at " << medseg_dir() << " (set CTDET_MEDSEG_DIR)";           \
  } while (0)

std::string tmp_dir(const std::string& name) { return ctdet::testing::tmp_dir("ann", name); }
}  // namespace

// ---- VIA CSV ---------------------------------------------------------------------------------------
TEST(ViaCsv, SplitsQuotedFields) {
  auto f = split_csv_record(R"(a,"b,""c""",,"{""k"":""v, w""}",e)", "t");
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0], "a");
  EXPECT_EQ(f[1], "b,\"c\"");
  EXPECT_EQ(f[2], "");
  EXPECT_EQ(f[3], "{\"k\":\"v, w\"}");
  EXPECT_EQ(f[4], "e");
}

TEST(ViaCsv, EveryShape) {
  ViaStats st;
  Dataset ds = parse_via_csv(via_csv(hand_rows()), "hand.csv", {}, &st);
  ASSERT_EQ(ds.images.size(), 2u);
  const ImageRecord& a = ds.images[0];
  EXPECT_EQ(a.id, "a.png");
  EXPECT_EQ(a.patient_id, "P7");
  EXPECT_EQ(a.attributes.at("age"), "61");
  ASSERT_EQ(a.boxes.size(), 5u);  // the point is skipped
  EXPECT_EQ(st.points_skipped, 1);
  EXPECT_EQ(st.polylines, 1);
  EXPECT_EQ(st.negatives, 1);
  EXPECT_EQ(st.boxes, 5);
  EXPECT_TRUE(ds.images[1].boxes.empty());
  // hand-computed extents
  double want[5][5] = {{10, 5, 50, 30, 1}, {3, 4, 23, 14, 2}, {43, 53, 57, 67, 3}, {0, 0, 0, 0, 1}, {1, 2, 9, 4, 2}};
  ellipse_extent_sampled(100, 80, 30, 10, kTheta, want[3]);
  double max_err = 0;
  for (int i = 0; i < 5; ++i) {
    const Box& b = a.boxes[size_t(i)];
    double got[4] = {b.x1, b.y1, b.x2, b.y2};
    for (int k = 0; k < 4; ++k) max_err = std::max(max_err, std::abs(got[k] - want[i][k]));
    EXPECT_EQ(b.label, int(want[i][4])) << "box " << i;
  }
  // closed form for the record: half-width sqrt(30²cos²30° + 10²sin²30°) = sqrt(700) = 26.458
  EXPECT_NEAR(a.boxes[3].x2 - 100, std::sqrt(700.0), 1e-4);
  EXPECT_NEAR(a.boxes[3].y2 - 80, std::sqrt(300.0), 1e-4);
  std::printf("[err] VIA shapes vs hand/sampled extents: max_abs=%.3e px\n", max_err);
  EXPECT_LT(max_err, 1e-3);

  // Windows line ends and a trailing newline give the same result
  std::string crlf;
  for (char c : via_csv(hand_rows()) + "\n") crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  Dataset d2 = parse_via_csv(crlf, "crlf.csv");
  ASSERT_EQ(d2.images.size(), 2u);
  EXPECT_EQ(d2.images[0].boxes.size(), 5u);
}

TEST(ViaCsv, ClipsToKnownImageSize) {
  ViaOptions opt;
  opt.image_dir = "/data";
  opt.image_size = [](const std::string& file, int* w, int* h) {
    if (file != "/data/a.png") return false;
    *w = 40, *h = 28;
    return true;
  };
  ViaStats st;
  Dataset ds = parse_via_csv(via_csv(hand_rows()), "hand.csv", opt, &st);
  const ImageRecord& a = ds.images[0];
  EXPECT_EQ(a.file, "/data/a.png");
  EXPECT_EQ(a.width, 40);
  // polygon (10,5,50,30) -> (10,5,40,28); rect inside; circle (43..57) entirely outside -> dropped;
  // ellipse (73.5..) outside -> dropped; polyline inside
  ASSERT_EQ(a.boxes.size(), 3u);
  EXPECT_FLOAT_EQ(a.boxes[0].x2, 40.f);
  EXPECT_FLOAT_EQ(a.boxes[0].y2, 28.f);
  EXPECT_EQ(st.clipped, 3);
  EXPECT_EQ(st.degenerate_dropped, 2);
  EXPECT_EQ(ds.images[1].width, 0);  // unknown size: not clipped
}

TEST(ViaCsv, ErrorsNameFileAndRow) {
  auto rows = hand_rows();
  std::string e;
  // wrong field count (row on line 3)
  auto r = rows;
  r[1] = R"(a.png,100,"{}",6,1,"{""name"":""rect"",""x"":3,""y"":4,""width"":20,""height"":10}")";
  e = expect_error([&] { parse_via_csv(via_csv(r), "bad.csv"); });
  EXPECT_TRUE(has(e, "bad.csv:3")) << e;
  EXPECT_TRUE(has(e, "6 fields")) << e;
  // broken JSON in the shape column (line 2)
  r = rows;
  r[0] = R"(a.png,100,"{}",6,0,"{""name"":""polygon"",""all_points_x"":[10,50,40}","{""lesion"":""GGO""}")";
  e = expect_error([&] { parse_via_csv(via_csv(r), "bad.csv"); });
  EXPECT_TRUE(has(e, "bad.csv:2")) << e;
  EXPECT_TRUE(has(e, "region_shape_attributes")) << e;
  // polygon with 2 points (line 4)
  r = rows;
  r[2] = R"(a.png,100,"{}",6,2,"{""name"":""polygon"",""all_points_x"":[1,5],""all_points_y"":[1,5]}","{""lesion"":""GGO""}")";
  e = expect_error([&] { parse_via_csv(via_csv(r), "bad.csv"); });
  EXPECT_TRUE(has(e, "bad.csv:4") && has(e, "2 points")) << e;
  // unknown class (line 5), then skipped and counted with the flag
  r = rows;
  r[3] = R"(a.png,100,"{}",6,3,"{""name"":""rect"",""x"":1,""y"":1,""width"":2,""height"":2}","{""lesion"":""Nodule""}")";
  e = expect_error([&] { parse_via_csv(via_csv(r), "bad.csv"); });
  EXPECT_TRUE(has(e, "bad.csv:5") && has(e, "'Nodule'") && has(e, "a.png")) << e;
  ViaOptions skip;
  skip.skip_unknown_classes = true;
  ViaStats st;
  Dataset ds = parse_via_csv(via_csv(r), "bad.csv", skip, &st);
  EXPECT_EQ(st.unknown_class_skipped, 1);
  EXPECT_EQ(ds.images[0].boxes.size(), 4u);
  // header
  e = expect_error([&] { parse_via_csv("filename,size\na,1", "hdr.csv"); });
  EXPECT_TRUE(has(e, "hdr.csv:1")) << e;
  // unclosed quote
  e = expect_error([&] { parse_via_csv(via_csv({R"(a.png,1,"{}",1,0,"{""name"":""rect"")"}), "q.csv"); });
  EXPECT_TRUE(has(e, "q.csv:2") && has(e, "not closed")) << e;
  // unknown shape, non-integer count
  e = expect_error([&] { parse_via_csv(via_csv({R"(a.png,1,"{}",1,0,"{""name"":""blob""}","{""lesion"":""CD""}")"}), "s.csv"); });
  EXPECT_TRUE(has(e, "s.csv:2") && has(e, "blob")) << e;
  e = expect_error([&] { parse_via_csv(via_csv({R"(a.png,1,"{}",x,0,"{}","{}")"}), "n.csv"); });
  EXPECT_TRUE(has(e, "n.csv:2") && has(e, "region_count")) << e;
  // several region attributes and no "lesion": the class attribute must be named
  std::string two = R"(a.png,1,"{}",1,0,"{""name"":""rect"",""x"":1,""y"":1,""width"":2,""height"":2}","{""kind"":""CD"",""note"":""x""}")";
  e = expect_error([&] { parse_via_csv(via_csv({two}), "c.csv"); });
  EXPECT_TRUE(has(e, "c.csv:2") && has(e, "class-attr")) << e;
  ViaOptions named;
  named.class_attr = "kind";
  EXPECT_EQ(parse_via_csv(via_csv({two}), "c.csv", named).images[0].boxes[0].label, 2);
}

// ---- VIA JSON --------------------------------------------------------------------------------------
TEST(ViaJson, ProjectAnd1x) {
  const std::string project = R"({
    "_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
    "_via_img_metadata": {
      "a.png100": {"filename": "a.png", "size": 100, "file_attributes": {"patient_id": "P1"},
        "regions": [
          {"shape_attributes": {"name": "rect", "x": 3, "y": 4, "width": 20, "height": 10}, "region_attributes": {"lesion": "CD"}},
          {"shape_attributes": {"name": "ellipse", "cx": 50, "cy": 40, "rx": 8, "ry": 4}, "region_attributes": {"lesion": "GGO"}}]},
      "b.png5": {"filename": "b.png", "size": 5, "file_attributes": {}, "regions": []},
      "junk": {"size": 1}
    },
    "_via_attributes": {"region": {}, "file": {}},
    "_via_data_format_version": "2.0.10",
    "_via_image_id_list": ["b.png5", "a.png100"]})";
  ViaStats st;
  Dataset ds = parse_via_json(project, "p.json", {}, &st);
  ASSERT_EQ(ds.images.size(), 2u);
  EXPECT_EQ(ds.images[0].id, "b.png");  // _via_image_id_list order
  EXPECT_TRUE(ds.images[0].boxes.empty());
  const ImageRecord& a = ds.images[1];
  EXPECT_EQ(a.patient_id, "P1");
  ASSERT_EQ(a.boxes.size(), 2u);
  EXPECT_EQ(a.boxes[0].label, 2);
  EXPECT_FLOAT_EQ(a.boxes[0].x2, 23.f);
  EXPECT_FLOAT_EQ(a.boxes[1].x1, 42.f);  // no theta: axis-aligned
  EXPECT_FLOAT_EQ(a.boxes[1].y2, 44.f);
  EXPECT_EQ(st.entries_discarded, 1);

  // VIA 1.x: regions keyed "0","1",... (given out of order), extra fileref/base64 fields
  const std::string v1 = R"({"c.jpg12": {"fileref": "", "size": 12, "filename": "c.jpg", "base64_img_data": "",
      "file_attributes": {},
      "regions": {"1": {"shape_attributes": {"name": "circle", "cx": 10, "cy": 10, "r": 2}, "region_attributes": {"lesion": "GGO+CD"}},
                  "0": {"shape_attributes": {"name": "polygon", "all_points_x": [1, 4, 2, 1], "all_points_y": [1, 1, 6, 1]}, "region_attributes": {"lesion": "GGO"}}}}})";
  Dataset d1 = parse_via_json(v1, "v1.json");
  ASSERT_EQ(d1.images.size(), 1u);
  ASSERT_EQ(d1.images[0].boxes.size(), 2u);
  EXPECT_EQ(d1.images[0].boxes[0].label, 1);
  EXPECT_FLOAT_EQ(d1.images[0].boxes[0].y2, 6.f);
  EXPECT_EQ(d1.images[0].boxes[1].label, 3);
  EXPECT_FLOAT_EQ(d1.images[0].boxes[1].x1, 8.f);

  std::string e = expect_error([&] { parse_via_json("{\"a\": [1,", "broken.json"); });
  EXPECT_TRUE(has(e, "broken.json")) << e;
  e = expect_error([&] {
    parse_via_json(R"({"x1": {"filename": "x.png", "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": [1,2], "all_points_y": [1,2]}, "region_attributes": {"lesion": "GGO"}}]}})",
                   "short.json");
  });
  EXPECT_TRUE(has(e, "short.json: image 'x1' region 0") && has(e, "2 points")) << e;
}

// ---- COCO ------------------------------------------------------------------------------------------
TEST(Coco, ReadWriteRoundTrip) {
  Dataset ds = parse_via_csv(via_csv(hand_rows()), "hand.csv");
  ds.images[0].width = 120, ds.images[0].height = 100;
  ds.images[1].width = 64, ds.images[1].height = 64;
  std::string text = coco_to_json(ds);
  CocoStats st;
  Dataset back = parse_coco(text, "rt.json", {}, &st);
  EXPECT_EQ(back.class_names, ds.class_names);
  ASSERT_EQ(back.images.size(), 2u);
  EXPECT_EQ(back.images[0].patient_id, "P7");
  EXPECT_EQ(back.images[0].width, 120);
  EXPECT_EQ(st.negatives, 1);
  ASSERT_EQ(back.images[0].boxes.size(), ds.images[0].boxes.size());
  double max_err = 0;
  for (size_t i = 0; i < ds.images[0].boxes.size(); ++i) {
    const Box &x = back.images[0].boxes[i], &y = ds.images[0].boxes[i];
    EXPECT_EQ(x.label, y.label);
    for (auto d : {x.x1 - y.x1, x.y1 - y.y1, x.x2 - y.x2, x.y2 - y.y2}) max_err = std::max(max_err, double(std::abs(d)));
  }
  std::printf("[err] COCO round trip: max_abs=%.3e px\n", max_err);
  EXPECT_LT(max_err, 1e-4);
}

TEST(Coco, CategoriesCrowdAndErrors) {
  const std::string text = R"({"images": [{"id": 7, "file_name": "x.png", "width": 50, "height": 40},
                                           {"id": 9, "file_name": "y.png", "width": 50, "height": 40}],
    "annotations": [{"id": 1, "image_id": 7, "category_id": 12, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
                    {"id": 2, "image_id": 7, "category_id": 5, "bbox": [10.5, 20, 5, 6], "iscrowd": 1}],
    "categories": [{"id": 12, "name": "CD"}, {"id": 5, "name": "GGO"}]})";
  CocoStats st;
  Dataset ds = parse_coco(text, "c.json", {}, &st);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"GGO", "CD"}));  // sorted by category id
  ASSERT_EQ(ds.images[0].boxes.size(), 2u);
  EXPECT_EQ(ds.images[0].boxes[0].label, 2);
  EXPECT_FLOAT_EQ(ds.images[0].boxes[0].x2, 4.f);
  EXPECT_FLOAT_EQ(ds.images[0].boxes[0].y2, 6.f);
  EXPECT_EQ(ds.images[0].boxes[1].label, 1);
  EXPECT_FLOAT_EQ(ds.images[0].boxes[1].x2, 15.5f);
  EXPECT_EQ(st.crowd, 1);
  EXPECT_EQ(st.negatives, 1);
  CocoOptions o;
  o.class_names = default_class_names();
  o.skip_crowd = true;
  Dataset d2 = parse_coco(text, "c.json", o, &st);
  ASSERT_EQ(d2.images[0].boxes.size(), 1u);
  EXPECT_EQ(d2.images[0].boxes[0].label, 2);  // CD through the label map
  EXPECT_EQ(st.crowd_skipped, 1);
  CocoOptions strict;
  strict.class_names = {"GGO"};
  std::string e = expect_error([&] { parse_coco(text, "c.json", strict); });
  EXPECT_TRUE(has(e, "c.json") && has(e, "'CD'")) << e;
  std::string bad = text;
  bad.replace(bad.find("[10.5, 20, 5, 6]"), 16, "[10.5, 20, 5]");
  e = expect_error([&] { parse_coco(bad, "b.json"); });
  EXPECT_TRUE(has(e, "b.json: annotations[1]") && has(e, "bbox")) << e;
  e = expect_error([&] { parse_coco("[]", "r.json"); });
  EXPECT_TRUE(has(e, "results")) << e;
}

// ---- masks -----------------------------------------------------------------------------------------
TEST(Masks, HandMadeComponents) {
  // 8 x 6; A: diagonal GGO chain, B: CD blob, C: diagonal CD+GGO pair, D: single GGO, value 3 ignored
  const uint8_t m[6 * 8] = {
      1, 1, 0, 0, 0, 0, 0, 0,  //
      0, 0, 1, 0, 0, 0, 2, 2,  //
      0, 0, 0, 0, 0, 0, 2, 0,  //
      0, 0, 0, 0, 0, 0, 0, 0,  //
      0, 2, 0, 0, 0, 1, 0, 0,  //
      0, 0, 1, 0, 0, 0, 0, 3,  //
  };
  MaskStats st;
  auto comps = mask_components(m, 8, 6, {}, &st);
  ASSERT_EQ(comps.size(), 4u);  // 4-connectivity would give 6
  EXPECT_EQ(st.other_pixels, 1);
  MaskRule rule;
  rule.min_area = 2;
  MaskStats st2;
  auto boxes = mask_to_boxes(m, 8, 6, rule, &st2);
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(st2.small_dropped, 1);
  const float want[3][5] = {{0, 0, 3, 2, 1}, {6, 1, 8, 3, 2}, {1, 4, 3, 6, 3}};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(boxes[size_t(i)].x1, want[i][0]) << i;
    EXPECT_EQ(boxes[size_t(i)].y1, want[i][1]) << i;
    EXPECT_EQ(boxes[size_t(i)].x2, want[i][2]) << i;
    EXPECT_EQ(boxes[size_t(i)].y2, want[i][3]) << i;
    EXPECT_EQ(boxes[size_t(i)].label, int(want[i][4])) << i;
  }
  // configurable values: GGO = 3, CD = 2 -> the 1s are background now
  MaskRule alt;
  alt.ggo_value = 3;
  auto b3 = mask_to_boxes(m, 8, 6, alt);
  ASSERT_EQ(b3.size(), 3u);  // B, the 2 of C, and the 3
  EXPECT_EQ(b3[2].label, 1);
  expect_error([&] { mask_to_boxes(m, 0, 6); });
}

TEST(Masks, RandomMasksMatchUnionFind) {
  // Independent reference: two-pass union-find labelling with 8-neighbourhood.
  int total = 0, max_diff = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const int w = 37 + trial, h = 23 + 2 * trial;
    auto r = tu::random_vec<float>(size_t(w * h), 100 + trial, 0.0, 1.0);
    std::vector<uint8_t> m(size_t(w * h));
    for (size_t i = 0; i < m.size(); ++i) m[i] = r[i] < 0.55f ? 0 : r[i] < 0.8f ? 1 : r[i] < 0.97f ? 2 : 3;
    std::vector<int> parent(m.size());
    std::iota(parent.begin(), parent.end(), 0);
    std::function<int(int)> find = [&](int x) { return parent[x] == x ? x : parent[x] = find(parent[x]); };
    auto lesion = [&](int i) { return m[size_t(i)] == 1 || m[size_t(i)] == 2; };
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        int i = y * w + x;
        if (!lesion(i)) continue;
        const int nb[4][2] = {{-1, 0}, {-1, -1}, {0, -1}, {1, -1}};
        for (auto& d : nb) {
          int xx = x + d[0], yy = y + d[1];
          if (xx < 0 || xx >= w || yy < 0) continue;
          int j = yy * w + xx;
          if (lesion(j)) parent[size_t(find(i))] = find(j);
        }
      }
    std::map<int, std::array<int, 7>> ref;  // root -> x1,y1,x2,y2,area,ggo,cd
    for (int i = 0; i < w * h; ++i) {
      if (!lesion(i)) continue;
      auto it = ref.find(find(i));
      int x = i % w, y = i / w;
      if (it == ref.end()) it = ref.insert({find(i), {x, y, x + 1, y + 1, 0, 0, 0}}).first;
      auto& a = it->second;
      a[0] = std::min(a[0], x), a[1] = std::min(a[1], y), a[2] = std::max(a[2], x + 1), a[3] = std::max(a[3], y + 1);
      a[4]++, a[5] += m[size_t(i)] == 1, a[6] += m[size_t(i)] == 2;
    }
    auto comps = mask_components(m.data(), w, h);
    ASSERT_EQ(comps.size(), ref.size()) << "trial " << trial;
    std::vector<std::array<int, 7>> a, b;
    for (auto& [k, v] : ref) a.push_back(v);
    for (auto& c : comps) b.push_back({c.x1, c.y1, c.x2, c.y2, c.area, c.ggo_pixels, c.cd_pixels});
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    for (size_t i = 0; i < a.size(); ++i)
      for (int k = 0; k < 7; ++k) max_diff = std::max(max_diff, std::abs(a[i][size_t(k)] - b[i][size_t(k)]));
    total += int(comps.size());
  }
  std::printf("[err] mask components vs union-find: %d components, max_abs=%d\n", total, max_diff);
  EXPECT_EQ(max_diff, 0);
}

// ---- label map -------------------------------------------------------------------------------------
TEST(LabelMap, ReadWrite) {
  const std::string text = "# classes\nitem {\n  id: 2\n  name: \"CD\"\n}\nitem { name: 'GGO' id: 1 display_name: 'ground glass' }\n"
                           "item: { id: 3, name: 'GGO+CD' }\n";
  auto names = parse_label_map(text, "lm.pbtxt");
  EXPECT_EQ(names, default_class_names());
  EXPECT_EQ(parse_label_map(label_map_to_text({"a'b", "c"})), (std::vector<std::string>{"a'b", "c"}));
  std::string e = expect_error([&] { parse_label_map("item { id: 1 name: 'A' }\nitem { id: 3 name: 'B' }", "gap.pbtxt"); });
  EXPECT_TRUE(has(e, "gap.pbtxt:2") && has(e, "id 3")) << e;
  e = expect_error([&] { parse_label_map("item { id: 0 name: 'bg' }", "z.pbtxt"); });
  EXPECT_TRUE(has(e, "z.pbtxt:1") && has(e, "id 0")) << e;
  e = expect_error([&] { parse_label_map("item { id: 1 name: 'A' }\nitem { id: 1 name: 'B' }", "d.pbtxt"); });
  EXPECT_TRUE(has(e, "used twice")) << e;
  e = expect_error([&] { parse_label_map("item { id: 1 name: A }", "q.pbtxt"); });
  EXPECT_TRUE(has(e, "q.pbtxt:1") && has(e, "quoted")) << e;
  std::string dir = tmp_dir("labelmap");
  write_label_map(dir + "/label_map.pbtxt", {"GGO", "CD"});
  EXPECT_EQ(read_label_map(dir + "/label_map.pbtxt"), (std::vector<std::string>{"GGO", "CD"}));
  fs::remove_all(dir);
}

// ---- MedSeg (real data; skipped when absent) -------------------------------------------------------
TEST(MedSeg, ViaCsvCountsMatchReadme) {
  REQUIRE_MEDSEG();
  // README table: train GGO 239, CD 38, GGO+CD 78 (50 images); test 234, 44, 97 (48 images)
  const int want[2][4] = {{50, 239, 38, 78}, {48, 234, 44, 97}};
  const char* split[2] = {"train", "test"};
  for (int s = 0; s < 2; ++s) {
    ViaStats st;
    Dataset ds = read_via_csv(medseg_dir() + "/via/" + split[s] + "_regions.csv", {}, &st);
    int per[4] = {0, 0, 0, 0};
    for (auto& r : ds.images)
      for (auto& b : r.boxes) per[b.label]++;
    std::printf("[medseg] via %-5s: %zu images, GGO %d, CD %d, GGO+CD %d, negatives %d\n", split[s], ds.images.size(),
                per[1], per[2], per[3], st.negatives);
    EXPECT_EQ(int(ds.images.size()), want[s][0]);
    for (int c = 1; c <= 3; ++c) EXPECT_EQ(per[c], want[s][c]) << split[s] << " class " << c;
  }
}

TEST(MedSeg, MasksAgreeWithViaPolygons) {
  REQUIRE_MEDSEG();
  const char* split[2] = {"train", "test"};
  for (int s = 0; s < 2; ++s) {
    Dataset via = read_via_csv(medseg_dir() + "/via/" + split[s] + "_regions.csv");
    int per_mask[4] = {0, 0, 0, 0}, per_via[4] = {0, 0, 0, 0}, count_mismatch = 0, label_mismatch = 0;
    double worst_corner = 0, sum_iou = 0;
    int matched = 0;
    for (auto& r : via.images) {
      Image m = read_png_indices(medseg_dir() + "/masks/" + split[s] + "/" + fs::path(r.id).stem().string() + ".png");
      std::vector<uint8_t> px(m.data.begin(), m.data.end());
      MaskRule rule;
      rule.min_area = 64;  // as the README says the polygons were made
      auto boxes = mask_to_boxes(px.data(), m.width, m.height, rule);
      for (auto& b : boxes) per_mask[b.label]++;
      for (auto& b : r.boxes) per_via[b.label]++;
      count_mismatch += boxes.size() != r.boxes.size();
      // match each VIA box to the mask box of highest IoU
      for (auto& v : r.boxes) {
        double best = 0;
        const Box* bb = nullptr;
        for (auto& b : boxes) {
          double iw = std::min(v.x2, b.x2) - std::max(v.x1, b.x1), ih = std::min(v.y2, b.y2) - std::max(v.y1, b.y1);
          if (iw <= 0 || ih <= 0) continue;
          double inter = iw * ih, iou = inter / (v.width() * v.height() + b.width() * b.height() - inter);
          if (iou > best) best = iou, bb = &b;
        }
        if (!bb) continue;
        ++matched;
        sum_iou += best;
        label_mismatch += bb->label != v.label;
        // polygon vertices run through boundary pixel coordinates: x2/y2 are one less than the exclusive edge
        for (double d : {double(v.x1 - bb->x1), double(v.y1 - bb->y1), double(v.x2 + 1 - bb->x2), double(v.y2 + 1 - bb->y2)})
          worst_corner = std::max(worst_corner, std::abs(d));
      }
    }
    std::printf("[medseg] %-5s masks: GGO %d, CD %d, GGO+CD %d | via: GGO %d, CD %d, GGO+CD %d | images with count "
                "mismatch %d, matched %d, mean IoU %.4f, label mismatches %d, max corner diff %.1f px\n",
                split[s], per_mask[1], per_mask[2], per_mask[3], per_via[1], per_via[2], per_via[3], count_mismatch,
                matched, matched ? sum_iou / matched : 0.0, label_mismatch, worst_corner);
    for (int c = 1; c <= 3; ++c) EXPECT_EQ(per_mask[c], per_via[c]) << split[s] << " class " << c;
    EXPECT_EQ(count_mismatch, 0);
    EXPECT_EQ(label_mismatch, 0);
    EXPECT_GT(sum_iou / std::max(matched, 1), 0.9);
  }
}

// ---- `ctdet prepare` on MedSeg (runs the built ctdet binary; skipped when it is not built) ------------
namespace {
struct Prepared {
  std::map<std::string, std::vector<ExampleImage>> split;  // train/val/test -> records
  int per_class[4] = {0, 0, 0, 0};
};
Prepared read_prepared(const std::string& dir) {
  Prepared p;
  std::vector<std::string> names = read_label_map(dir + "/label_map.pbtxt");
  for (auto& e : fs::directory_iterator(dir)) {
    std::string f = e.path().filename().string();
    if (e.path().extension() != ".tfrecord") continue;
    std::string sp = f.substr(0, f.find('-'));
    for (auto& rec : read_tfrecord_file(e.path().string())) {
      ExampleImage ex = decode_example(rec, names, f);
      for (auto& b : ex.record.boxes) p.per_class[b.label]++;
      p.split[sp].push_back(std::move(ex));
    }
  }
  return p;
}
int run_cli(const std::string& args) {
  std::string cmd = std::string(CTDET_BINARY_DIR) + "/ctdet prepare " + args;
  auto t0 = std::chrono::steady_clock::now();
  int rc = std::system(cmd.c_str());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[time] ctdet prepare %.3f s (exit %d)\n", s, rc);
  return rc;
}
}  // namespace

TEST(MedSeg, PrepareWritesPatientSplitRecords) {
  REQUIRE_MEDSEG();
  if (!fs::exists(std::string(CTDET_BINARY_DIR) + "/ctdet"))
    GTEST_SKIP() << "the ctdet binary is not built in " << CTDET_BINARY_DIR << " (build target ctdet_cli)";
  const std::string m = medseg_dir(), dir = tmp_dir("prepare");
  // a made-up patient mapping: slice id / 5 -> patient, to check that no patient spans two splits
  std::string pcsv = "file,patient_id\n";
  for (auto& e : fs::directory_iterator(m + "/images/train")) {
    std::string f = e.path().filename().string();
    pcsv += f + ",P" + std::to_string(std::stoi(e.path().stem().string()) / 5) + "\n";
  }
  write_file_atomic(dir + "/patients.csv", pcsv);
  const std::string common = "--images " + m + "/images/train --split 0.6,0.2,0.2 --shards 2 ";
  ASSERT_EQ(run_cli(common + "--via-csv " + m + "/via/train_regions.csv --patients " + dir +
                    "/patients.csv --seed 5 --out " + dir + "/a"),
            0);
  Prepared a = read_prepared(dir + "/a");
  std::printf("[medseg] prepare via: GGO %d, CD %d, GGO+CD %d; images train %zu val %zu test %zu\n", a.per_class[1],
              a.per_class[2], a.per_class[3], a.split["train"].size(), a.split["val"].size(), a.split["test"].size());
  EXPECT_EQ(a.per_class[1], 239);
  EXPECT_EQ(a.per_class[2], 38);
  EXPECT_EQ(a.per_class[3], 78);
  EXPECT_EQ(a.split["train"].size() + a.split["val"].size() + a.split["test"].size(), 50u);
  std::map<std::string, std::set<std::string>> splits_of_patient;
  for (auto& [sp, recs] : a.split)
    for (auto& ex : recs) {
      EXPECT_FALSE(ex.record.patient_id.empty());
      EXPECT_EQ(ex.format, "jpeg");
      EXPECT_EQ(ex.encoded, read_file(m + "/images/train/" + ex.record.file));
      splits_of_patient[ex.record.patient_id].insert(sp);
    }
  for (auto& [p, s] : splits_of_patient) EXPECT_EQ(s.size(), 1u) << "patient " << p << " in several splits";
  // same seed -> identical files; existing outputs are not overwritten without --force
  ASSERT_EQ(run_cli(common + "--via-csv " + m + "/via/train_regions.csv --patients " + dir +
                    "/patients.csv --seed 5 --out " + dir + "/b"),
            0);
  for (auto& e : fs::directory_iterator(dir + "/a")) {
    if (e.path().extension() != ".tfrecord") continue;
    EXPECT_EQ(read_file(e.path().string()), read_file(dir + "/b/" + e.path().filename().string())) << e.path();
  }
  EXPECT_NE(run_cli(common + "--via-csv " + m + "/via/train_regions.csv --out " + dir + "/a"), 0);
  // the mask path gives the same boxes per class (components >= 64 px, as the polygons were made)
  ASSERT_EQ(run_cli(common + "--masks " + m + "/masks/train --min-area 64 --force --out " + dir + "/a"), 0);
  Prepared k = read_prepared(dir + "/a");
  std::printf("[medseg] prepare masks: GGO %d, CD %d, GGO+CD %d\n", k.per_class[1], k.per_class[2], k.per_class[3]);
  EXPECT_EQ(k.per_class[1], 239);
  EXPECT_EQ(k.per_class[2], 38);
  EXPECT_EQ(k.per_class[3], 78);
  EXPECT_EQ(k.split["train"].size() + k.split["val"].size() + k.split["test"].size(), 50u);
  fs::remove_all(dir);
}
