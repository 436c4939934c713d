// `ctdet report` pieces: SVG chart pixel mapping, overlays (box pixels, font, downscale), base64, training
// log parsing, and the HTML report built from a hand-made evaluation whose numbers are computed by hand.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/overlay.h"
#include "io/report.h"
#include "io/svg_plot.h"
#include "nn/error.h"
#include "test_util.h"
#include "train/evaluation.h"
#include "train/train_log.h"

using namespace ctdet;
namespace fs = std::filesystem;

namespace {

std::string tmp_dir(const std::string& name) {
  const std::string d = std::string(CTDET_BINARY_DIR) + "/report_test_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// All numbers of an attribute like points="1.00,2.00 3.00,4.00" or cx="..." in document order.
std::vector<double> numbers_in(const std::string& s) {
  std::vector<double> v;
  std::regex num(R"(-?[0-9]+(\.[0-9]+)?)");
  for (auto it = std::sregex_iterator(s.begin(), s.end(), num); it != std::sregex_iterator(); ++it)
    v.push_back(std::stod(it->str()));
  return v;
}

std::vector<std::string> attr_values(const std::string& svg, const std::string& tag, const std::string& attr) {
  std::vector<std::string> out;
  std::regex re("<" + tag + "[^>]*? " + attr + "=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1].str());
  return out;
}

// Tags open and close in order (void elements and "/>" excepted); returns "" or the first problem.
std::string tag_balance(const std::string& html) {
  static const std::set<std::string> kVoid = {"meta", "img", "br", "hr", "link", "input", "col", "wbr"};
  std::vector<std::string> stack;
  size_t pos = 0;
  while ((pos = html.find('<', pos)) != std::string::npos) {
    size_t end = html.find('>', pos);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(pos);
    std::string tag = html.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '!') continue;  // doctype, comment
    const bool closing = tag[0] == '/';
    const bool self = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \t\n/"));
    if (closing) {
      if (stack.empty() || stack.back() != name)
        return "</" + name + "> closes <" + (stack.empty() ? std::string("nothing") : stack.back()) + ">";
      stack.pop_back();
    } else if (!self && !kVoid.count(name)) {
      stack.push_back(name);
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

Rgb pixel(const Image& img, int x, int y) {
  return Rgb{uint8_t(img.at(y, x, 0)), uint8_t(img.at(y, x, 1)), uint8_t(img.at(y, x, 2))};
}

}  // namespace

// ---------------------------------------------------------------------------------------------- SVG
TEST(SvgPlot, MapsDataPointsToExpectedPixels) {
  PlotSeries s;
  s.x = {0, 2.5, 5, 10};
  s.y = {0, 0.25, 0.5, 1};
  s.markers = true;
  PlotOptions o;
  o.width = 400, o.height = 300, o.left = 50, o.right = 10, o.top = 20, o.bottom = 30;
  o.x_min = 0, o.x_max = 10, o.y_min = 0, o.y_max = 1;
  const std::string svg = svg_line_chart({s}, o);
  // By hand: plot area 340 x 250 at (50, 20); px = 50 + x/10*340, py = 20 + 250 - y*250.
  const std::vector<double> want = {50, 270, 135, 207.5, 220, 145, 390, 20};
  const auto pts = attr_values(svg, "polyline", "points");
  ASSERT_EQ(pts.size(), 1u) << svg;
  const auto got = numbers_in(pts[0]);
  auto e = ctdet::testing::compare(got, want);
  ctdet::testing::print_err("svg polyline pixel coordinates", e);
  EXPECT_LE(e.max_abs, 0.005);
  std::vector<double> circles;
  const auto cx = attr_values(svg, "circle class=\"marker\"", "cx"), cy = attr_values(svg, "circle class=\"marker\"", "cy");
  ASSERT_EQ(cx.size(), 4u);
  for (size_t i = 0; i < cx.size(); ++i) circles.push_back(std::stod(cx[i])), circles.push_back(std::stod(cy[i]));
  e = ctdet::testing::compare(circles, want);
  ctdet::testing::print_err("svg marker pixel coordinates", e);
  EXPECT_LE(e.max_abs, 0.005);
  EXPECT_EQ(tag_balance(svg), "");
}

TEST(SvgPlot, LogAxisAndClamping) {
  PlotSeries s;
  s.x = {0.125, 1, 8, 0, 100};  // 0 clamps to the left edge, 100 to the right
  s.y = {0, 0.5, 1, 0.5, 2};    // 2 clamps to the top
  PlotOptions o;
  o.width = 400, o.height = 300, o.left = 50, o.right = 10, o.top = 20, o.bottom = 30;
  o.log_x = true;
  o.x_min = 0.125, o.x_max = 8, o.y_min = 0, o.y_max = 1;
  const PlotFrame f = plot_frame({s}, o);
  // log2 axis from -3 to 3 over 340 px: x = 1 -> 50 + 3/6*340 = 220.
  const std::vector<double> want = {50, 270, 220, 145, 390, 20, 50, 145, 390, 20};
  std::vector<double> got;
  for (size_t i = 0; i < s.x.size(); ++i) got.push_back(f.px(s.x[i])), got.push_back(f.py(s.y[i]));
  auto e = ctdet::testing::compare(got, want);
  ctdet::testing::print_err("log-x frame mapping", e);
  EXPECT_LE(e.max_abs, 1e-9);
  const std::string svg = svg_line_chart({s}, o);
  EXPECT_NE(svg.find(">1/8</text>"), std::string::npos);  // power-of-two tick labels
  EXPECT_NE(svg.find(">8</text>"), std::string::npos);
}

TEST(SvgPlot, AutoRangeNiceTicksEscapingAndErrors) {
  double lo = 0.13, hi = 0.87;
  const auto t = nice_ticks(lo, hi);  // raw step 0.148 -> 0.1; range widened to [0.1, 0.9]
  EXPECT_NEAR(lo, 0.1, 1e-12);
  EXPECT_NEAR(hi, 0.9, 1e-12);
  ASSERT_EQ(t.size(), 9u);
  EXPECT_NEAR(t[4], 0.5, 1e-12);

  PlotSeries s;
  s.name = "<b>\"x\"&</b>";
  s.x = {1, 2};
  s.y = {3, 47};
  PlotOptions o;
  o.title = "t<i>";
  const PlotFrame f = plot_frame({s}, o);  // y auto: 44/5 = 8.8 -> step 10 -> [0, 50]
  EXPECT_DOUBLE_EQ(f.y_min, 0);
  EXPECT_DOUBLE_EQ(f.y_max, 50);
  const std::string svg = svg_line_chart({s}, o);
  EXPECT_EQ(svg.find("<b>"), std::string::npos);
  EXPECT_EQ(svg.find("t<i>"), std::string::npos);
  EXPECT_NE(svg.find("&lt;b&gt;&quot;x&quot;&amp;&lt;/b&gt;"), std::string::npos);
  EXPECT_EQ(tag_balance(svg), "");

  PlotOptions bad;
  bad.title = "flat";
  bad.x_min = 1, bad.x_max = 1;
  try {
    plot_frame({s}, bad);
    ADD_FAILURE() << "expected an error for an empty x range";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("flat"), std::string::npos);
  }
  PlotOptions logbad;
  logbad.log_y = true;
  logbad.y_min = 0;
  EXPECT_THROW(plot_frame({s}, logbad), Error);
}

// ------------------------------------------------------------------------------------------ overlay
TEST(Overlay, DrawsDetectionAndGroundTruthAtTheRightPixels) {
  Image gray(60, 50, 1, 8);
  for (auto& v : gray.data) v = 100;
  const Rgb g100{100, 100, 100};
  Detection d;
  d.image_id = "a";
  d.label = 2;  // CD: red
  d.score = 0.9f;
  d.x1 = 10, d.y1 = 15, d.x2 = 30, d.y2 = 35;  // pixel columns 10..29, rows 15..34
  Box gt;
  gt.x1 = 53, gt.y1 = 2, gt.x2 = 59, gt.y2 = 8;  // columns 53..58, rows 2..7, green dashed 1px
  gt.label = 1;
  OverlayOptions oo;
  oo.thickness = 2;
  oo.font_scale = 1;
  const Image out = draw_overlay(gray, {gt}, {d}, default_class_names(), oo);
  ASSERT_EQ(out.channels, 3);
  const Rgb red = class_color(2, "CD");
  EXPECT_EQ(red, (Rgb{230, 20, 20}));
  int bad = 0;
  auto expect = [&](int x, int y, Rgb c, const char* what) {
    const Rgb p = pixel(out, x, y);
    if (!(p == c)) {
      ++bad;
      ADD_FAILURE() << what << " at (" << x << "," << y << "): got " << int(p.r) << "," << int(p.g) << "," << int(p.b)
                    << " want " << int(c.r) << "," << int(c.g) << "," << int(c.b);
    }
  };
  // Outline: 2 pixels inward on every edge.
  for (int x = 10; x <= 29; ++x)
    for (int y : {15, 16, 33, 34}) expect(x, y, red, "top/bottom edge");
  for (int y = 15; y <= 34; ++y)
    for (int x : {10, 11, 28, 29}) expect(x, y, red, "left/right edge");
  // Interior and the ring just outside (except the label above) are untouched.
  for (int y = 17; y <= 32; ++y)
    for (int x = 12; x <= 27; ++x) expect(x, y, g100, "interior");
  for (int y = 15; y <= 35; ++y) expect(9, y, g100, "left of box"), expect(30, y, g100, "right of box");
  for (int x = 9; x <= 30; ++x) expect(x, 35, g100, "below box");
  // Label "CD 0.90" above the box: 9 rows (7 + 2 padding) ending at row 14, red background, white text
  // (red is dark). 'C' top row is .###. -> column 0 background, columns 1..3 text.
  expect(10, 6, red, "label background corner");
  expect(11, 7, red, "C row 0 col 0");
  expect(12, 7, Rgb{255, 255, 255}, "C row 0 col 1");
  expect(13, 7, Rgb{255, 255, 255}, "C row 0 col 2");
  expect(11, 8, Rgb{255, 255, 255}, "C row 1 col 0");
  expect(10, 5, g100, "above the label");
  const int label_w = text_width("CD 0.90", 1) + 2;
  EXPECT_EQ(label_w, (7 * 6 - 1) + 2);
  expect(10 + label_w, 10, g100, "right of the label");
  // Ground truth, dashed 4 on / 3 off from each edge start: top row columns 53..56 on, 57 off; column 58 is the
  // right edge (its own dash starts at row 2), rows 2..5 on, 6..7 off.
  for (int x = 53; x <= 56; ++x) expect(x, 2, kGroundTruthColor, "gt top dash");
  expect(57, 2, g100, "gt top gap");
  for (int y = 2; y <= 5; ++y) expect(58, y, kGroundTruthColor, "gt right dash");
  expect(58, 6, g100, "gt right gap");
  expect(55, 4, g100, "gt interior");
  std::printf("[err] overlay pixel mismatches: %d\n", bad);
}

TEST(Overlay, FractionalBoxesLabelInsideAndClipping) {
  Image img(20, 20, 3, 8);
  Detection d;
  d.label = 1;  // GGO: yellow, dark text
  d.score = 0.5f;
  d.x1 = 2.5f, d.y1 = 0.2f, d.x2 = 25.0f, d.y2 = 9.1f;  // columns 2..24 (clipped at 19), rows 0..9
  OverlayOptions oo;
  oo.thickness = 1;
  oo.labels = false;
  Image out = draw_overlay(img, {}, {d}, default_class_names(), oo);
  const Rgb y = class_color(1, "ggo");
  EXPECT_EQ(y, (Rgb{255, 220, 0}));
  EXPECT_EQ(pixel(out, 2, 5), y);
  EXPECT_EQ(pixel(out, 1, 5), (Rgb{0, 0, 0}));
  EXPECT_EQ(pixel(out, 10, 9), y);   // bottom row = ceil(9.1) - 1
  EXPECT_EQ(pixel(out, 10, 10), (Rgb{0, 0, 0}));
  EXPECT_EQ(pixel(out, 19, 3), (Rgb{0, 0, 0}));  // right edge is outside the image
  // No room above: the label goes below the box (rows 10..18), the interior stays untouched.
  oo.labels = true;
  out = draw_overlay(img, {}, {d}, default_class_names(), oo);
  EXPECT_EQ(pixel(out, 3, 10), y);
  EXPECT_EQ(pixel(out, 3, 18), y);
  EXPECT_EQ(pixel(out, 3, 1), (Rgb{0, 0, 0}));
  // No room above or below: inside, under the top edge (row 0 + thickness).
  Detection tall = d;
  tall.y2 = 19;
  out = draw_overlay(img, {}, {tall}, default_class_names(), oo);
  EXPECT_EQ(pixel(out, 3, 1), y);
  // Two boxes at nearly the same place: the better one takes the place above, the other goes below.
  Image big(100, 100, 3, 8);
  const Detection a{"i", 1, 0.9f, 10, 30, 40, 60}, b{"i", 2, 0.8f, 12, 32, 42, 62};
  out = draw_overlay(big, {}, {b, a}, default_class_names(), oo);
  EXPECT_EQ(pixel(out, 11, 22), y);                       // a's label: rows 21..29
  EXPECT_EQ(pixel(out, 12, 62), class_color(2, "CD"));    // b's label: rows 62..70 (box rows 32..61)
  EXPECT_EQ(pixel(out, 12, 70), class_color(2, "CD"));
  EXPECT_EQ(pixel(out, 12, 71), (Rgb{0, 0, 0}));
  EXPECT_EQ(pixel(out, 13, 24), y);                       // not covered by b's label
  d.x1 = NAN;
  EXPECT_THROW(draw_overlay(img, {}, {d}, default_class_names(), oo), Error);
}

TEST(Overlay, ToRgb8AndDownscale) {
  Image g16(2, 1, 1, 16);
  g16.data = {65535, 32768};
  const Image rgb = to_rgb8(g16);
  EXPECT_EQ(rgb.at(0, 0, 2), 255);
  EXPECT_EQ(rgb.at(0, 1, 0), 128);  // 32768 * 255 / 65535 = 127.5019 -> 128
  // Area average, ratio 1.5: out0 = (0 + 90*0.5)/1.5 = 30, out1 = (90*0.5 + 180)/1.5 = 150.
  Image row(3, 1, 1, 8);
  row.data = {0, 90, 180};
  const Image half = downscale_to_fit(row, 2);
  ASSERT_EQ(half.width, 2);
  ASSERT_EQ(half.height, 1);
  EXPECT_EQ(half.at(0, 0), 30);
  EXPECT_EQ(half.at(0, 1), 150);
  // 2x2 blocks average exactly; aspect kept (8x4 -> 4x2).
  Image blk(8, 4, 3, 8);
  for (int yy = 0; yy < 4; ++yy)
    for (int xx = 0; xx < 8; ++xx)
      for (int c = 0; c < 3; ++c) blk.at(yy, xx, c) = uint16_t((xx + yy * 8) * 3 + c);
  const Image small = downscale_to_fit(blk, 4);
  ASSERT_EQ(small.width, 4);
  ASSERT_EQ(small.height, 2);
  double worst = 0;
  for (int yy = 0; yy < 2; ++yy)
    for (int xx = 0; xx < 4; ++xx)
      for (int c = 0; c < 3; ++c) {
        const double want = (blk.at(2 * yy, 2 * xx, c) + blk.at(2 * yy, 2 * xx + 1, c) + blk.at(2 * yy + 1, 2 * xx, c) +
                             blk.at(2 * yy + 1, 2 * xx + 1, c)) / 4.0;
        worst = std::max(worst, std::abs(small.at(yy, xx, c) - std::round(want)));
      }
  std::printf("[err] downscale 2x2 block means max_abs=%.3e\n", worst);
  EXPECT_EQ(worst, 0);
}

// ------------------------------------------------------------------------------------ small pieces
TEST(Report, Base64Rfc4648Vectors) {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                   {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, out] : v) EXPECT_EQ(base64_encode(std::string(in)), out) << in;
  const std::string png_sig("\x89PNG\r\n\x1a\n", 8);
  EXPECT_EQ(base64_encode(png_sig), "iVBORw0KGgo=");
}

TEST(Report, TrainLogCsvAndJsonLines) {
  const TrainMetrics c = parse_train_log(
      "# ctdet train log\nloss_total,step,lr\n1.5,10,0.01\n,20,0.01\n\n0.75,30,0.001\n", "log.csv");
  ASSERT_EQ(c.columns, (std::vector<std::string>{"step", "loss_total", "lr"}));
  ASSERT_EQ(c.rows.size(), 3u);
  EXPECT_EQ(c.column("step"), (std::vector<double>{10, 20, 30}));
  EXPECT_TRUE(std::isnan(c.column("loss_total")[1]));
  EXPECT_DOUBLE_EQ(c.column("lr")[2], 0.001);
  const TrainMetrics j = parse_train_log(
      "{\"iter\": 1, \"total_loss\": 2.0, \"loss_cls\": 0.5, \"time\": \"12:00\"}\n"
      "{\"iter\": 2, \"total_loss\": null, \"lr\": 0.1}\n",
      "metrics.jsonl");
  ASSERT_EQ(j.columns, (std::vector<std::string>{"step", "loss_total", "loss_cls", "lr"}));
  EXPECT_EQ(j.column("step"), (std::vector<double>{1, 2}));
  EXPECT_TRUE(std::isnan(j.column("loss_cls")[1]));
  EXPECT_TRUE(std::isnan(j.column("lr")[0]));
  try {
    parse_train_log("step,loss_total\n1,0.5\n2,abc\n", "bad.csv");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("bad.csv:3"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("abc"), std::string::npos);
  }
  EXPECT_THROW(parse_train_log("loss,lr\n1,2\n", "nostep.csv"), Error);
  // TF OD API tag names map onto the report's columns.
  const TrainMetrics tf = parse_train_log("step,Loss/total_loss,Loss/RPNLoss/objectness_loss,learning_rate\n5,1,0.25,0.5\n",
                                          "tf.csv");
  EXPECT_EQ(tf.columns, (std::vector<std::string>{"step", "loss_total", "loss_rpn_cls", "lr"}));
}

TEST(Report, ReadsTheTrainersMetricsFolder) {
  // Written by the trainer's own logger (train/train_log.h), read back through the run folder.
  const std::string dir = tmp_dir("run");
  {
    TrainLogOptions o;
    o.tensorboard = false;
    TrainLog log(dir, -1, o);
    log.log(10, {{"loss_total", 1.5}, {"loss_cls", 0.5}, {"lr", 0.01}}, 100.0);
    log.log(20, {{"loss_total", NAN}, {"loss_cls", 0.25}, {"lr", 0.001}}, 101.0);
    log.close();
  }
  const TrainMetrics m = read_train_log(dir);
  EXPECT_EQ(m.columns, (std::vector<std::string>{"step", "wall_time", "loss_total", "loss_cls", "lr"}));
  EXPECT_EQ(m.column("step"), (std::vector<double>{10, 20}));
  EXPECT_DOUBLE_EQ(m.column("loss_total")[0], 1.5);
  EXPECT_TRUE(std::isnan(m.column("loss_total")[1]));
  EXPECT_DOUBLE_EQ(m.column("lr")[1], 0.001);
  fs::remove(dir + "/metrics.csv");
  const TrainMetrics j = read_train_log(dir);  // falls back to metrics.jsonl
  EXPECT_EQ(j.column("loss_cls"), (std::vector<double>{0.5, 0.25}));
  fs::remove(dir + "/metrics.jsonl");
  try {
    read_train_log(dir);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("metrics.csv"), std::string::npos);
  }
}

TEST(Report, MissingEvalFolderIsAClearError) {
  const std::string missing = std::string(CTDET_BINARY_DIR) + "/report_test_no_such_folder";
  fs::remove_all(missing);
  try {
    read_eval_folder(missing);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
  const std::string empty = tmp_dir("empty");
  try {
    read_eval_folder(empty);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("eval_report.json"), std::string::npos);
  }
  // A JSON without the AP section names the key.
  write_file_atomic(empty + "/eval_report.json", "{\"counts\": {}}");
  ReportInputs in;
  in.eval = read_eval_folder(empty);
  EXPECT_EQ(in.eval.missing.size(), 3u);
  try {
    render_report_html(in);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::printf("[msg] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("'ap'"), std::string::npos);
  }
}

// ------------------------------------------------------------------------------- the whole report
namespace {

// Image "a" (patient P1): two GGO lesions; detections: one exact hit (0.9) and one false positive (0.8).
// Image "b" (patient P2): no lesions, no detections.
Dataset small_gt(const std::vector<std::string>& classes, const std::string& image_dir) {
  Dataset gt;
  gt.class_names = classes;
  ImageRecord a;
  a.id = "a.png";
  a.file = image_dir + "/a.png";
  a.width = a.height = 256;
  a.patient_id = "P1";
  a.boxes = {Box{10, 10, 50, 50, 1}, Box{100, 100, 140, 140, 1}};
  ImageRecord b;
  b.id = "b.png";
  b.file = image_dir + "/b.png";
  b.width = b.height = 256;
  b.patient_id = "P2";
  gt.images = {a, b};
  return gt;
}

std::vector<Detection> small_dets() {
  return {Detection{"a.png", 1, 0.9f, 10, 10, 50, 50}, Detection{"a.png", 1, 0.8f, 200, 200, 240, 240}};
}

std::string make_eval_folder(const Dataset& gt, const std::vector<Detection>& dets, const std::string& name) {
  EvalOptions opt;
  opt.bootstrap = 0;
  const std::string dir = tmp_dir(name);
  write_eval_outputs(evaluate(gt, dets, opt), dir);
  return dir;
}

}  // namespace

TEST(Report, TablesCarryHandComputedNumbers) {
  const std::string img_dir = tmp_dir("images");
  for (const char* f : {"a.png", "b.png"}) {
    Image im(256, 256, 1, 8);
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x) im.at(y, x) = uint16_t((x + y) / 2);
    write_png(img_dir + "/" + f, im);
  }
  const Dataset gt = small_gt({"GGO", "CD"}, img_dir);
  const auto dets = small_dets();
  const std::string dir = make_eval_folder(gt, dets, "eval");

  ReportInputs in;
  in.eval = read_eval_folder(dir);
  EXPECT_TRUE(in.eval.missing.empty());
  in.has_train_log = true;
  in.train_log = parse_train_log("step,loss_total,loss_rpn_cls,lr\n0,2.0,0.7,0.01\n100,1.0,0.3,0.01\n", "t.csv");
  in.train_log_name = "t.csv";
  GalleryOptions go;
  const auto cases = select_gallery_cases(gt, dets, go);
  ASSERT_EQ(cases.size(), 1u);  // only "a" has anything to show: 1 TP, 1 FP, 1 FN -> a miss
  EXPECT_EQ(cases[0].group, "miss");
  EXPECT_EQ(cases[0].tp, 1);
  EXPECT_EQ(cases[0].fp, 1);
  EXPECT_EQ(cases[0].fn, 1);
  in.gallery.push_back(make_gallery_item(gt.images[0], dets, gt.class_names, cases[0], 0.5f, 128));
  EXPECT_EQ(in.gallery[0].width, 128);
  EXPECT_EQ(in.gallery[0].height, 128);
  const std::string html = render_report_html(in);
  write_file_atomic(dir + "/report.html", html);

  // AP50 of GGO by hand: ranked TP, FP -> precision 1 up to recall 0.5, nothing beyond: 51 of 101 recall
  // points -> 51/101 = 0.50495. The CD class has no ground truth: n/a, out of the mean.
  EXPECT_NE(html.find("<tr><td class=\"name\">GGO</td><td>2</td><td>2</td><td>0.5050</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>1</td><td>1</td><td>1</td></tr>"), std::string::npos);  // TP FP FN of GGO
  EXPECT_NE(html.find("<tr><td class=\"name\">CD</td><td>0</td><td>0</td><td>n/a</td>"), std::string::npos);
  EXPECT_NE(html.find("mean over 1 classes</td><td></td><td></td><td>0.5050</td>"), std::string::npos);
  // Image level: 2/2 correct; Wilson lower bound for 2/2 = 2 / (2 + z^2) = 0.3424; for 1/1 = 0.2065.
  EXPECT_NE(html.find("Image accuracy</td><td>100.0%</td><td>2/2</td><td>34.2% – 100.0%</td>"), std::string::npos);
  EXPECT_NE(html.find("Image sensitivity</td><td>100.0%</td><td>1/1</td><td>20.7% – 100.0%</td>"),
            std::string::npos);
  // Localisation: the marked box at 0.9 finds a lesion -> 1/1.
  EXPECT_NE(html.find("Images with lesions: localised</td><td>100.0%</td><td>1/1</td>"), std::string::npos);
  // FROC: thresholds 0.9 (0 FP, 1/2 hit) and 0.8 (1 FP over 2 images = 0.5/image) -> 0.5 at every target.
  EXPECT_NE(html.find("<td class=\"name\">any lesion</td><td>2</td><td>0.500</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>0.500</td><td>0.5000</td><td>n/a</td>"), std::string::npos);
  // Confusion: GGO->GGO 1, GGO->background 1 (missed lesion), background->GGO 1 (the FP).
  EXPECT_NE(html.find("<tr><th class=\"name\">GGO</th><td class=\"diag\">1</td><td class=\"zero\">0</td>"
                      "<td class=\"bg\">1</td></tr>"),
            std::string::npos);
  EXPECT_NE(html.find("<tr><th class=\"name\">background</th><td class=\"bg\">1</td><td class=\"bg\">0</td>"),
            std::string::npos);
  // Definitions come from eval_report.json, charts and gallery are inline.
  EXPECT_NE(html.find("Wilson score 95% interval"), std::string::npos);
  EXPECT_NE(html.find("id=\"pr-chart\""), std::string::npos);
  EXPECT_NE(html.find("id=\"froc-chart\""), std::string::npos);
  EXPECT_NE(html.find("id=\"loss-chart\""), std::string::npos);
  EXPECT_NE(html.find("id=\"lr-chart\""), std::string::npos);
  EXPECT_NE(html.find("src=\"data:image/png;base64,iVBORw0KGgo"), std::string::npos);
  EXPECT_NE(html.find("lesions 2: TP 1, FP 1, FN 1"), std::string::npos);
  // FROC chart: 7 operating-point markers on the any-lesion curve (and 7 on the GGO curve).
  const size_t froc_at = html.find("id=\"froc-chart\"");
  const std::string froc_svg = html.substr(froc_at, html.find("</svg>", froc_at) - froc_at);
  size_t markers = 0;
  for (size_t p = 0; (p = froc_svg.find("class=\"marker\"", p)) != std::string::npos; ++p) ++markers;
  EXPECT_EQ(markers, 14u);
  // Self-contained and well formed.
  EXPECT_EQ(html.find("http"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(tag_balance(html), "");
  std::printf("[info] report %zu bytes, tag balance '%s'\n", html.size(), tag_balance(html).c_str());
}

TEST(Report, EscapesClassNamesConfigAndTitle) {
  const std::string evil = "<script>alert(1)</script>";
  const Dataset gt = small_gt({evil, "CD"}, "/nonexistent");
  const std::string dir = make_eval_folder(gt, small_dets(), "evil");
  ReportInputs in;
  in.title = "R&D <report>";
  in.eval = read_eval_folder(dir);
  in.config_name = "cfg\"<x>.json";
  in.config_text = "{\"note\": \"</pre><img src=x onerror=alert(2)>\"}";
  in.command_line = "ctdet report --title '<b>'";
  const std::string html = render_report_html(in);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<b>'"), std::string::npos);
  EXPECT_EQ(html.find("<report>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;/pre&gt;&lt;img src=x onerror=alert(2)&gt;"), std::string::npos);
  EXPECT_NE(html.find("<title>R&amp;D &lt;report&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("cfg&quot;&lt;x&gt;.json"), std::string::npos);
  EXPECT_EQ(tag_balance(html), "");
  // The tag checker itself catches what it should.
  EXPECT_NE(tag_balance("<div><p></div>"), "");
  EXPECT_NE(tag_balance("<table><tr><td>1</td></tr>"), "");
  // Written atomically: the file appears whole, no temporary left behind.
  const std::string out = dir + "/report.html";
  write_report_html(out, in);
  EXPECT_EQ(read_file(out), html);
  size_t leftovers = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) ++leftovers;
  EXPECT_EQ(leftovers, 0u);
}

TEST(Report, GalleryGroupsRankImages) {
  Dataset gt;
  gt.class_names = default_class_names();
  auto img = [&](const std::string& id, std::vector<Box> boxes) {
    ImageRecord r;
    r.id = id;
    r.boxes = boxes;
    gt.images.push_back(r);
  };
  img("perfect_hi", {Box{0, 0, 10, 10, 1}});
  img("perfect_lo", {Box{0, 0, 10, 10, 2}});
  img("miss2", {Box{0, 0, 10, 10, 1}, Box{20, 20, 30, 30, 1}});
  img("miss1", {Box{0, 0, 10, 10, 1}, Box{20, 20, 30, 30, 1}});
  img("fp_hi", {});
  img("fp_lo", {});
  img("wrong_class", {Box{0, 0, 10, 10, 1}});
  const std::vector<Detection> dets = {
      {"perfect_hi", 1, 0.99f, 0, 0, 10, 10}, {"perfect_lo", 2, 0.7f, 0, 0, 10, 10},
      {"miss1", 1, 0.9f, 0, 0, 10, 10},       {"fp_hi", 3, 0.95f, 0, 0, 10, 10},
      {"fp_lo", 1, 0.6f, 0, 0, 10, 10},       {"fp_lo", 1, 0.3f, 50, 50, 60, 60},  // below threshold: ignored
      {"wrong_class", 2, 0.8f, 0, 0, 10, 10}};
  GalleryOptions go;
  go.per_group = 2;
  const auto c = select_gallery_cases(gt, dets, go);
  std::vector<std::string> got;
  for (const auto& x : c) got.push_back(x.group + ":" + x.image_id);
  // misses: miss2 (2 FN) before wrong_class/miss1 (1 FN; wrong_class has 0 TP, so it ranks before miss1);
  // false positives: fp_hi (0.95) then fp_lo (0.6); best: the two perfect images by mean TP score.
  EXPECT_EQ(got, (std::vector<std::string>{"best:perfect_hi", "best:perfect_lo", "miss:miss2", "miss:wrong_class",
                                           "false positive:fp_hi", "false positive:fp_lo"}));
  const auto& w = c[3];
  EXPECT_EQ(w.fp, 1);
  EXPECT_EQ(w.fn, 1);
  EXPECT_FLOAT_EQ(float(c[0].mean_tp_score), 0.99f);
  EXPECT_FLOAT_EQ(float(c[4].max_fp_score), 0.95f);
  EXPECT_THROW(select_gallery_cases(gt, {{"nope", 1, 0.9f, 0, 0, 1, 1}}, go), Error);
}
