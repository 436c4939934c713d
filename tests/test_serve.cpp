// `ctdet serve` end to end on loopback: run_server in this process on an ephemeral port, driven by cpp-httplib's
// client. The model is configs/small_cpu.json with random weights (as in test_capi); the reference for the JSON
// detections is the single-image C++ path written out here (preprocess_image -> Batch -> DetectorSession::detect).
#include <gtest/gtest.h>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "detector/session.h"
#include "io/image.h"
#include "io/resize.h"
#include "io/safetensors.h"
#include "serve/server.h"
#include "test_model_util.h"
#include "test_util.h"
#include "train/config.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace ctdet;

namespace {

const std::string kConfig = std::string(CTDET_SOURCE_DIR) + "/configs/small_cpu.json";
const fs::path kDir = fs::path(CTDET_BINARY_DIR) / "serve_test";

const std::string& weights_path() {
  static const std::string path = [] {
    fs::create_directories(kDir);
    const std::string p = (kDir / "small_cpu_random.safetensors").string();
    ctdet::testing::write_seeded_detector(load_config_file(kConfig).model, 11, p);
    return p;
  }();
  return path;
}

Image phantom(int w, int h) {
  Image img(w, h, 1, 8);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double u = (x - w / 2.0) / (w * 0.45), v = (y - h / 2.0) / (h * 0.4);
      int val = u * u + v * v < 1 ? 160 : 12;
      const double bu = x - w * 0.35, bv = y - h * 0.5;
      if (bu * bu + bv * bv < 40) val = 220;
      img.at(y, x) = uint16_t(val + (x * 5 + y * 3) % 7);
    }
  return img;
}

std::vector<double> reference(const Image& img, float thr) {
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
  std::stable_sort(d.begin(), d.end(), [](const Detection& a, const Detection& c) { return a.score > c.score; });
  std::vector<double> f;
  for (const auto& x : d)
    if (x.score > 0) f.insert(f.end(), {x.x1, x.y1, x.x2, x.y2, double(x.label), x.score});
  return f;
}

// JSON detections -> (x1, y1, x2, y2, class_id, score) with bounds checks. Values went through JSON (float ->
// shortest round-trip decimal -> double), so they compare to the float reference exactly after a float cast.
std::vector<double> flatten(const json& j, int w, int h) {
  std::vector<double> f;
  for (const auto& d : j.at("detections")) {
    const auto b = d.at("box").get<std::vector<double>>();
    EXPECT_EQ(b.size(), 4u);
    EXPECT_LE(0, b[0]);
    EXPECT_LE(b[0], b[2]);
    EXPECT_LE(b[2], w);
    EXPECT_LE(0, b[1]);
    EXPECT_LE(b[1], b[3]);
    EXPECT_LE(b[3], h);
    const double s = d.at("score").get<double>();
    EXPECT_GT(s, 0);
    EXPECT_LE(s, 1);
    EXPECT_FALSE(d.at("class").get<std::string>().empty());
    for (double v : {b[0], b[1], b[2], b[3]}) f.push_back(double(float(v)));
    f.push_back(d.at("class_id").get<double>());
    f.push_back(double(float(s)));
  }
  return f;
}

class Server {
 public:
  explicit Server(ServeOptions o) {
    o.port = 0;
    o.log = false;
    th_ = std::thread([this, o] {
      try {
        run_server(o, &stop_, &port_);
      } catch (const std::exception& e) {
        error_ = e.what();
        port_ = -1;
      }
    });
    for (int i = 0; i < 600 && port_.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Server() {
    stop_ = true;
    th_.join();
  }
  int port() const { return port_.load(); }
  std::string error_;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> port_{0};
  std::thread th_;
};

ServeOptions options() {
  ServeOptions o;
  o.config = kConfig;
  o.weights = weights_path();
  o.device = "cpu";
  o.max_upload = 256 << 10;
  o.threshold = 0.0f;
  return o;
}

}  // namespace

TEST(Serve, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("20MiB"), size_t(20) << 20);
  EXPECT_EQ(parse_byte_size("512KiB"), size_t(512) << 10);
  EXPECT_EQ(parse_byte_size("1MB"), size_t(1000000));
  EXPECT_EQ(parse_byte_size("1000"), size_t(1000));
  EXPECT_THROW(parse_byte_size("20 parsecs"), Error);
  EXPECT_THROW(parse_byte_size("MiB"), Error);
}

