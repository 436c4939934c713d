// PNG / JPEG codecs, bad input, TF1 bilinear resize, keep-aspect sizes and normalisation.
// References: hand-written PNGs and PIL-decoded JPEGs (tests/fixtures/make_image_fixtures.py), a numpy TF1
// resize, and hand computations below.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <zlib.h>

#include "io/atomic_file.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/resize.h"
#include "nn/error.h"
#include "test_util.h"

using namespace ctdet;
using ctdet::testing::compare;
using ctdet::testing::fixture_path;
using ctdet::testing::print_err;

namespace {

std::string tmp_path(const std::string& name) { return std::string(CTDET_BINARY_DIR) + "/image_test_" + name; }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// Expects read_image(path) to throw ctdet::Error whose message names the file and contains `needle`.
void expect_error_names_file(const std::string& path, const std::string& needle = "") {
  try {
    read_image(path);
    ADD_FAILURE() << "expected an error for " << path;
  } catch (const Error& e) {
    const std::string m = e.what();
    std::printf("[msg] %s\n", m.c_str());
    EXPECT_NE(m.find(path), std::string::npos) << m;
    if (!needle.empty()) {
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  }
}

Image random_image(int w, int h, int c, int depth, uint64_t seed) {
  Image img(w, h, c, depth);
  auto v = ctdet::testing::random_vec<double>(img.data.size(), seed, 0.0, depth == 16 ? 65535.99 : 255.99);
  for (size_t i = 0; i < v.size(); ++i) img.data[i] = uint16_t(v[i]);
  return img;
}

std::vector<int> samples_of(const Image& img) { return std::vector<int>(img.data.begin(), img.data.end()); }

void expect_fixture(const Image& img, const std::string& npy, int w, int h, int c, double tol, const char* what) {
  NpyArray ref = read_npy(fixture_path("image/" + npy));
  const std::vector<int> want = ref.as<int32_t>();
  ASSERT_EQ(img.width, w) << what;
  ASSERT_EQ(img.height, h) << what;
  ASSERT_EQ(img.channels, c) << what;
  ASSERT_EQ(want.size(), img.data.size()) << what;
  auto st = compare(samples_of(img), want);
  print_err(what, st);
  EXPECT_LE(st.max_abs, tol) << what;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PNG
TEST(Png, RoundTripEachWritableType) {
  struct Case { int c, depth; } cases[] = {{1, 8}, {2, 8}, {3, 8}, {4, 8}, {1, 16}};
  for (auto [c, depth] : cases) {
    Image img = random_image(13, 7, c, depth, uint64_t(c * 100 + depth));
    const std::string p = tmp_path("rt_" + std::to_string(c) + "_" + std::to_string(depth) + ".png");
    const size_t bytes = write_png(p, img);
    EXPECT_EQ(bytes, std::filesystem::file_size(p));
    Image back = read_image(p);
    EXPECT_EQ(back.width, 13);
    EXPECT_EQ(back.height, 7);
    EXPECT_EQ(back.channels, c);
    EXPECT_EQ(back.bit_depth, depth);
    auto st = compare(samples_of(back), samples_of(img));
    print_err("png round trip c=" + std::to_string(c) + " depth=" + std::to_string(depth), st);
    EXPECT_EQ(st.max_abs, 0.0);
  }
}

TEST(Png, HandWrittenFixtures) {
  expect_fixture(read_image(fixture_path("image/palette8.png")), "palette8_rgb.npy", 6, 5, 3, 0, "palette8 -> RGB");
  expect_fixture(read_image(fixture_path("image/palette2.png")), "palette2_rgb.npy", 7, 3, 3, 0, "palette2 -> RGB");
  expect_fixture(read_image(fixture_path("image/gray2.png")), "gray2_8bit.npy", 5, 4, 1, 0, "gray 2-bit -> 8-bit");
  Image g16 = read_image(fixture_path("image/gray16.png"));
  EXPECT_EQ(g16.bit_depth, 16);
  expect_fixture(g16, "gray16.npy", 5, 4, 1, 0, "gray16");
  expect_fixture(read_image(fixture_path("image/gray_alpha.png")), "gray_alpha.npy", 4, 3, 2, 0, "gray+alpha");
  expect_fixture(read_image(fixture_path("image/rgba.png")), "rgba.npy", 4, 3, 4, 0, "rgba");
}

TEST(Png, IndicesUnexpanded) {
  expect_fixture(read_png_indices(fixture_path("image/palette8.png")), "palette8_indices.npy", 6, 5, 1, 0,
                 "palette8 indices");
  expect_fixture(read_png_indices(fixture_path("image/palette2.png")), "palette2_indices.npy", 7, 3, 1, 0,
                 "palette2 indices");
  expect_fixture(read_png_indices(fixture_path("image/gray2.png")), "gray2_raw.npy", 5, 4, 1, 0, "gray2 raw");
  const std::string p = fixture_path("image/rgba.png");
  try {
    read_png_indices(p);
    FAIL() << "RGBA accepted as a label mask";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Png, RealMaskIfPresent) {
  const std::string p = "/work/shared/data/medseg_covid_semiseg/masks/train/0.png";
  if (!std::filesystem::exists(p)) GTEST_SKIP() << "data set absent: " << p;
  Image m = read_png_indices(p);
  int maxv = 0;
  for (auto v : m.data) maxv = std::max<int>(maxv, v);
  std::printf("[info] %s: %dx%d, max label %d\n", p.c_str(), m.width, m.height, maxv);
  EXPECT_LE(maxv, 2);  // README: only 0, 1, 2 occur
  EXPECT_GE(maxv, 1);
}

// ---------------------------------------------------------------------------------------------
// JPEG
TEST(Jpeg, MatchesPilDecode) {
  expect_fixture(read_image(fixture_path("image/gray.jpg")), "gray_jpg.npy", 40, 24, 1, 2, "jpeg gray vs PIL");
  expect_fixture(read_image(fixture_path("image/rgb.jpg")), "rgb_jpg.npy", 32, 24, 3, 3, "jpeg rgb 4:2:0 vs PIL");
}

TEST(Jpeg, EncodeDecodeCloseToSource) {
  Image img(64, 48, 3, 8);
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 64; ++x) {
      img.at(y, x, 0) = uint16_t(3 * x + 20);
      img.at(y, x, 1) = uint16_t(4 * y + 30);
      img.at(y, x, 2) = uint16_t(200 - 2 * x);
    }
  Image back = decode_jpeg(encode_jpeg(img, 95), "mem");
  auto st = compare(samples_of(back), samples_of(img));
  print_err("jpeg q95 smooth gradient re-decode", st);
  EXPECT_LE(st.max_abs, 8.0);
}

TEST(Jpeg, RealSliceIfPresent) {
  const std::string p = "/work/shared/data/medseg_covid_semiseg/images/train/0.jpg";
  if (!std::filesystem::exists(p) || !std::filesystem::exists(fixture_path("image/real0_stats.npy")))
    GTEST_SKIP() << "real slice or its fixture absent: " << p;
  Image img = read_image(p);
  auto stats = read_npy(fixture_path("image/real0_stats.npy")).as<double>();
  ASSERT_EQ(img.height, int(stats[0]));
  ASSERT_EQ(img.width, int(stats[1]));
  ASSERT_EQ(img.channels, 1);
  double sum = 0;
  for (auto v : img.data) sum += v;
  const double mean_diff = std::abs(sum - stats[2]) / double(img.data.size());
  std::printf("[err] real slice mean |ctdet - PIL| = %.4f grey levels\n", mean_diff);
  EXPECT_LE(mean_diff, 0.5);
  std::vector<int> crop;
  for (int y = 100; y < 132; ++y)
    for (int x = 100; x < 132; ++x) crop.push_back(img.at(y, x));
  auto ref = read_npy(fixture_path("image/real0_crop.npy")).as<int32_t>();
  auto st = compare(crop, ref);
  print_err("real slice crop vs PIL", st);
  EXPECT_LE(st.max_abs, 2.0);
  // Every slice of the data set decodes (libjpeg warnings are errors here, so this checks none warns).
  int n = 0;
  for (const char* split : {"train", "test"}) {
    const std::string dir = "/work/shared/data/medseg_covid_semiseg/images/" + std::string(split);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      Image s = read_image(e.path().string());
      EXPECT_EQ(s.channels, 1) << e.path();
      ++n;
    }
  }
  std::printf("[info] decoded %d real slices without error\n", n);
  EXPECT_GT(n, 0);
}

// ---------------------------------------------------------------------------------------------
// Bad input: every error names the file.
TEST(BadInput, ErrorsNameTheFile) {
  Image img = random_image(40, 30, 3, 8, 7);
  const std::string png = encode_png(img), jpg = encode_jpeg(img, 90);

  const std::string empty = tmp_path("empty.png");
  write_bytes(empty, "");
  expect_error_names_file(empty, "empty");

  const std::string tpng = tmp_path("trunc.png");
  write_bytes(tpng, png.substr(0, png.size() / 2));
  expect_error_names_file(tpng);

  const std::string tjpg = tmp_path("trunc.jpg");
  write_bytes(tjpg, jpg.substr(0, jpg.size() / 2));
  expect_error_names_file(tjpg);

  std::string rnd(500, '\0');
  auto v = ctdet::testing::random_vec<double>(rnd.size(), 3, 0, 255.99);
  for (size_t i = 0; i < rnd.size(); ++i) rnd[i] = char(int(v[i]));
  const std::string rbin = tmp_path("random.bin");
  write_bytes(rbin, "xx" + rnd);
  expect_error_names_file(rbin, "unknown image format");

  const std::string cpng = tmp_path("corrupt.png");  // valid signature, garbage after
  write_bytes(cpng, png.substr(0, 8) + rnd);
  expect_error_names_file(cpng);
  const std::string cjpg = tmp_path("corrupt.jpg");  // valid SOI, garbage after
  write_bytes(cjpg, std::string("\xFF\xD8\xFF", 3) + rnd);
  expect_error_names_file(cjpg);
  const std::string cidat = tmp_path("corrupt_idat.png");  // valid header, IDAT payload flipped
  std::string bad = png;
  for (size_t i = 45; i < 70 && i < bad.size(); ++i) bad[i] = char(~bad[i]);
  write_bytes(cidat, bad);
  expect_error_names_file(cidat);
}

TEST(BadInput, HugeHeadersRefused) {
  // PNG: signature + IHDR claiming 60000 x 60000 (valid CRC) + nothing else.
  std::string ihdr = "IHDR";
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
  };
  ihdr += be32(60000) + be32(60000) + std::string("\x08\x00\x00\x00\x00", 5);
  const uint32_t crc = uint32_t(crc32(0, reinterpret_cast<const Bytef*>(ihdr.data()), uInt(ihdr.size())));
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(crc);
  const std::string hp = tmp_path("huge.png");
  write_bytes(hp, png);
  expect_error_names_file(hp, "60000x60000");

  // JPEG: a real file with the SOF0 height/width patched to 60000.
  Image img = random_image(16, 16, 1, 8, 9);
  std::string jpg = encode_jpeg(img, 90);
  size_t sof = jpg.find(std::string("\xFF\xC0", 2));
  ASSERT_NE(sof, std::string::npos);
  // FF C0, length(2), precision(1), height(2), width(2)
  jpg[sof + 5] = char(60000 >> 8);
  jpg[sof + 6] = char(60000 & 0xFF);
  jpg[sof + 7] = char(60000 >> 8);
  jpg[sof + 8] = char(60000 & 0xFF);
  const std::string hj = tmp_path("huge.jpg");
  write_bytes(hj, jpg);
  expect_error_names_file(hj, "60000x60000");

  // In-memory name is used when there is no file.
  try {
    decode_image(png.data(), png.size(), "request body");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("request body"), std::string::npos);
  }
  // A custom, smaller limit applies too.
  ImageLimits lim;
  lim.max_side = 8;
  EXPECT_THROW(decode_jpeg(encode_jpeg(img, 90), "small-limit", lim), Error);
}

