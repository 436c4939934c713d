// ctdet serve: the results web page and JSON endpoints on localhost (serve/server.h). Built when cpp-httplib is
// found (CMake defines CTDET_WITH_SERVE for the ctdet program); otherwise the command explains what is missing.
#include <csignal>
#include <cstdio>

#include "apps/args.h"
#include "apps/command.h"
#include "serve/server.h"

namespace ctdet::app {
namespace {

#if defined(CTDET_WITH_SERVE) && CTDET_WITH_SERVE
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }
#endif

int serve_main(const std::vector<std::string>& argv) {
  Args a("serve", argv, {"run", "config", "weights", "port", "host", "max-upload", "threshold", "device", "slices"},
         {"help", "quiet"});
  if (a.flag("help") || (!a.has("run") && !a.has("config"))) {
    std::printf(
        "usage: ctdet serve (--run RUN_DIR | --config C --weights W) [--port 8080] [--host 127.0.0.1]\n"
        "                   [--max-upload 20MiB] [--threshold 0.3] [--device cpu|cuda|auto] [--slices DIR] [--quiet]\n"
        "serves the results page at http://HOST:PORT/, POST /detect (PNG, JPEG or DICOM; multipart field 'file' or\n"
        "the raw body) -> JSON detections, GET /health. --port 0 picks a free port. --slices DIR offers DIR's slices\n"
        "on the page (and /?slice=NAME opens one). Stop with Ctrl-C.\n");
    return a.flag("help") ? 0 : 2;
  }
#if defined(CTDET_WITH_SERVE) && CTDET_WITH_SERVE
  ServeOptions o;
  o.run_dir = a.get("run");
  o.config = a.get("config");
  o.weights = a.get("weights");
  o.device = a.get("device", "auto");
  o.host = a.get("host", "127.0.0.1");
  o.port = a.get_int("port", 8080);
  CTDET_CHECK(o.port >= 0 && o.port <= 65535, "serve: --port must be 0..65535, got ", o.port);
  o.max_upload = parse_byte_size(a.get("max-upload", "20MiB"));
  o.threshold = float(a.get_double("threshold", 0.3));
  o.slices_dir = a.get("slices");
  o.log = !a.flag("quiet");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const int rc = run_server(o, &g_stop, nullptr);
  std::printf("serve: stopped\n");
  return rc;
#else
  CTDET_FAIL("serve: this ctdet was built without cpp-httplib (install Debian's libcpp-httplib-dev, re-run cmake)");
#endif
}

CTDET_COMMAND("serve", "the results web page and JSON endpoints (POST /detect) on localhost", serve_main);

}  // namespace
}  // namespace ctdet::app
