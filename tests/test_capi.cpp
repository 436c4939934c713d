// The C API (include/ctdet.h) driven through its header, linked as the combined static library libctdet_capi.a.
// The model is real but untrained: configs/small_cpu.json's architecture with init_faster_rcnn_params(seed 7),
// saved as safetensors. Its detections are arbitrary, so the reference for every result is the C++ path the API
// wraps, computed here independently (preprocess_image -> one-image Batch -> DetectorSession::detect, as
// `ctdet infer` does): the API must reproduce it exactly, for every pixel format, stride and file route.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "ctdet.h"
#include "detector/session.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/safetensors.h"
#include "nn/device.h"
#include "train/config.h"
#include "test_model_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace ctdet;

namespace {

const std::string kConfig = std::string(CTDET_SOURCE_DIR) + "/configs/small_cpu.json";

// configs/small_cpu.json's detector with random weights, written once per process.
const std::string& weights_path() {
  static const std::string path = [] {
    const fs::path dir = fs::path(CTDET_BINARY_DIR) / "capi_model";
    fs::create_directories(dir);
    const std::string p = (dir / "small_cpu_random.safetensors").string();
    ctdet::testing::write_seeded_detector(load_config_file(kConfig).model, 7, p);
    return p;
  }();
  return path;
}

// A CT-like 8-bit gray slice: dark background, a bright body ellipse, darker lungs, a few bright blobs.
Image phantom(int w, int h, int seed) {
  Image img(w, h, 1, 8);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double u = (x - w / 2.0) / (w * 0.45), v = (y - h / 2.0) / (h * 0.4);
      int val = 10;
      if (u * u + v * v < 1) val = 170;
      for (int s : {-1, 1}) {
        const double lu = (x - w / 2.0 - s * w * 0.2) / (w * 0.15), lv = (y - h / 2.0) / (h * 0.3);
        if (lu * lu + lv * lv < 1) val = 40;
      }
      const double bu = x - (w * 0.3 + seed * 3 % 11), bv = y - h * 0.45;
      if (bu * bu + bv * bv < 36) val = 200;
      img.at(y, x) = uint16_t(val + (x * 7 + y * 13 + seed) % 5);
    }
  return img;
}

// The reference: the single-image inference path written out as `ctdet infer` does it.
std::vector<Detection> reference_detect(const Image& img, float thr) {
  static RunConfig rc = load_config_file(kConfig);
  static ParamStore* ps = [] {
    auto* p = new ParamStore(Device::CPU, DType::F32);
    declare_faster_rcnn_params(*p, rc.model);
    p->allocate();
    load_into(*p, read_safetensors(weights_path()));
    return p;
  }();
  static DetectorSession session(rc.model, *ps, Device::CPU);
  NetInput net = preprocess_image(img, input_normalization(rc.model), rc.model.min_dimension, rc.model.max_dimension);
  Batch b;
  b.n = 1;
  b.height = net.height;
  b.width = net.width;
  b.data = HostBuffer(net.chw.size());
  std::copy(net.chw.begin(), net.chw.end(), b.data.data());
  BatchSample s;
  s.orig_height = net.orig_height;
  s.orig_width = net.orig_width;
  s.height = net.height;
  s.width = net.width;
  s.scale_y = net.scale_y;
  s.scale_x = net.scale_x;
  b.samples.push_back(s);
  std::vector<Detection> d = session.detect(b, thr)[0];
  std::vector<Detection> out;
  for (const auto& x : d)
    if (x.score > 0) out.push_back(x);
  std::stable_sort(out.begin(), out.end(), [](const Detection& a, const Detection& c) { return a.score > c.score; });
  return out;
}

struct ModelGuard {
  ctdet_model* m = nullptr;
  ModelGuard() {
    ctdet_status st = CTDET_INTERNAL;
    m = ctdet_open(kConfig.c_str(), weights_path().c_str(), "cpu", &st);
    EXPECT_EQ(st, CTDET_OK) << ctdet_last_error(nullptr);
  }
  ~ModelGuard() { ctdet_close(m); }
};

std::vector<ctdet_detection> read_result(ctdet_result* r) {
  std::vector<ctdet_detection> v(size_t(ctdet_result_count(r)));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(ctdet_result_get(r, int(i), &v[i]), CTDET_OK);
  return v;
}

