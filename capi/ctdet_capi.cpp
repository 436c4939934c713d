// The C API of include/ctdet.h over detector/inference.h. Every entry point catches everything: ctdet::InferError maps
// to its status, std::bad_alloc to CTDET_OUT_OF_MEMORY, any other exception to CTDET_INTERNAL with its message.
#include "ctdet.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "detector/inference.h"

struct ctdet_model {
  std::unique_ptr<ctdet::InferenceModel> m;
  std::mutex mu;            // one detector session: calls are serialised
  std::mutex err_mu;
  std::string last_error;   // the model's last failure
};

struct ctdet_result {
  int width = 0, height = 0;
  std::vector<ctdet::Detection> dets;
  std::vector<std::string> names;  // class name per detection (kept alive for ctdet_detection::class_name)
};

namespace {

thread_local std::string g_thread_error;

ctdet_status status_of(ctdet::InferError::Kind k) {
  switch (k) {
    case ctdet::InferError::kInvalidArgument: return CTDET_INVALID_ARGUMENT;
    case ctdet::InferError::kIo: return CTDET_IO_ERROR;
    case ctdet::InferError::kBadImage: return CTDET_BAD_IMAGE;
    case ctdet::InferError::kModel: return CTDET_MODEL_ERROR;
    case ctdet::InferError::kDevice: return CTDET_DEVICE_ERROR;
  }
  return CTDET_INTERNAL;
}

// Records msg for this thread and (when given) the model; returns st.
ctdet_status fail(ctdet_model* model, ctdet_status st, const std::string& msg) noexcept {
  try {
    g_thread_error = msg;
    if (model) {
      std::lock_guard<std::mutex> lk(model->err_mu);
      model->last_error = msg;
    }
  } catch (...) {  // out of memory while copying the message: keep what is there
  }
  return st;
}

// Runs fn, mapping every exception to a status (see the header comment).
template <typename Fn>
ctdet_status guarded(ctdet_model* model, const char* where, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const ctdet::InferError& e) {
    return fail(model, status_of(e.kind()), std::string(where) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(model, CTDET_OUT_OF_MEMORY, std::string(where) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(model, CTDET_INTERNAL, std::string(where) + ": " + e.what());
  } catch (...) {
    return fail(model, CTDET_INTERNAL, std::string(where) + ": unknown exception");
  }
}

ctdet_status make_result(ctdet_model* model, const ctdet::Image& img, float thr, const std::string& id,
                         ctdet_result** out) {
  auto r = std::make_unique<ctdet_result>();
  r->width = img.width;
  r->height = img.height;
  {
    std::lock_guard<std::mutex> lk(model->mu);
    r->dets = model->m->detect(img, thr, id);
  }
  std::stable_sort(r->dets.begin(), r->dets.end(),
                   [](const ctdet::Detection& a, const ctdet::Detection& b) { return a.score > b.score; });
  const auto& names = model->m->class_names();
  for (const auto& d : r->dets)
    r->names.push_back(d.label >= 1 && size_t(d.label) <= names.size() ? names[size_t(d.label - 1)]
                                                                        : std::to_string(d.label));
  *out = r.release();
  return CTDET_OK;
}

}  // namespace

extern "C" {

const char* ctdet_version(void) { return CTDET_VERSION; }

const char* ctdet_status_name(ctdet_status st) {
  switch (st) {
    case CTDET_OK: return "CTDET_OK";
    case CTDET_INVALID_ARGUMENT: return "CTDET_INVALID_ARGUMENT";
    case CTDET_IO_ERROR: return "CTDET_IO_ERROR";
    case CTDET_BAD_IMAGE: return "CTDET_BAD_IMAGE";
    case CTDET_MODEL_ERROR: return "CTDET_MODEL_ERROR";
    case CTDET_DEVICE_ERROR: return "CTDET_DEVICE_ERROR";
    case CTDET_OUT_OF_MEMORY: return "CTDET_OUT_OF_MEMORY";
    case CTDET_INTERNAL: return "CTDET_INTERNAL";
  }
  return "CTDET_UNKNOWN_STATUS";
}

ctdet_model* ctdet_open(const char* config_path, const char* weights_path, const char* device, ctdet_status* st) {
  ctdet_model* result = nullptr;
  const ctdet_status s = guarded(nullptr, "ctdet_open", [&]() -> ctdet_status {
    if (!config_path || !weights_path)
      return fail(nullptr, CTDET_INVALID_ARGUMENT,
                  std::string("ctdet_open: ") + (!config_path ? "config_path" : "weights_path") + " is NULL");
    const ctdet::ModelFiles files = ctdet::InferenceModel::resolve("", config_path, weights_path);
    auto m = std::make_unique<ctdet_model>();
    m->m = std::make_unique<ctdet::InferenceModel>(files, device ? device : "auto");
    result = m.release();
    return CTDET_OK;
  });
  if (st) *st = s;
  return result;
}

void ctdet_close(ctdet_model* model) {
  try {
    delete model;
  } catch (...) {
  }
}

ctdet_status ctdet_detect_buffer(ctdet_model* model, const void* pixels, int width, int height, int stride_bytes,
                                 ctdet_pixel_format fmt, float score_threshold, ctdet_result** out) {
  if (out) *out = nullptr;
  return guarded(model, "ctdet_detect_buffer", [&]() -> ctdet_status {
    const char* where = "ctdet_detect_buffer: ";
    if (!model) return fail(nullptr, CTDET_INVALID_ARGUMENT, std::string(where) + "model is NULL");
    if (!out) return fail(model, CTDET_INVALID_ARGUMENT, std::string(where) + "out is NULL");
    if (!pixels) return fail(model, CTDET_INVALID_ARGUMENT, std::string(where) + "pixels is NULL");
    int bpp = 0, channels = 0, depth = 8;
    switch (fmt) {
      case CTDET_GRAY8: bpp = 1; channels = 1; break;
      case CTDET_GRAY16: bpp = 2; channels = 1; depth = 16; break;
      case CTDET_RGB8: bpp = 3; channels = 3; break;
      default:
        return fail(model, CTDET_INVALID_ARGUMENT,
                    ctdet::str(where, "pixel format ", int(fmt), " is not CTDET_GRAY8, CTDET_GRAY16 or CTDET_RGB8"));
    }
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
      return fail(model, CTDET_INVALID_ARGUMENT,
                  ctdet::str(where, "image size ", width, "x", height, " is outside 1..16384 per side"));
    if (int64_t(stride_bytes) < int64_t(width) * bpp)
      return fail(model, CTDET_INVALID_ARGUMENT, ctdet::str(where, "stride ", stride_bytes, " bytes is below width ",
                                                            width, " x ", bpp, " bytes per pixel"));
    if (!(score_threshold >= 0.0f && score_threshold <= 1.0f))
      return fail(model, CTDET_INVALID_ARGUMENT, ctdet::str(where, "score threshold ", score_threshold, " is not in [0, 1]"));
    ctdet::Image img(width, height, channels, depth);
    const auto* base = static_cast<const unsigned char*>(pixels);
    for (int y = 0; y < height; ++y) {
      const unsigned char* row = base + size_t(y) * size_t(stride_bytes);
      uint16_t* dst = img.data.data() + size_t(y) * size_t(width) * size_t(channels);
      if (fmt == CTDET_GRAY16) {
        std::memcpy(dst, row, size_t(width) * 2);  // native endianness
      } else {
        for (size_t i = 0; i < size_t(width) * size_t(channels); ++i) dst[i] = row[i];
      }
    }
    return make_result(model, img, score_threshold, "buffer", out);
  });
}

ctdet_status ctdet_detect_file(ctdet_model* model, const char* path, float score_threshold, ctdet_result** out) {
  if (out) *out = nullptr;
  return guarded(model, "ctdet_detect_file", [&]() -> ctdet_status {
    const char* where = "ctdet_detect_file: ";
    if (!model) return fail(nullptr, CTDET_INVALID_ARGUMENT, std::string(where) + "model is NULL");
    if (!out) return fail(model, CTDET_INVALID_ARGUMENT, std::string(where) + "out is NULL");
    if (!path) return fail(model, CTDET_INVALID_ARGUMENT, std::string(where) + "path is NULL");
    if (!(score_threshold >= 0.0f && score_threshold <= 1.0f))
      return fail(model, CTDET_INVALID_ARGUMENT, ctdet::str(where, "score threshold ", score_threshold, " is not in [0, 1]"));
    const ctdet::Image img = ctdet::read_slice(path);
    return make_result(model, img, score_threshold, path, out);
  });
}

int ctdet_result_count(const ctdet_result* result) { return result ? int(result->dets.size()) : 0; }

ctdet_status ctdet_result_image_size(const ctdet_result* result, int* width, int* height) {
  if (!result || !width || !height)
    return fail(nullptr, CTDET_INVALID_ARGUMENT, "ctdet_result_image_size: result, width or height is NULL");
  *width = result->width;
  *height = result->height;
  return CTDET_OK;
}

ctdet_status ctdet_result_get(const ctdet_result* result, int i, ctdet_detection* d) {
  if (!result || !d) return fail(nullptr, CTDET_INVALID_ARGUMENT, "ctdet_result_get: result or d is NULL");
  if (i < 0 || size_t(i) >= result->dets.size())
    return fail(nullptr, CTDET_INVALID_ARGUMENT,
                ctdet::str("ctdet_result_get: index ", i, " is outside 0..", int(result->dets.size()) - 1));
  const ctdet::Detection& x = result->dets[size_t(i)];
  d->x1 = x.x1;
  d->y1 = x.y1;
  d->x2 = x.x2;
  d->y2 = x.y2;
  d->class_id = x.label;
  d->class_name = result->names[size_t(i)].c_str();
  d->score = x.score;
  return CTDET_OK;
}

void ctdet_result_free(ctdet_result* result) { delete result; }

const char* ctdet_last_error(const ctdet_model* model) {
  if (model) return model->last_error.c_str();
  return g_thread_error.c_str();
}

}  // extern "C"
