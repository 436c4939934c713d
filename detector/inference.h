// One trained detector, one image at a time (read PNG/JPEG/DICOM -> preprocess_image -> a one-image Batch ->
// DetectorSession::detect): the single path used by `ctdet infer`, `ctdet monitor`, `ctdet serve` and the C API
// (include/ctdet.h), so none of them copies it.
//
//   InferenceModel m(resolve_model_files("", "configs/x.json", "w.safetensors"), "auto");
//   Image img = read_slice("a.dcm");                  // or decode_slice(bytes, size, "upload")
//   std::vector<Detection> d = m.detect(img, 0.3f);   // boxes in img's pixels, labels 1-based
//
// Errors are InferError (a ctdet::Error) carrying a kind, so callers can map them to codes (C status, HTTP):
// kIo (file missing/unreadable), kBadImage (not a PNG/JPEG/DICOM, corrupt, too small), kModel (config or weights
// unusable), kDevice (CUDA asked for but absent), kInvalidArgument. Anything else from below stays a plain Error.
// InferenceModel is NOT thread-safe (one DetectorSession): callers hold a mutex around detect().
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "io/annotations.h"
#include "io/image.h"
#include "nn/error.h"
#include "train/model_files.h"

namespace ctdet {

class InferError : public Error {
 public:
  enum Kind { kInvalidArgument, kIo, kBadImage, kModel, kDevice };
  InferError(Kind k, const std::string& what) : Error(what), kind_(k) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

enum class SliceFormat { kUnknown, kPng, kJpeg, kDicom };
// From the magic bytes: PNG signature, JPEG SOI, DICOM "DICM" at offset 128.
SliceFormat sniff_slice_format(const void* data, size_t size);
const char* slice_format_name(SliceFormat f);  // "png", "jpeg", "dicom", "unknown"

// A slice from memory or a file, decoded by its magic bytes (not its name). DICOM is windowed to the lung window
// (io/dicom.h) as `ctdet infer` does; from memory it goes through a private temporary file (DCMTK reads files).
// Errors: InferError kBadImage naming `name` and the problem; kIo for a missing / unreadable path.
Image decode_slice(const void* data, size_t size, const std::string& name, SliceFormat* format = nullptr);
Image read_slice(const std::string& path, SliceFormat* format = nullptr);

class DetectorSession;
class ParamStore;
struct CudaContext;

class InferenceModel {
 public:
  // device: "cpu", "cuda" or "auto" (cuda when a device is present). Loads the weights (kModel on failure).
  InferenceModel(const ModelFiles& files, const std::string& device);
  // resolve_model_files(run_dir, config, weights) with its errors as kIo / kModel.
  static ModelFiles resolve(const std::string& run_dir, const std::string& config, const std::string& weights);
  ~InferenceModel();
  InferenceModel(const InferenceModel&) = delete;
  InferenceModel& operator=(const InferenceModel&) = delete;

  // Detections with score >= threshold (and > 0), boxes in img's pixels clipped by the detector to the image.
  std::vector<Detection> detect(const Image& img, float score_threshold, const std::string& image_id = "image");

  const std::vector<std::string>& class_names() const { return files_.config.data.class_names; }
  const ModelFiles& files() const { return files_; }
  std::string device() const { return device_; }
  // "resnet101", and a one-line description "resnet101, 3 classes, weights w.safetensors, cpu".
  std::string backbone() const;
  std::string describe() const;

 private:
  ModelFiles files_;
  std::string device_;
  std::unique_ptr<CudaContext, void (*)(CudaContext*)> cuda_;
  std::unique_ptr<ParamStore> ps_;
  std::unique_ptr<DetectorSession> session_;
};

}  // namespace ctdet