// Flattens (x1, y1, x2, y2, class, score) for comparison with the reference; checks names and bounds.
std::vector<double> flatten(const std::vector<ctdet_detection>& v, int w, int h) {
  std::vector<double> f;
  for (const auto& d : v) {
    EXPECT_LE(0.f, d.x1);
    EXPECT_LE(d.x1, d.x2);
    EXPECT_LE(d.x2, float(w));
    EXPECT_LE(0.f, d.y1);
    EXPECT_LE(d.y1, d.y2);
    EXPECT_LE(d.y2, float(h));
    EXPECT_GT(d.score, 0.f);
    EXPECT_LE(d.score, 1.f);
    EXPECT_GE(d.class_id, 1);
    EXPECT_LE(d.class_id, 3);
    static const char* names[] = {"GGO", "CD", "GGO+CD"};
    if (d.class_id >= 1 && d.class_id <= 3) {
      EXPECT_STREQ(d.class_name, names[d.class_id - 1]);
    }
    f.insert(f.end(), {d.x1, d.y1, d.x2, d.y2, double(d.class_id), d.score});
  }
  return f;
}
std::vector<double> flatten(const std::vector<Detection>& v) {
  std::vector<double> f;
  for (const auto& d : v) f.insert(f.end(), {d.x1, d.y1, d.x2, d.y2, double(d.label), d.score});
  return f;
}

std::vector<double> detect_buffer(ctdet_model* m, const void* px, int w, int h, int stride, ctdet_pixel_format fmt,
                                  float thr) {
  ctdet_result* r = nullptr;
  const ctdet_status st = ctdet_detect_buffer(m, px, w, h, stride, fmt, thr, &r);
  EXPECT_EQ(st, CTDET_OK) << ctdet_last_error(m);
  if (st != CTDET_OK) return {};
  int rw = 0, rh = 0;
  EXPECT_EQ(ctdet_result_image_size(r, &rw, &rh), CTDET_OK);
  EXPECT_EQ(rw, w);
  EXPECT_EQ(rh, h);
  auto f = flatten(read_result(r), w, h);
  ctdet_result_free(r);
  return f;
}

void expect_same(const std::vector<double>& got, const std::vector<double>& ref, const std::string& what,
                 double tol = 0.0) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  const auto e = ctdet::testing::compare(got, ref);
  ctdet::testing::print_err(what, e);
  EXPECT_LE(e.max_abs, tol) << what;
}

}  // namespace

TEST(CApi, VersionAndStatusNames) {
  EXPECT_STREQ(ctdet_version(), CTDET_VERSION);
  EXPECT_STREQ(ctdet_status_name(CTDET_BAD_IMAGE), "CTDET_BAD_IMAGE");
  EXPECT_STREQ(ctdet_status_name(ctdet_status(99)), "CTDET_UNKNOWN_STATUS");
}

TEST(CApi, BufferAllFormatsAndStrideMatchTheCppPath) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  const int W = 96, H = 80;
  const Image img = phantom(W, H, 1);
  const auto ref = flatten(reference_detect(img, 0.0f));
  ASSERT_GT(ref.size(), 0u) << "an untrained model at threshold 0 should still report detections";
  std::printf("reference: %zu detections\n", ref.size() / 6);

  std::vector<uint8_t> g8(size_t(W) * H);
  for (size_t i = 0; i < g8.size(); ++i) g8[i] = uint8_t(img.data[i]);
  expect_same(detect_buffer(g.m, g8.data(), W, H, W, CTDET_GRAY8, 0.0f), ref, "GRAY8 vs C++ path");

  // Stride 131 > width, padding filled with garbage that must not be read.
  const int stride = 131;
  std::vector<uint8_t> padded(size_t(stride) * H, 0xAB);
  for (int y = 0; y < H; ++y) std::memcpy(&padded[size_t(y) * stride], &g8[size_t(y) * W], W);
  expect_same(detect_buffer(g.m, padded.data(), W, H, stride, CTDET_GRAY8, 0.0f), ref, "GRAY8 stride 131 vs C++ path");

  // RGB with R = G = B: the same network input as gray.
  std::vector<uint8_t> rgb(size_t(W) * H * 3 + 5, 0);  // stride 3W+... below: odd stride, unaligned rows
  const int rstride = 3 * W + 5;
  rgb.assign(size_t(rstride) * H, 0x5A);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) rgb[size_t(y) * rstride + 3 * x + c] = g8[size_t(y) * W + x];
  expect_same(detect_buffer(g.m, rgb.data(), W, H, rstride, CTDET_RGB8, 0.0f), ref, "RGB8 (gray replicated) vs C++ path");

  // GRAY16: v * 257 scales back to v (x 255/65535) up to float rounding; the reference is the C++ path on the same
  // 16-bit image.
  Image img16(W, H, 1, 16);
  std::vector<uint16_t> g16(size_t(W) * H);
  for (size_t i = 0; i < g16.size(); ++i) img16.data[i] = g16[i] = uint16_t(img.data[i] * 257 + (i % 3));
  const auto ref16 = flatten(reference_detect(img16, 0.0f));
  expect_same(detect_buffer(g.m, g16.data(), W, H, 2 * W, CTDET_GRAY16, 0.0f), ref16, "GRAY16 vs C++ path");

  // A real RGB image (channels differ) against the C++ path on the same Image.
  Image col(W, H, 3, 8);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      col.at(y, x, 0) = img.at(y, x);
      col.at(y, x, 1) = uint16_t((img.at(y, x) * 3 + x) % 256);
      col.at(y, x, 2) = uint16_t(255 - img.at(y, x));
    }
  std::vector<uint8_t> c8(col.data.begin(), col.data.end());
  expect_same(detect_buffer(g.m, c8.data(), W, H, 3 * W, CTDET_RGB8, 0.0f), flatten(reference_detect(col, 0.0f)),
              "RGB8 colour vs C++ path");
}

