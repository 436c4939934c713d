#include "serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "detector/inference.h"
#include "io/image.h"
#include "io/overlay.h"
#include "nn/error.h"

namespace ctdet {

namespace fs = std::filesystem;
using json = nlohmann::json;

size_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  CTDET_CHECK(i > 0, "size '", text, "': expected a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB)");
  double v = 0;
  try {
    v = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    CTDET_FAIL("size '", text, "': '", text.substr(0, i), "' is not a number");
  }
  std::string unit = text.substr(i);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  double mul = 0;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k" || unit == "kb") mul = 1e3;
  else if (unit == "kib") mul = 1024.0;
  else if (unit == "m" || unit == "mb") mul = 1e6;
  else if (unit == "mib") mul = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb") mul = 1e9;
  else if (unit == "gib") mul = 1024.0 * 1024 * 1024;
  CTDET_CHECK(mul > 0, "size '", text, "': unknown unit '", text.substr(i), "' (B, KB, KiB, MB, MiB, GB, GiB)");
  CTDET_CHECK(v * mul >= 1 && v * mul < 1e15, "size '", text, "' is out of range");
  return size_t(v * mul);
}

namespace {

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}
void send_error(httplib::Response& res, int status, const std::string& msg) { send_json(res, status, {{"error", msg}}); }

int http_status_of(InferError::Kind k) {
  switch (k) {
    case InferError::kBadImage:
    case InferError::kInvalidArgument: return 400;
    case InferError::kIo: return 404;  // only ?slice= reads files
    default: return 500;
  }
}

bool slice_file(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".dcm";
}

struct State {
  const ServeOptions& opt;
  std::unique_ptr<InferenceModel> model;
  std::mutex detect_mu;
  std::atomic<long> requests{0}, failures{0};
  std::vector<std::string> slices;  // names in opt.slices_dir
  std::string model_name;
};

void handle_detect(State& s, const httplib::Request& req, httplib::Response& res) {
  const auto t0 = std::chrono::steady_clock::now();
  float thr = s.opt.threshold;
  if (req.has_param("threshold")) {
    const std::string t = req.get_param_value("threshold");
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !(v >= 0 && v <= 1))
      return send_error(res, 400, "threshold '" + t + "' must be a number in [0, 1]");
    thr = float(v);
  }
  const bool render = req.has_param("render") && req.get_param_value("render") != "0";
  // The slice: ?slice=NAME, a multipart field "file" (else the first file field), or the raw body.
  std::string name, slice_path;
  const std::string* bytes = nullptr;
  std::string file_bytes;
  if (req.has_param("slice")) {
    name = req.get_param_value("slice");
    if (std::find(s.slices.begin(), s.slices.end(), name) == s.slices.end())
      return send_error(res, 404, "no slice named '" + name + "' (GET /slices lists them)");
    slice_path = (fs::path(s.opt.slices_dir) / name).string();
  } else if (req.is_multipart_form_data()) {
    if (req.files.empty()) return send_error(res, 400, "multipart request without a file field (expected 'file')");
    const httplib::MultipartFormData f = req.has_file("file") ? req.get_file_value("file") : req.files.begin()->second;
    name = f.filename.empty() ? f.name : f.filename;
    file_bytes = f.content;
    bytes = &file_bytes;
  } else {
    name = "request body";
    bytes = &req.body;
  }
  if (bytes && bytes->size() > s.opt.max_upload)
    return send_error(res, 413, str("upload of ", bytes->size(), " bytes exceeds the limit of ", s.opt.max_upload, " bytes"));
  if (bytes && bytes->empty()) return send_error(res, 400, "no image: the request body is empty");
  SliceFormat fmt = SliceFormat::kUnknown;
  const Image img = bytes ? decode_slice(bytes->data(), bytes->size(), name, &fmt) : read_slice(slice_path, &fmt);
  std::vector<Detection> dets;
  {
    std::lock_guard<std::mutex> lk(s.detect_mu);
    dets = s.model->detect(img, thr, name);
  }
  std::stable_sort(dets.begin(), dets.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
  const auto& names = s.model->class_names();
  json jd = json::array();
  for (const auto& d : dets)
    jd.push_back({{"class", d.label >= 1 && size_t(d.label) <= names.size() ? names[size_t(d.label - 1)]
                                                                            : std::to_string(d.label)},
                  {"class_id", d.label},
                  {"score", d.score},
                  {"box", {d.x1, d.y1, d.x2, d.y2}}});
  json out = {{"image", {{"width", img.width}, {"height", img.height}, {"format", slice_format_name(fmt)}, {"name", name}}},
              {"detections", jd},
              {"model", s.model_name},
              {"version", CTDET_VERSION},
              {"threshold", thr}};
  if (render) out["png"] = base64(encode_png(to_rgb8(img), "render", 1));
  out["ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  send_json(res, 200, out);
}

}  // namespace

