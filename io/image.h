// Raster images in memory and the PNG (libpng) / JPEG (libjpeg-turbo) codecs.
//
// One representation for every decoded file: samples as uint16_t, interleaved HWC, row-major,
// top row first. `bit_depth` says how to read them: 8 -> values 0..255, 16 -> values 0..65535.
// Channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. Palette PNGs are expanded to RGB (RGBA when they
// carry a tRNS chunk); PNGs with 1/2/4-bit gray are scaled up to 8 bits as libpng does.
// Label masks want the raw palette indices instead: read_png_indices.
//
// Every decoder error becomes ctdet::Error naming the file (or the `name` given for in-memory data).
// Headers are checked against ImageLimits before any pixel memory is allocated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ctdet {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  int bit_depth = 8;                        // 8 or 16: the range of the samples (255 or 65535)
  std::vector<uint16_t> data;               // (H, W, C) interleaved

  Image() = default;
  Image(int w, int h, int c, int depth = 8)
      : width(w), height(h), channels(c), bit_depth(depth), data(size_t(w) * size_t(h) * size_t(c), 0) {}
  uint16_t& at(int y, int x, int c = 0) { return data[(size_t(y) * width + x) * channels + c]; }
  uint16_t at(int y, int x, int c = 0) const { return data[(size_t(y) * width + x) * channels + c]; }
  int max_value() const { return bit_depth == 16 ? 65535 : 255; }
  bool empty() const { return width == 0 || height == 0; }
};

// Decoders refuse headers above these before allocating (default: a side over 16384, or over 256 Mpixels).
struct ImageLimits {
  int64_t max_side = 16384;
  int64_t max_pixels = int64_t(256) << 20;
};

enum class ImageFormat { kUnknown, kPng, kJpeg };
// From the first bytes (PNG signature, JPEG SOI marker FF D8 FF).
ImageFormat sniff_image_format(const void* data, size_t size);

// Reads a file and dispatches on its magic bytes. Any other format -> ctdet::Error naming the file.
Image read_image(const std::string& path, const ImageLimits& limits = {});
// The same from memory; `name` is used in error messages (a path, an URL, "request body", ...).
Image decode_image(const void* data, size_t size, const std::string& name, const ImageLimits& limits = {});
Image decode_png(const void* data, size_t size, const std::string& name, const ImageLimits& limits = {});
Image decode_jpeg(const void* data, size_t size, const std::string& name, const ImageLimits& limits = {});
inline Image decode_png(const std::string& bytes, const std::string& name, const ImageLimits& limits = {}) {
  return decode_png(bytes.data(), bytes.size(), name, limits);
}
inline Image decode_jpeg(const std::string& bytes, const std::string& name, const ImageLimits& limits = {}) {
  return decode_jpeg(bytes.data(), bytes.size(), name, limits);
}

// Label masks: a palette PNG gives its palette indices, a gray PNG its raw gray values (1/2/4-bit samples
// are NOT rescaled: a 2-bit mask gives 0..3; 16-bit gives 0..65535). Result has 1 channel.
// RGB / RGBA / gray+alpha PNGs are refused (ctdet::Error naming the file).
Image read_png_indices(const std::string& path, const ImageLimits& limits = {});
Image decode_png_indices(const void* data, size_t size, const std::string& name, const ImageLimits& limits = {});

// Encoders: PNG for 8-bit gray / gray+alpha / RGB / RGBA and 16-bit gray; JPEG for 8-bit gray / RGB.
// `name` appears in error messages. compression_level: zlib 0..9 (-1 = libpng default).
std::string encode_png(const Image& img, const std::string& name = "png", int compression_level = -1);
std::string encode_jpeg(const Image& img, int quality = 90, const std::string& name = "jpeg");
// Atomic (temporary file, fsync, rename). Returns the number of bytes written.
size_t write_png(const std::string& path, const Image& img, int compression_level = -1);
size_t write_jpeg(const std::string& path, const Image& img, int quality = 90);

}  // namespace ctdet