TEST(BadInput, EncoderRejectsBadImages) {
  Image img(4, 4, 3, 16);
  EXPECT_THROW(encode_png(img), Error);  // 16-bit RGB not supported
  Image g(4, 4, 1, 8);
  g.data[3] = 300;
  EXPECT_THROW(encode_png(g), Error);
  EXPECT_THROW(encode_jpeg(Image(4, 4, 4, 8)), Error);
}

// ---------------------------------------------------------------------------------------------
// Resize and normalisation
TEST(Resize, MatchesNumpyTf1) {
  NpyArray src = read_npy(fixture_path("image/resize_src.npy"));
  const std::vector<float> in = src.as<float>();
  const int ih = int(src.shape[0]), iw = int(src.shape[1]), c = int(src.shape[2]);
  const int sizes[][2] = {{3, 4}, {9, 11}, {5, 7}, {1, 1}, {12, 3}};
  for (auto& s : sizes) {
    const std::string name = "resize_" + std::to_string(s[0]) + "x" + std::to_string(s[1]) + ".npy";
    const std::vector<float> ref = read_npy(fixture_path("image/" + name)).as<float>();
    std::vector<float> out(size_t(s[0]) * s[1] * c);
    resize_bilinear_tf1(in.data(), ih, iw, c, out.data(), s[0], s[1]);
    auto st = compare(out, ref);
    print_err("tf1 bilinear 5x7 -> " + std::to_string(s[0]) + "x" + std::to_string(s[1]) + " vs numpy", st);
    EXPECT_LE(st.max_abs, 1e-4);
  }
}