int run_server(const ServeOptions& opt, std::atomic<bool>* stop, std::atomic<int>* bound_port) {
  CTDET_CHECK(opt.max_upload > 0, "serve: --max-upload must be positive");
  CTDET_CHECK(opt.threshold >= 0 && opt.threshold <= 1, "serve: --threshold must be in [0, 1], got ", opt.threshold);
  State s{opt, nullptr, {}, {0}, {0}, {}, {}};
  s.model = std::make_unique<InferenceModel>(InferenceModel::resolve(opt.run_dir, opt.config, opt.weights), opt.device);
  s.model_name = s.model->describe();
  if (!opt.slices_dir.empty()) {
    CTDET_CHECK(fs::is_directory(opt.slices_dir), "serve: --slices '", opt.slices_dir, "' is not a folder");
    for (const auto& e : fs::directory_iterator(opt.slices_dir))
      if (e.is_regular_file() && slice_file(e.path())) s.slices.push_back(e.path().filename().string());
    std::sort(s.slices.begin(), s.slices.end());
  }
  const std::string page = serve_page_html(s.model_name, CTDET_VERSION, opt.threshold);

  httplib::Server svr;
  svr.set_payload_max_length(opt.max_upload + (64 << 10));  // room for multipart framing; the handler checks exactly
  svr.set_read_timeout(10, 0);
  svr.set_keep_alive_timeout(2);
  // httplib's default sets SO_REUSEPORT, which lets a second server bind a port in use and silently take half of
  // its connections; SO_REUSEADDR only allows a quick restart, and a port in use is an error.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  svr.set_write_timeout(10, 0);
  svr.Get("/", [&](const httplib::Request&, httplib::Response& res) { res.set_content(page, "text/html; charset=utf-8"); });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}, {"model", s.model_name}, {"version", CTDET_VERSION},
                         {"device", s.model->device()}, {"requests", s.requests.load()}, {"failures", s.failures.load()},
                         {"max_upload", opt.max_upload}, {"threshold", opt.threshold}});
  });
  svr.Get("/slices", [&](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"slices", s.slices}}); });
  svr.Post("/detect", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      handle_detect(s, req, res);
    } catch (const InferError& e) {
      send_error(res, http_status_of(e.kind()), e.what());
    } catch (const std::bad_alloc&) {
      send_error(res, 503, "out of memory while processing the request");
    } catch (const std::exception& e) {
      send_error(res, 500, std::string("internal error: ") + e.what());
    } catch (...) {
      send_error(res, 500, "internal error: unknown exception");
    }
  });
  // Last lines of defence: anything thrown outside the handlers' own try blocks, and statuses httplib sets itself
  // (404 for unknown paths, 413 for bodies over the payload limit, 400 for malformed requests) get JSON bodies.
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error: " + msg);
  });
  svr.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg;
    if (res.status == 413) msg = str("request body exceeds the upload limit of ", opt.max_upload, " bytes");
    else if (res.status == 404) msg = "no such endpoint: " + req.method + " " + req.path + " (try GET /, POST /detect, GET /health)";
    else msg = str("HTTP ", res.status);
    send_error(res, res.status, msg);
  });
  svr.set_logger([&](const httplib::Request& req, const httplib::Response& res) {
    s.requests++;
    if (res.status >= 500) s.failures++;
    if (opt.log) {
      std::printf("%s %s -> %d (%zu bytes in, %zu out)\n", req.method.c_str(), req.path.c_str(), res.status,
                  req.body.size(), res.body.size());
      std::fflush(stdout);
    }
  });

  int port = opt.port;
  if (opt.port == 0) {
    port = svr.bind_to_any_port(opt.host);
    CTDET_CHECK(port > 0, "serve: cannot bind any port on '", opt.host, "'");
  } else {
    CTDET_CHECK(svr.bind_to_port(opt.host, opt.port), "serve: cannot bind ", opt.host, ":", opt.port,
                " (in use, or not a local address?)");
  }
  if (bound_port) bound_port->store(port);
  if (opt.log) {
    std::printf("serving %s on http://%s:%d/ (max upload %zu bytes, threshold %.2f)\n", s.model_name.c_str(),
                opt.host.c_str(), port, opt.max_upload, opt.threshold);
    std::fflush(stdout);
  }
  std::thread watcher;
  std::atomic<bool> done{false};
  if (stop) {
    watcher = std::thread([&] {
      // httplib's stop() does nothing before listen_after_bind() has started running, so keep asking until the
      // listener has returned.
      while (!done.load()) {
        if (stop->load()) svr.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  const bool ok = svr.listen_after_bind();
  done = true;
  if (watcher.joinable()) watcher.join();
  CTDET_CHECK(ok || (stop && stop->load()), "serve: the listener on ", opt.host, ":", port, " failed");
  return 0;
}

}  // namespace ctdet
