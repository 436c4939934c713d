// `ctdet serve`: a small HTTP server (Debian's cpp-httplib) around one InferenceModel (detector/inference.h).
//
//   GET  /          one self-contained HTML page: upload or choose a slice, boxes drawn on a canvas, findings
//                   table, a threshold slider that re-filters client-side, the model's name and version
//   POST /detect    the slice as a multipart form field "file" or as the raw body (PNG, JPEG or DICOM), or
//                   ?slice=NAME for one of the --slices folder; ?threshold=T (default the server's); ?render=1 adds
//                   the decoded 8-bit image as a base64 PNG ("png") for the page to draw (DICOM needs it).
//                   -> 200 {"image":{"width","height","format"}, "detections":[{"class","class_id","score",
//                           "box":[x1,y1,x2,y2]}], "model", "version", "threshold", "ms"}
//                   -> 400 {"error": "..."} for a bad/corrupt/unsupported file or parameter, 413 over max_upload,
//                      500 for anything else; a handler never lets an exception escape.
//   GET  /slices    {"slices": [names]} of the --slices folder (PNG/JPEG/DICOM files, not recursive)
//   GET  /health    {"status":"ok","model","version","device","requests","failures"}
// One detector session behind a mutex: requests are decoded concurrently, detected one at a time.
#pragma once
#include <atomic>
#include <cstddef>
#include <string>

namespace ctdet {

struct ServeOptions {
  std::string run_dir, config, weights;  // the model: a run folder, or a config + weights (train/model_files.h)
  std::string device = "auto";
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (reported through bound_port)
  size_t max_upload = size_t(20) << 20;  // request bodies above this get 413
  float threshold = 0.3f;                // default score threshold of /detect and the page's slider
  std::string slices_dir;                // optional folder of slices offered on the page
  bool log = true;                       // one line per request on stdout
};

// Parses "20MiB", "512KiB", "1MB", "1000" (bytes). Throws ctdet::Error naming the text.
size_t parse_byte_size(const std::string& text);

// The page served at "/" (serve/page.cpp): model name/version and default threshold are written into it.
std::string serve_page_html(const std::string& model, const std::string& version, float threshold);

// Loads the model, binds host:port and serves until *stop becomes true (polled every 50 ms; nullptr: forever).
// *bound_port (when given) is set to the listening port once bound. Returns 0 after a clean stop. Throws
// ctdet::Error when the model cannot be loaded or the address cannot be bound.
int run_server(const ServeOptions& opt, std::atomic<bool>* stop, std::atomic<int>* bound_port);

}  // namespace ctdet