TEST(CApi, ThresholdFiltersAndSameInputTwiceIsIdentical) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  const int W = 70, H = 64;
  const Image img = phantom(W, H, 3);
  std::vector<uint8_t> g8(img.data.begin(), img.data.end());
  const auto a = detect_buffer(g.m, g8.data(), W, H, W, CTDET_GRAY8, 0.0f);
  const auto b = detect_buffer(g.m, g8.data(), W, H, W, CTDET_GRAY8, 0.0f);
  expect_same(b, a, "same input twice");
  ASSERT_GT(a.size(), 0u);
  // A threshold at the median score keeps exactly the detections at or above it.
  std::vector<double> scores;
  for (size_t i = 5; i < a.size(); i += 6) scores.push_back(a[i]);
  const float thr = float(scores[scores.size() / 2]);
  std::vector<double> kept;
  for (size_t i = 0; i < a.size(); i += 6)
    if (float(a[i + 5]) >= thr) kept.insert(kept.end(), a.begin() + long(i), a.begin() + long(i) + 6);
  expect_same(detect_buffer(g.m, g8.data(), W, H, W, CTDET_GRAY8, thr), kept, "threshold = median score");
  for (size_t i = 6 + 5; i < a.size(); i += 6) EXPECT_GE(a[i - 6], a[i]) << "results are sorted best score first";
}

TEST(CApi, FilesPngJpegMatchBuffers) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  const int W = 88, H = 72;
  const Image img = phantom(W, H, 5);
  const fs::path dir = fs::path(CTDET_BINARY_DIR) / "capi_model";
  const std::string png = (dir / "slice.png").string(), jpg = (dir / "slice.jpg").string();
  write_png(png, img);
  write_jpeg(jpg, img, 95);
  ctdet_result* r = nullptr;
  ASSERT_EQ(ctdet_detect_file(g.m, png.c_str(), 0.0f, &r), CTDET_OK) << ctdet_last_error(g.m);
  expect_same(flatten(read_result(r), W, H), flatten(reference_detect(img, 0.0f)), "PNG file vs C++ path");
  ctdet_result_free(r);
  ASSERT_EQ(ctdet_detect_file(g.m, jpg.c_str(), 0.0f, &r), CTDET_OK) << ctdet_last_error(g.m);
  expect_same(flatten(read_result(r), W, H), flatten(reference_detect(read_image(jpg), 0.0f)), "JPEG file vs C++ path");
  ctdet_result_free(r);
}