TEST(Resize, HandComputedCells) {
  // 2x2 single channel [[0, 10], [20, 30]] -> 4x4: src = dst * 0.5, no half-pixel offset.
  const float in[4] = {0, 10, 20, 30};
  float out[16];
  resize_bilinear_tf1(in, 2, 2, 1, out, 4, 4);
  // out(0,0) = in(0,0) = 0; out(0,1): x=0.5 -> 5; out(1,1): y=0.5,x=0.5 -> 15; out(3,3): clamps to 30
  // out(2,1): y=1, x=0.5 -> 25; out(0,3): x=1.5 -> floor 1, clamp -> 10.
  const float want[][3] = {{0, 0, 0}, {0, 1, 5}, {1, 1, 15}, {3, 3, 30}, {2, 1, 25}, {0, 3, 10}};
  double worst = 0;
  for (auto& w : want) worst = std::max(worst, double(std::abs(out[int(w[0]) * 4 + int(w[1])] - w[2])));
  std::printf("[err] tf1 bilinear hand cells max_abs=%.3e\n", worst);
  EXPECT_LE(worst, 1e-6);
}

TEST(Resize, KeepAspectSizes) {
  struct Case { int h, w, oh, ow; } cases[] = {
      {512, 512, 600, 600}, {480, 640, 600, 800}, {300, 1200, 256, 1024}, {1200, 300, 1024, 256},
      {100, 100, 600, 600}, {369, 273, 811, 600}, {2000, 1000, 1024, 512}, {600, 1024, 600, 1024}};
  for (auto& c : cases) {
    ResizeShape r = keep_aspect_shape(c.h, c.w);
    std::printf("[info] keep_aspect %dx%d -> %dx%d (expected %dx%d)\n", c.h, c.w, r.out_h, r.out_w, c.oh, c.ow);
    EXPECT_EQ(r.out_h, c.oh);
    EXPECT_EQ(r.out_w, c.ow);
    EXPECT_NEAR(r.scale_x, double(c.ow) / c.w, 1e-12);
  }
  // Python's round() is half-to-even: 5 x (600/4) = 750 exactly; 3 x 600/2 = 900 -> 2x3 -> 600x900;
  // 1 x (1024/4) where a side lands on .5: 2 x 1024/2048... choose 3x2048: 1024/2048*3 = 1.5 -> 2 (even).
  EXPECT_EQ(keep_aspect_shape(3, 2048).out_h, 2);
  EXPECT_EQ(keep_aspect_shape(5, 2048).out_h, 2);  // 2.5 -> 2
  EXPECT_EQ(keep_aspect_shape(7, 2048).out_h, 4);  // 3.5 -> 4
}

