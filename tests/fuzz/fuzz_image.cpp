// libFuzzer target: PNG and JPEG decoding from memory (magic-byte dispatch, explicit decoders, palette indices).
// Limits are tightened so that a forged header cannot ask for gigabytes; a refused header is a ctdet::Error.
#include <cstddef>
#include <cstdint>

#include "io/image.h"
#include "nn/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ctdet::ImageLimits lim;
  lim.max_side = 2048;
  lim.max_pixels = int64_t(1) << 20;
  try {
    ctdet::decode_image(data, size, "fuzz", lim);
  } catch (const ctdet::Error&) {
  }
  try {
    if (ctdet::sniff_image_format(data, size) == ctdet::ImageFormat::kPng)
      ctdet::decode_png_indices(data, size, "fuzz", lim);
  } catch (const ctdet::Error&) {
  }
  return 0;
}