TEST(CApi, OpenErrorsAreCodesWithMessages) {
  ctdet_status st = CTDET_OK;
  EXPECT_EQ(ctdet_open(nullptr, "w", "cpu", &st), nullptr);
  EXPECT_EQ(st, CTDET_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ctdet_last_error(nullptr)).find("config_path is NULL"), std::string::npos);

  EXPECT_EQ(ctdet_open(kConfig.c_str(), "/nonexistent/w.safetensors", "cpu", &st), nullptr);
  EXPECT_EQ(st, CTDET_IO_ERROR);
  EXPECT_NE(std::string(ctdet_last_error(nullptr)).find("/nonexistent/w.safetensors"), std::string::npos)
      << ctdet_last_error(nullptr);

  const std::string junk = (fs::path(CTDET_BINARY_DIR) / "capi_model" / "junk.safetensors").string();
  weights_path();
  { std::ofstream(junk) << "this is not a safetensors file"; }
  EXPECT_EQ(ctdet_open(kConfig.c_str(), junk.c_str(), "cpu", &st), nullptr);
  EXPECT_EQ(st, CTDET_MODEL_ERROR);
  std::printf("junk weights: %s\n", ctdet_last_error(nullptr));
  EXPECT_NE(std::string(ctdet_last_error(nullptr)).find("junk.safetensors"), std::string::npos);

  // Weights of another architecture: the config says inception_v2, the file holds the ResNet.
  const std::string other = std::string(CTDET_SOURCE_DIR) + "/configs/faster_rcnn_inception_v2.json";
  EXPECT_EQ(ctdet_open(other.c_str(), weights_path().c_str(), "cpu", &st), nullptr);
  EXPECT_EQ(st, CTDET_MODEL_ERROR);

  EXPECT_EQ(ctdet_open(kConfig.c_str(), weights_path().c_str(), "tpu", &st), nullptr);
  EXPECT_EQ(st, CTDET_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ctdet_last_error(nullptr)).find("'tpu'"), std::string::npos);
  if (!cuda_device_available()) {
    EXPECT_EQ(ctdet_open(kConfig.c_str(), weights_path().c_str(), "cuda", &st), nullptr);
    EXPECT_EQ(st, CTDET_DEVICE_ERROR);
    std::printf("cuda: %s\n", ctdet_last_error(nullptr));
  }
  EXPECT_EQ(ctdet_open(kConfig.c_str(), weights_path().c_str(), "auto", nullptr) != nullptr, true);  // st may be NULL
}