TEST(Serve, EndToEndOnLoopback) {
  fs::create_directories(kDir / "slices");
  const int W = 96, H = 80;
  const Image img = phantom(W, H);
  const std::string png = encode_png(img);
  write_png((kDir / "slices" / "a.png").string(), img);
  ServeOptions o = options();
  o.slices_dir = (kDir / "slices").string();
  Server srv(o);
  ASSERT_GT(srv.port(), 0) << srv.error_;
  httplib::Client cli("127.0.0.1", srv.port());
  cli.set_read_timeout(20, 0);

  auto h = cli.Get("/health");
  ASSERT_TRUE(h) << httplib::to_string(h.error());
  EXPECT_EQ(h->status, 200);
  const json hj = json::parse(h->body);
  EXPECT_EQ(hj.at("status"), "ok");
  EXPECT_EQ(hj.at("version"), CTDET_VERSION);
  std::printf("health: %s\n", h->body.c_str());

  auto page = cli.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<canvas"), std::string::npos);
  EXPECT_NE(page->body.find(hj.at("model").get<std::string>()), std::string::npos) << "the page names the model";
  EXPECT_NE(page->body.find("type=\"range\""), std::string::npos) << "threshold slider";

  // A good PNG as the raw body and as a multipart upload: the C++ path's detections, in bounds.
  const auto ref = reference(img, 0.0f);
  ASSERT_GT(ref.size(), 0u);
  auto r = cli.Post("/detect?threshold=0", png, "image/png");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j.at("image").at("width"), W);
  EXPECT_EQ(j.at("image").at("height"), H);
  EXPECT_EQ(j.at("image").at("format"), "png");
  auto e = ctdet::testing::compare(flatten(j, W, H), ref);
  ctdet::testing::print_err("POST /detect raw PNG vs C++ path", e);
  EXPECT_EQ(e.max_abs, 0.0);
  std::printf("detections: %zu in %.1f ms\n", j.at("detections").size(), j.at("ms").get<double>());

  httplib::MultipartFormDataItems items = {{"file", png, "slice.png", "image/png"}};
  r = cli.Post("/detect?threshold=0&render=1", items);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  e = ctdet::testing::compare(flatten(j, W, H), ref);
  ctdet::testing::print_err("POST /detect multipart PNG vs C++ path", e);
  EXPECT_EQ(e.max_abs, 0.0);
  EXPECT_EQ(j.at("image").at("name"), "slice.png");
  EXPECT_GT(j.at("png").get<std::string>().size(), 100u) << "render=1 returns the image for the page";

  // A chosen slice from --slices, and names outside the list are refused.
  r = cli.Post("/detect?threshold=0&slice=a.png", "", "text/plain");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  e = ctdet::testing::compare(flatten(json::parse(r->body), W, H), ref);
  ctdet::testing::print_err("POST /detect ?slice=a.png vs C++ path", e);
  EXPECT_EQ(e.max_abs, 0.0);
  r = cli.Post("/detect?slice=..%2F..%2Fetc%2Fpasswd", "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(json::parse(cli.Get("/slices")->body).at("slices"), json::array({"a.png"}));

  // The server threshold filters exactly.
  r = cli.Post("/detect?threshold=0.5", png, "image/png");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::vector<double> kept;
  for (size_t i = 0; i < ref.size(); i += 6)
    if (ref[i + 5] >= 0.5) kept.insert(kept.end(), ref.begin() + long(i), ref.begin() + long(i) + 6);
  e = ctdet::testing::compare(flatten(json::parse(r->body), W, H), kept);
  ctdet::testing::print_err("threshold 0.5 vs filtered C++ path", e);
  EXPECT_EQ(e.max_abs, 0.0);

  // Bad input: 400 with a JSON error naming the problem; the server keeps serving.
  struct Bad {
    std::string body, needle;
    int status;
  };
  const std::vector<Bad> bad = {
      {png.substr(0, 8) + std::string(300, 'x'), "PNG", 400},
      {png.substr(0, png.size() / 2), "PNG", 400},
      {"GIF89a not supported at all", "not a PNG, JPEG or DICOM", 400},
      {std::string(128, '\0') + "DICM" + std::string(64, '\x01'), "image", 400},
      {"", "empty", 400},
  };
  for (const Bad& b : bad) {
    r = cli.Post("/detect", b.body, "application/octet-stream");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, b.status) << r->body;
    const json ej = json::parse(r->body);
    EXPECT_NE(ej.at("error").get<std::string>().find(b.needle), std::string::npos) << ej.dump();
    std::printf("%d %s\n", r->status, ej.at("error").get<std::string>().substr(0, 150).c_str());
  }
  r = cli.Post("/detect?threshold=abc", png, "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("threshold"), std::string::npos);
  r = cli.Get("/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(json::parse(r->body).at("error").get<std::string>().find("/nope"), std::string::npos);

  // Oversize: just over the limit (the handler's check) and far over it (httplib's payload limit): 413 + JSON.
  for (size_t n : {size_t(256 << 10) + 1, size_t(1) << 20}) {
    std::string big = png + std::string(n - png.size(), '\0');
    r = cli.Post("/detect", big, "image/png");
    ASSERT_TRUE(r) << "upload of " << n << " bytes: " << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 413) << r->body;
    EXPECT_NE(json::parse(r->body).at("error").get<std::string>().find("limit"), std::string::npos) << r->body;
    std::printf("%zu bytes -> %d %s\n", n, r->status, r->body.c_str());
  }

  h = cli.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(json::parse(h->body).at("failures"), 0) << "no request ended in a 5xx";
}

