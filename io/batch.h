// A batch of preprocessed images as the detector consumes it: (n, 3, H, W) floats in a host buffer (pinned when a
// CUDA device is present, for faster uploads) and, per image, its id, sizes, scales and boxes in network pixels.
// Produced by the data loader (train/loader.h) and by single-image inference (detector/session.h); kept apart from
// the loader so that inference-only programs do not link the loader, TFRecord and protobuf code.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

// Host buffer, pinned when a CUDA device is present (faster uploads). Move-only.
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(size_t floats);
  ~HostBuffer();
  HostBuffer(HostBuffer&& o) noexcept { *this = std::move(o); }
  HostBuffer& operator=(HostBuffer&& o) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  float* data() { return p_; }
  const float* data() const { return p_; }
  size_t size() const { return n_; }
  bool pinned() const { return pinned_; }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
  bool pinned_ = false;
};

struct BatchSample {
  std::string image_id, file;
  size_t index = 0;                    // index in the source
  int orig_height = 0, orig_width = 0;
  int height = 0, width = 0;           // resized (valid) size inside the padded batch
  double scale_y = 1, scale_x = 1;     // resized / original
  bool flipped = false;
  std::vector<Box> boxes;              // network-input pixels, after the flip
};

struct Batch {
  int64_t epoch = 0, batch = 0;        // position: batch number within the epoch
  int n = 0, height = 0, width = 0;    // data is (n, 3, height, width)
  HostBuffer data;
  std::vector<BatchSample> samples;
  float* image(int i) { return data.data() + size_t(i) * 3 * height * width; }
  const float* image(int i) const { return data.data() + size_t(i) * 3 * height * width; }
};

}  // namespace ctdet