TEST(Resize, PreprocessNormalisationAndScale) {
  // 2x3 gray image: values known; resized to 600 min side: 600x900. Corner (0,0) is the source (0,0).
  Image img(3, 2, 1, 8);
  const uint16_t vals[6] = {0, 51, 102, 153, 204, 255};
  for (int i = 0; i < 6; ++i) img.data[size_t(i)] = vals[i];
  NetInput r = preprocess_image(img, Normalization::kResNet);
  ASSERT_EQ(r.height, 600);
  ASSERT_EQ(r.width, 900);
  const size_t plane = size_t(600) * 900;
  // pixel (0,0) = 0 gray -> R,G,B = 0 - mean
  double err = 0;
  err = std::max(err, double(std::abs(r.chw[0] - (0 - 123.68f))));
  err = std::max(err, double(std::abs(r.chw[plane] - (0 - 116.779f))));
  err = std::max(err, double(std::abs(r.chw[2 * plane] - (0 - 103.939f))));
  // pixel (300, 450): src y = 300*(2/600) = 1 -> row 1; x = 450*(3/900) = 1.5 -> row 1 is [153, 204, 255]: 204 + 0.5*(255-204) = 229.5
  const size_t i = size_t(300) * 900 + 450;
  err = std::max(err, double(std::abs(r.chw[i] - (229.5f - 123.68f))));
  NetInput q = preprocess_image(img, Normalization::kInception);
  err = std::max(err, double(std::abs(q.chw[i + plane] - (229.5f * 2.f / 255.f - 1.f))));
  err = std::max(err, double(std::abs(q.chw[0] - (-1.f))));
  std::printf("[err] preprocess hand cells max_abs=%.3e\n", err);
  EXPECT_LE(err, 1e-4);
  // Box mapping: a box over the whole resized image maps to the whole original.
  float x1 = 0, y1 = 0, x2 = 900, y2 = 600;
  box_to_original(r, x1, y1, x2, y2);
  EXPECT_FLOAT_EQ(x2, 3.f);
  EXPECT_FLOAT_EQ(y2, 2.f);
  // 16-bit input scales by 255/65535.
  Image g16(40, 40, 1, 16);
  for (auto& v : g16.data) v = 65535;
  NetInput h = preprocess_image(g16, Normalization::kNone);
  EXPECT_NEAR(h.chw[0], 255.f, 1e-3);
  // Too small after resize.
  EXPECT_THROW(preprocess_image(Image(2000, 10, 1, 8), Normalization::kNone), Error);
}

TEST(Resize, DecodeResizeThroughput) {
  // Not a benchmark assertion: prints decode + resize images/s for a 512x512 gray JPEG.
  Image img(512, 512, 1, 8);
  for (int y = 0; y < 512; ++y)
    for (int x = 0; x < 512; ++x) img.at(y, x) = uint16_t((x * 7 + y * 3 + (x * y) % 31) & 255);
  const std::string jpg = encode_jpeg(img, 90);
  const int iters = 10;
  auto t0 = std::chrono::steady_clock::now();
  double checksum = 0;
  for (int k = 0; k < iters; ++k) {
    Image d = decode_jpeg(jpg, "bench");
    NetInput in = preprocess_image(d, Normalization::kResNet);
    checksum += in.chw[size_t(k)];
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[perf] decode+resize 512x512 JPEG -> 600x600x3 CHW: %.1f images/s (%d iters, checksum %.1f)\n",
              iters / s, iters, checksum);
  SUCCEED();
}
