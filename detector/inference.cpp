#include "detector/inference.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "detector/session.h"
#include "io/dicom.h"
#include "io/resize.h"
#include "nn/device.h"
#include "nn/param_store.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

namespace ctdet {

namespace fs = std::filesystem;

namespace {

// Different image sizes each get their own planned graph in the session; a server fed many sizes would grow
// without bound, so the session is rebuilt (parameters kept) past this many cached graphs.
constexpr size_t kMaxCachedGraphs = 8;

void delete_cuda(CudaContext* c) {
#if CTDET_WITH_CUDA
  delete c;
#else
  (void)c;
#endif
}

// The kind of an error thrown while decoding: InferErrors keep theirs, everything else is a bad image.
[[noreturn]] void rethrow_as_bad_image(const std::string& name) {
  try {
    throw;
  } catch (const InferError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();  // decoders already name the file; say it once
    throw InferError(InferError::kBadImage, what.find(name) != std::string::npos ? what : str("image '", name, "': ", what));
  }
}

// A private temporary file removed on scope exit (DICOM from memory: DCMTK reads files).
struct TempFile {
  std::string path;
  explicit TempFile(const void* data, size_t size) {
    std::string tmpl = (fs::temp_directory_path() / "ctdet-slice-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = mkstemp(buf.data());
    if (fd < 0) throw InferError(InferError::kIo, str("decode_slice: cannot create a temporary file in ",
                                                      fs::temp_directory_path().string(), ": ", std::strerror(errno)));
    path = buf.data();
    const char* p = static_cast<const char*>(data);
    size_t left = size;
    while (left > 0) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        const std::string why = std::strerror(errno);
        ::close(fd);
        std::remove(path.c_str());
        throw InferError(InferError::kIo, str("decode_slice: cannot write temporary file ", path, ": ", why));
      }
      p += w;
      left -= size_t(w);
    }
    ::close(fd);
  }
  ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace

SliceFormat sniff_slice_format(const void* data, size_t size) {
  const auto* b = static_cast<const unsigned char*>(data);
  if (!data) return SliceFormat::kUnknown;
  switch (sniff_image_format(data, size)) {
    case ImageFormat::kPng: return SliceFormat::kPng;
    case ImageFormat::kJpeg: return SliceFormat::kJpeg;
    default: break;
  }
  if (size >= 132 && std::memcmp(b + 128, "DICM", 4) == 0) return SliceFormat::kDicom;
  return SliceFormat::kUnknown;
}

const char* slice_format_name(SliceFormat f) {
  switch (f) {
    case SliceFormat::kPng: return "png";
    case SliceFormat::kJpeg: return "jpeg";
    case SliceFormat::kDicom: return "dicom";
    default: return "unknown";
  }
}

Image decode_slice(const void* data, size_t size, const std::string& name, SliceFormat* format) {
  if (!data && size > 0) throw InferError(InferError::kInvalidArgument, str("decode_slice: '", name, "': null data"));
  if (size == 0) throw InferError(InferError::kBadImage, str("image '", name, "' is empty (0 bytes)"));
  const SliceFormat f = sniff_slice_format(data, size);
  if (format) *format = f;
  if (f == SliceFormat::kUnknown)
    throw InferError(InferError::kBadImage, str("image '", name, "' (", size,
                                                " bytes) is not a PNG, JPEG or DICOM file (unrecognised first bytes)"));
  try {
    if (f == SliceFormat::kDicom) {
      TempFile tmp(data, size);
      DicomOptions o;
      o.keep_hu = false;
      return read_dicom_slice(tmp.path, o).windowed;
    }
    return decode_image(data, size, name);
  } catch (...) {
    rethrow_as_bad_image(name);
  }
}

Image read_slice(const std::string& path, SliceFormat* format) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InferError(InferError::kIo, str("image '", path, "' does not exist"));
  if (fs::is_directory(path, ec)) throw InferError(InferError::kIo, str("image '", path, "' is a folder, not a file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InferError(InferError::kIo, str("image '", path, "' cannot be opened: ", std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InferError(InferError::kIo, str("image '", path, "': read error"));
  const SliceFormat f = sniff_slice_format(bytes.data(), bytes.size());
  if (format) *format = f;
  if (f == SliceFormat::kDicom) {  // read in place (no temporary copy)
    try {
      DicomOptions o;
      o.keep_hu = false;
      return read_dicom_slice(path, o).windowed;
    } catch (...) {
      rethrow_as_bad_image(path);
    }
  }
  return decode_slice(bytes.data(), bytes.size(), path, format);
}

ModelFiles InferenceModel::resolve(const std::string& run_dir, const std::string& config, const std::string& weights) {
  std::error_code ec;
  if (run_dir.empty()) {
    if (config.empty() || weights.empty())
      throw InferError(InferError::kInvalidArgument, "model: give a run folder, or a config file and a weights file");
    if (!fs::exists(config, ec)) throw InferError(InferError::kIo, str("model: config '", config, "' does not exist"));
    if (!fs::exists(weights, ec)) throw InferError(InferError::kIo, str("model: weights '", weights, "' do not exist"));
  } else if (!fs::is_directory(run_dir, ec)) {
    throw InferError(InferError::kIo, str("model: run folder '", run_dir, "' does not exist"));
  }
  try {
    return resolve_model_files(run_dir, config, weights);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw InferError(InferError::kModel, e.what());
  }
}

InferenceModel::InferenceModel(const ModelFiles& files, const std::string& device)
    : files_(files), device_(device), cuda_(nullptr, delete_cuda) {
  if (device_ != "cpu" && device_ != "cuda" && device_ != "auto")
    throw InferError(InferError::kInvalidArgument, str("model: device must be cpu, cuda or auto, got '", device_, "'"));
  if (device_ == "auto") device_ = cuda_device_available() ? "cuda" : "cpu";
  if (device_ == "cuda" && !cuda_device_available())
    throw InferError(InferError::kDevice, str("model: device cuda: ", cuda_unavailable_reason()));
  const Device dev = device_ == "cuda" ? Device::CUDA : Device::CPU;
#if CTDET_WITH_CUDA
  if (dev == Device::CUDA) {
    try {
      cuda_.reset(new CudaContext(0));
    } catch (const std::exception& e) {
      throw InferError(InferError::kDevice, str("model: cannot initialise CUDA: ", e.what()));
    }
  }
#endif
  try {
    ps_ = std::make_unique<ParamStore>(dev, DType::F32);
    declare_faster_rcnn_params(*ps_, files_.config.model);
    ps_->allocate(ParamUse::Inference);  // parameters only: no gradients or momentum in a deployed model
    load_model_weights(*ps_, files_.weights_path);
    session_ = std::make_unique<DetectorSession>(files_.config.model, *ps_, dev, cuda_.get());
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw InferError(InferError::kModel, str("model: weights '", files_.weights_path, "' with config '",
                                             files_.config_path, "': ", e.what()));
  }
}

InferenceModel::~InferenceModel() = default;

std::string InferenceModel::backbone() const { return backbone_kind_name(files_.config.model.backbone); }

std::string InferenceModel::describe() const {
  return str(backbone(), ", ", class_names().size(), " classes, weights ", fs::path(files_.weights_path).filename().string(),
             ", ", device_);
}

std::vector<Detection> InferenceModel::detect(const Image& img, float score_threshold, const std::string& image_id) {
  if (img.empty()) throw InferError(InferError::kBadImage, str("detect: image '", image_id, "' is empty"));
  if (!(score_threshold >= 0.0f && score_threshold <= 1.0f))
    throw InferError(InferError::kInvalidArgument, str("detect: score threshold must be in [0, 1], got ", score_threshold));
  const FasterRcnnConfig& cfg = files_.config.model;
  Batch b;
  try {
    b = single_image_batch(cfg, img, image_id);  // model.input_normalization, as `ctdet infer`
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw InferError(InferError::kBadImage, str("detect: image '", image_id, "' (", img.width, "x", img.height,
                                                ", ", img.channels, " channels): ", e.what()));
  }
  if (session_->num_graphs() >= kMaxCachedGraphs)
    session_ = std::make_unique<DetectorSession>(cfg, *ps_, ps_->device(), cuda_.get());
  std::vector<Detection> dets = session_->detect(b, score_threshold)[0];
  std::vector<Detection> out;
  out.reserve(dets.size());
  for (const Detection& d : dets)
    if (d.score > 0.0f) out.push_back(d);
  return out;
}

}  // namespace ctdet