TEST(Serve, LoadTestSequentialAndConcurrent) {
  const int W = 96, H = 80;
  const std::string png = encode_png(phantom(W, H));
  Server srv(options());
  ASSERT_GT(srv.port(), 0) << srv.error_;
  const auto ref = reference(phantom(W, H), 0.3f);

  auto run = [&](int clients, int per_client, const char* what) {
    std::vector<double> lat;
    std::mutex mu;
    std::atomic<int> failed{0}, wrong{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&] {
        httplib::Client cli("127.0.0.1", srv.port());
        cli.set_read_timeout(30, 0);
        for (int i = 0; i < per_client; ++i) {
          const auto a = std::chrono::steady_clock::now();
          auto r = cli.Post("/detect?threshold=0.3", png, "image/png");
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
          if (!r || r->status != 200) {
            failed++;
            continue;
          }
          if (flatten(json::parse(r->body), W, H) != ref) wrong++;
          std::lock_guard<std::mutex> lk(mu);
          lat.push_back(ms);
        }
      });
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, size_t(p * double(lat.size())))]; };
    std::printf("[load] %-28s %d requests in %.2f s: %.1f requests/s, p50 %.1f ms, p99 %.1f ms, failed %d, wrong %d\n",
                what, clients * per_client, secs, double(clients * per_client) / secs, pct(0.50), pct(0.99),
                failed.load(), wrong.load());
    EXPECT_EQ(failed.load(), 0) << what;
    EXPECT_EQ(wrong.load(), 0) << what << ": every response equals the C++ path";
  };
  run(1, 50, "1 client x 50 sequential");
  run(4, 12, "4 clients x 12 concurrent");
}

TEST(Serve, BadModelAndPortInUseAreErrorsNotCrashes) {
  ServeOptions o = options();
  o.weights = (kDir / "missing.safetensors").string();
  std::atomic<bool> stop{true};
  EXPECT_THROW(run_server(o, &stop, nullptr), Error);
  o = options();
  Server a(o);
  ASSERT_GT(a.port(), 0);
  o.port = a.port();
  o.log = false;
  try {
    run_server(o, &stop, nullptr);
    ADD_FAILURE() << "binding a port in use should fail";
  } catch (const Error& e) {
    std::printf("port in use: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find(std::to_string(a.port())), std::string::npos);
  }
}