TEST(CApi, DetectErrorsAreCodesNeverCrashes) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  uint8_t px[64 * 64] = {};
  ctdet_result* r = reinterpret_cast<ctdet_result*>(0x1);  // must be reset to NULL on failure
  auto expect_fail = [&](ctdet_status got, ctdet_status want, const char* needle, const ctdet_model* m) {
    EXPECT_EQ(got, want) << ctdet_status_name(got) << ": " << ctdet_last_error(m);
    EXPECT_EQ(r, nullptr);
    const std::string msg = ctdet_last_error(m);
    EXPECT_NE(msg.find(needle), std::string::npos) << "message '" << msg << "' should name '" << needle << "'";
    std::printf("%-24s %s\n", ctdet_status_name(got), msg.c_str());
    r = reinterpret_cast<ctdet_result*>(0x1);
  };
  expect_fail(ctdet_detect_buffer(nullptr, px, 64, 64, 64, CTDET_GRAY8, 0.3f, &r), CTDET_INVALID_ARGUMENT,
              "model is NULL", nullptr);
  expect_fail(ctdet_detect_buffer(g.m, nullptr, 64, 64, 64, CTDET_GRAY8, 0.3f, &r), CTDET_INVALID_ARGUMENT,
              "pixels is NULL", g.m);
  EXPECT_EQ(ctdet_detect_buffer(g.m, px, 64, 64, 64, CTDET_GRAY8, 0.3f, nullptr), CTDET_INVALID_ARGUMENT);
  expect_fail(ctdet_detect_buffer(g.m, px, 64, 64, 64, ctdet_pixel_format(7), 0.3f, &r), CTDET_INVALID_ARGUMENT,
              "pixel format 7", g.m);
  expect_fail(ctdet_detect_buffer(g.m, px, 64, 64, 63, CTDET_GRAY8, 0.3f, &r), CTDET_INVALID_ARGUMENT, "stride 63", g.m);
  expect_fail(ctdet_detect_buffer(g.m, px, 32, 64, 64, CTDET_RGB8, 0.3f, &r), CTDET_INVALID_ARGUMENT, "stride 64", g.m);
  expect_fail(ctdet_detect_buffer(g.m, px, 0, 64, 64, CTDET_GRAY8, 0.3f, &r), CTDET_INVALID_ARGUMENT, "0x64", g.m);
  expect_fail(ctdet_detect_buffer(g.m, px, 64, 64, 64, CTDET_GRAY8, std::numeric_limits<float>::quiet_NaN(), &r),
              CTDET_INVALID_ARGUMENT, "threshold", g.m);
  expect_fail(ctdet_detect_buffer(g.m, px, 64, 64, 64, CTDET_GRAY8, 1.5f, &r), CTDET_INVALID_ARGUMENT, "1.5", g.m);

  const fs::path dir = fs::path(CTDET_BINARY_DIR) / "capi_model";
  fs::create_directories(dir);
  expect_fail(ctdet_detect_file(g.m, (dir / "missing.png").c_str(), 0.3f, &r), CTDET_IO_ERROR, "missing.png", g.m);
  expect_fail(ctdet_detect_file(g.m, dir.c_str(), 0.3f, &r), CTDET_IO_ERROR, "folder", g.m);
  expect_fail(ctdet_detect_file(g.m, nullptr, 0.3f, &r), CTDET_INVALID_ARGUMENT, "path is NULL", g.m);
  // A PNG signature followed by garbage, a truncated real PNG, a text file, an empty file.
  const std::string good = encode_png(phantom(64, 64, 2));
  const std::string corrupt = good.substr(0, 8) + std::string(200, '\x42');
  { std::ofstream(dir / "corrupt.png", std::ios::binary) << corrupt; }
  { std::ofstream(dir / "truncated.png", std::ios::binary) << good.substr(0, good.size() / 2); }
  { std::ofstream(dir / "notes.png") << "hello, I am text"; }
  { std::ofstream(dir / "empty.png"); }
  expect_fail(ctdet_detect_file(g.m, (dir / "corrupt.png").c_str(), 0.3f, &r), CTDET_BAD_IMAGE, "corrupt.png", g.m);
  expect_fail(ctdet_detect_file(g.m, (dir / "truncated.png").c_str(), 0.3f, &r), CTDET_BAD_IMAGE, "truncated.png", g.m);
  expect_fail(ctdet_detect_file(g.m, (dir / "notes.png").c_str(), 0.3f, &r), CTDET_BAD_IMAGE, "not a PNG, JPEG or DICOM",
              g.m);
  expect_fail(ctdet_detect_file(g.m, (dir / "empty.png").c_str(), 0.3f, &r), CTDET_BAD_IMAGE, "empty", g.m);

  // Accessors with bad arguments.
  ctdet_detection d;
  EXPECT_EQ(ctdet_result_count(nullptr), 0);
  EXPECT_EQ(ctdet_result_get(nullptr, 0, &d), CTDET_INVALID_ARGUMENT);
  r = nullptr;
  ASSERT_EQ(ctdet_detect_buffer(g.m, px, 64, 64, 64, CTDET_GRAY8, 0.0f, &r), CTDET_OK) << ctdet_last_error(g.m);
  EXPECT_EQ(ctdet_result_get(r, ctdet_result_count(r), &d), CTDET_INVALID_ARGUMENT);
  EXPECT_EQ(ctdet_result_get(r, -1, &d), CTDET_INVALID_ARGUMENT);
  EXPECT_EQ(ctdet_result_get(r, 0, nullptr), CTDET_INVALID_ARGUMENT);
  ctdet_result_free(r);
  ctdet_result_free(nullptr);
  ctdet_close(nullptr);

  // The model still works after all of that.
  const Image img = phantom(64, 64, 2);
  std::vector<uint8_t> g8(img.data.begin(), img.data.end());
  expect_same(detect_buffer(g.m, g8.data(), 64, 64, 64, CTDET_GRAY8, 0.0f), flatten(reference_detect(img, 0.0f)),
              "after errors, vs C++ path");
}

TEST(CApi, ErrorsArePerThreadAndPerModel) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  ctdet_result* r = nullptr;
  EXPECT_EQ(ctdet_detect_file(g.m, "/nonexistent/a.png", 0.3f, &r), CTDET_IO_ERROR);
  std::string other_thread;
  std::thread t([&] { other_thread = ctdet_last_error(nullptr); });
  t.join();
  EXPECT_EQ(other_thread, "");
  EXPECT_NE(std::string(ctdet_last_error(nullptr)).find("/nonexistent/a.png"), std::string::npos);
  EXPECT_NE(std::string(ctdet_last_error(g.m)).find("/nonexistent/a.png"), std::string::npos);
}

TEST(CApi, ConcurrentCallsOnOneModelAreSerialisedAndExact) {
  ModelGuard g;
  ASSERT_NE(g.m, nullptr);
  const Image img = phantom(64, 64, 4);
  std::vector<uint8_t> g8(img.data.begin(), img.data.end());
  const auto ref = flatten(reference_detect(img, 0.0f));
  std::vector<std::vector<double>> got(4);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] { got[size_t(i)] = detect_buffer(g.m, g8.data(), 64, 64, 64, CTDET_GRAY8, 0.0f); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 4; ++i) expect_same(got[size_t(i)], ref, str("thread ", i, " vs C++ path"));
}
