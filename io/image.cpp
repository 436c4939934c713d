// PNG and JPEG codecs. libpng and libjpeg report errors by longjmp: each codec call runs in one small
// "core" function that owns the setjmp, touches its state only through a pointer to a job struct living
// in the caller's frame (so nothing in the jumping frame is a modified non-volatile local), and returns
// false with a message. The C++ wrapper then throws ctdet::Error naming the file. No C++ exception ever
// crosses a libpng/libjpeg frame: callbacks catch and convert to png_error.
#include "io/image.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

// libjpeg's headers need FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

ImageFormat sniff_image_format(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(p, kPngSig, 8) == 0) return ImageFormat::kPng;
  if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return ImageFormat::kJpeg;
  return ImageFormat::kUnknown;
}

namespace {

// Shared header check, before any pixel allocation.
bool dims_ok(int64_t w, int64_t h, const ImageLimits& lim, char* msg, size_t cap) {
  if (w <= 0 || h <= 0 || w > lim.max_side || h > lim.max_side || w * h > lim.max_pixels) {
    std::snprintf(msg, cap,
                  "header claims %lldx%lld pixels, refusing (limit %lld per side, %lld pixels in all)",
                  (long long)w, (long long)h, (long long)lim.max_side, (long long)lim.max_pixels);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------------------------------------
// PNG decoding
struct PngReadJob {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  ImageLimits limits;
  bool indices = false;   // read_png_indices mode
  char error[512] = {0};
  Image out;
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngReadJob*>(png_get_error_ptr(png));
  std::snprintf(job->error, sizeof(job->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void png_warning_cb(png_structp, png_const_charp) {}  // ancillary-chunk warnings are not errors

void png_read_cb(png_structp png, png_bytep dst, size_t n) {
  auto* job = static_cast<PngReadJob*>(png_get_io_ptr(png));
  if (job->size - job->pos < n) png_error(png, "unexpected end of data (truncated file?)");
  std::memcpy(dst, job->data + job->pos, n);
  job->pos += n;
}

bool png_decode_core(PngReadJob* job) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_error_cb, png_warning_cb);
  if (!png) {
    std::snprintf(job->error, sizeof(job->error), "cannot create the libpng reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(job->error, sizeof(job->error), "cannot create the libpng info struct");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, job, png_read_cb);
  png_set_chunk_malloc_max(png, size_t(64) << 20);
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  char msg[256];
  if (!dims_ok(int64_t(w), int64_t(h), job->limits, msg, sizeof(msg))) png_error(png, msg);
  if (job->indices) {
    if (color != PNG_COLOR_TYPE_PALETTE && color != PNG_COLOR_TYPE_GRAY) {
      std::snprintf(msg, sizeof(msg), "not a palette or grayscale PNG (color type %d): cannot read label indices",
                    color);
      png_error(png, msg);
    }
    if (depth < 8) png_set_packing(png);  // one sample per byte, values unscaled
  } else {
    if (color == PNG_COLOR_TYPE_PALETTE) {
      png_set_palette_to_rgb(png);
      if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    } else if (color == PNG_COLOR_TYPE_GRAY && depth < 8) {
      png_set_expand_gray_1_2_4_to_8(png);
    }
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int channels = png_get_channels(png, info);
  const int out_depth = png_get_bit_depth(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  if ((out_depth != 8 && out_depth != 16) || channels < 1 || channels > 4) {
    std::snprintf(msg, sizeof(msg), "unsupported PNG layout after expansion (depth %d, %d channels)", out_depth,
                  channels);
    png_error(png, msg);
  }
  bool alloc_failed = false;
  try {
    job->pixels.resize(rowbytes * h);
    job->rows.resize(h);
    job->out = Image(int(w), int(h), channels, out_depth);
  } catch (...) {
    alloc_failed = true;
  }
  if (alloc_failed) png_error(png, "out of memory for the pixel buffer");
  for (png_uint_32 y = 0; y < h; ++y) job->rows[y] = job->pixels.data() + size_t(y) * rowbytes;
  png_read_image(png, job->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);

  const size_t n = size_t(w) * h * channels;
  uint16_t* dst = job->out.data.data();
  for (png_uint_32 y = 0; y < h; ++y) {
    const uint8_t* r = job->rows[y];
    uint16_t* d = dst + size_t(y) * w * channels;
    if (out_depth == 8) {
      for (size_t i = 0; i < size_t(w) * channels; ++i) d[i] = r[i];
    } else {  // PNG stores 16-bit samples big-endian
      for (size_t i = 0; i < size_t(w) * channels; ++i) d[i] = uint16_t((r[2 * i] << 8) | r[2 * i + 1]);
    }
  }
  (void)n;
  job->pixels.clear();
  job->pixels.shrink_to_fit();
  return true;
}

Image png_decode(const void* data, size_t size, const std::string& name, const ImageLimits& limits, bool indices) {
  CTDET_CHECK(size > 0, "'", name, "': empty file (0 bytes), expected a PNG");
  CTDET_CHECK(sniff_image_format(data, size) == ImageFormat::kPng, "'", name, "': not a PNG (bad signature)");
  // Check the IHDR dimensions ourselves: libpng's png_read_info reads past IHDR before we could look.
  const auto* p = static_cast<const uint8_t*>(data);
  if (size >= 24 && std::memcmp(p + 12, "IHDR", 4) == 0) {
    auto be32 = [](const uint8_t* b) {
      return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
    };
    char msg[256];
    if (!dims_ok(int64_t(be32(p + 16)), int64_t(be32(p + 20)), limits, msg, sizeof(msg)))
      CTDET_FAIL("'", name, "': PNG ", msg);
  }
  PngReadJob job;
  job.data = static_cast<const uint8_t*>(data);
  job.size = size;
  job.limits = limits;
  job.indices = indices;
  if (!png_decode_core(&job)) CTDET_FAIL("'", name, "': PNG decode failed: ", job.error);
  return std::move(job.out);
}

// ------------------------------------------------------------------------------------------------
// PNG encoding
struct PngWriteJob {
  const Image* img = nullptr;
  int level = -1;
  char error[512] = {0};
  std::string out;
  std::vector<uint8_t> row;
};

void png_werror_cb(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngWriteJob*>(png_get_error_ptr(png));
  std::snprintf(job->error, sizeof(job->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void png_write_cb(png_structp png, png_bytep src, size_t n) {
  auto* job = static_cast<PngWriteJob*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    job->out.append(reinterpret_cast<const char*>(src), n);
  } catch (...) {
    failed = true;
  }
  if (failed) png_error(png, "out of memory for the encoded PNG");
}
void png_flush_cb(png_structp) {}

bool png_encode_core(PngWriteJob* job) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job, png_werror_cb, png_warning_cb);
  if (!png) {
    std::snprintf(job->error, sizeof(job->error), "cannot create the libpng writer");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(job->error, sizeof(job->error), "cannot create the libpng info struct");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  const Image& img = *job->img;
  static const int kColor[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_write_fn(png, job, png_write_cb, png_flush_cb);
  if (job->level >= 0) png_set_compression_level(png, job->level);
  png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), img.bit_depth, kColor[img.channels],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t per_row = size_t(img.width) * img.channels;
  for (int y = 0; y < img.height; ++y) {
    const uint16_t* s = img.data.data() + size_t(y) * per_row;
    uint8_t* r = job->row.data();
    if (img.bit_depth == 8) {
      for (size_t i = 0; i < per_row; ++i) r[i] = uint8_t(s[i]);
    } else {
      for (size_t i = 0; i < per_row; ++i) {
        r[2 * i] = uint8_t(s[i] >> 8);
        r[2 * i + 1] = uint8_t(s[i] & 0xFF);
      }
    }
    png_write_row(png, r);
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

void check_encodable(const Image& img, const std::string& name, bool jpeg) {
  CTDET_CHECK(img.width > 0 && img.height > 0, "'", name, "': cannot encode an empty image (", img.width, "x",
              img.height, ")");
  CTDET_CHECK(img.data.size() == size_t(img.width) * img.height * img.channels, "'", name, "': image has ",
              img.data.size(), " samples, expected ", img.width, "x", img.height, "x", img.channels);
  CTDET_CHECK(img.bit_depth == 8 || img.bit_depth == 16, "'", name, "': bit depth ", img.bit_depth,
              " (expected 8 or 16)");
  if (jpeg) {
    CTDET_CHECK(img.bit_depth == 8 && (img.channels == 1 || img.channels == 3), "'", name,
                "': JPEG encoding needs 8-bit gray or RGB, got ", img.channels, " channels at ", img.bit_depth,
                " bits");
  } else {
    CTDET_CHECK(img.channels >= 1 && img.channels <= 4, "'", name, "': ", img.channels, " channels");
    CTDET_CHECK(img.bit_depth == 8 || img.channels == 1, "'", name,
                "': 16-bit PNG encoding supports gray only, got ", img.channels, " channels");
  }
  const int maxv = img.max_value();
  for (size_t i = 0; i < img.data.size(); ++i)
    CTDET_CHECK(img.data[i] <= maxv, "'", name, "': sample ", i, " = ", img.data[i], " exceeds ", maxv,
                " for a ", img.bit_depth, "-bit image");
}

// ------------------------------------------------------------------------------------------------
// JPEG decoding and encoding
struct JpegErrMgr {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char* msg;   // points into the job's buffer
  size_t cap;
};

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrMgr*>(cinfo->err);
  char buf[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buf);
  std::snprintf(e->msg, e->cap, "%s", buf);
  std::longjmp(e->jump, 1);
}
// Warnings from libjpeg are corrupt-data reports (premature end of file, bad Huffman code, ...), after
// which it would fill the rest with gray. We treat them as errors, except stray bytes before a marker.
void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) return;
  jpeg_error_exit_cb(cinfo);
}

struct JpegReadJob {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ImageLimits limits;
  char error[JMSG_LENGTH_MAX + 256] = {0};
  jpeg_decompress_struct cinfo;
  JpegErrMgr err;
  Image out;
  std::vector<uint8_t> row;
};

bool jpeg_decode_core(JpegReadJob* job) {
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_error_exit_cb;
  job->err.pub.emit_message = jpeg_emit_message_cb;
  job->err.msg = job->error;
  job->err.cap = sizeof(job->error);
  if (setjmp(job->err.jump)) {
    jpeg_destroy_decompress(&job->cinfo);
    return false;
  }
  jpeg_create_decompress(&job->cinfo);
  jpeg_mem_src(&job->cinfo, job->data, static_cast<unsigned long>(job->size));
  jpeg_read_header(&job->cinfo, TRUE);
  char msg[256];
  if (!dims_ok(job->cinfo.image_width, job->cinfo.image_height, job->limits, msg, sizeof(msg))) {
    std::snprintf(job->error, sizeof(job->error), "%s", msg);
    jpeg_destroy_decompress(&job->cinfo);
    return false;
  }
  const int comps = job->cinfo.num_components;
  if (comps != 1 && comps != 3) {
    std::snprintf(job->error, sizeof(job->error), "unsupported JPEG with %d components (CMYK/YCCK?)", comps);
    jpeg_destroy_decompress(&job->cinfo);
    return false;
  }
  job->cinfo.out_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&job->cinfo);
  const int w = int(job->cinfo.output_width), h = int(job->cinfo.output_height);
  const int c = job->cinfo.output_components;
  bool alloc_failed = false;
  try {
    job->out = Image(w, h, c, 8);
    job->row.resize(size_t(w) * c);
  } catch (...) {
    alloc_failed = true;
  }
  if (alloc_failed) {
    std::snprintf(job->error, sizeof(job->error), "out of memory for the pixel buffer");
    jpeg_destroy_decompress(&job->cinfo);
    return false;
  }
  while (job->cinfo.output_scanline < job->cinfo.output_height) {
    const int y = int(job->cinfo.output_scanline);
    JSAMPROW r = job->row.data();
    jpeg_read_scanlines(&job->cinfo, &r, 1);
    uint16_t* d = job->out.data.data() + size_t(y) * w * c;
    for (size_t i = 0; i < size_t(w) * c; ++i) d[i] = job->row[i];
  }
  jpeg_finish_decompress(&job->cinfo);
  jpeg_destroy_decompress(&job->cinfo);
  return true;
}

struct JpegWriteJob {
  const Image* img = nullptr;
  int quality = 90;
  char error[JMSG_LENGTH_MAX + 64] = {0};
  jpeg_compress_struct cinfo;
  JpegErrMgr err;
  unsigned char* buf = nullptr;
  unsigned long buf_size = 0;
  std::vector<uint8_t> row;
};

bool jpeg_encode_core(JpegWriteJob* job) {
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_error_exit_cb;
  job->err.msg = job->error;
  job->err.cap = sizeof(job->error);
  if (setjmp(job->err.jump)) {
    jpeg_destroy_compress(&job->cinfo);
    return false;
  }
  jpeg_create_compress(&job->cinfo);
  jpeg_mem_dest(&job->cinfo, &job->buf, &job->buf_size);
  const Image& img = *job->img;
  job->cinfo.image_width = JDIMENSION(img.width);
  job->cinfo.image_height = JDIMENSION(img.height);
  job->cinfo.input_components = img.channels;
  job->cinfo.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&job->cinfo);
  jpeg_set_quality(&job->cinfo, job->quality, TRUE);
  jpeg_start_compress(&job->cinfo, TRUE);
  const size_t per_row = size_t(img.width) * img.channels;
  while (job->cinfo.next_scanline < job->cinfo.image_height) {
    const uint16_t* s = img.data.data() + size_t(job->cinfo.next_scanline) * per_row;
    for (size_t i = 0; i < per_row; ++i) job->row[i] = uint8_t(s[i]);
    JSAMPROW r = job->row.data();
    jpeg_write_scanlines(&job->cinfo, &r, 1);
  }
  jpeg_finish_compress(&job->cinfo);
  jpeg_destroy_compress(&job->cinfo);
  return true;
}

}  // namespace

Image decode_png(const void* data, size_t size, const std::string& name, const ImageLimits& limits) {
  return png_decode(data, size, name, limits, /*indices=*/false);
}

Image decode_png_indices(const void* data, size_t size, const std::string& name, const ImageLimits& limits) {
  return png_decode(data, size, name, limits, /*indices=*/true);
}

Image read_png_indices(const std::string& path, const ImageLimits& limits) {
  const std::string bytes = read_file(path);
  return decode_png_indices(bytes.data(), bytes.size(), path, limits);
}

Image decode_jpeg(const void* data, size_t size, const std::string& name, const ImageLimits& limits) {
  CTDET_CHECK(size > 0, "'", name, "': empty file (0 bytes), expected a JPEG");
  CTDET_CHECK(sniff_image_format(data, size) == ImageFormat::kJpeg, "'", name,
              "': not a JPEG (no FF D8 FF start marker)");
  JpegReadJob job;
  job.data = static_cast<const uint8_t*>(data);
  job.size = size;
  job.limits = limits;
  if (!jpeg_decode_core(&job)) CTDET_FAIL("'", name, "': JPEG decode failed: ", job.error);
  return std::move(job.out);
}

Image decode_image(const void* data, size_t size, const std::string& name, const ImageLimits& limits) {
  CTDET_CHECK(size > 0, "'", name, "': empty file (0 bytes), expected a PNG or JPEG image");
  switch (sniff_image_format(data, size)) {
    case ImageFormat::kPng: return decode_png(data, size, name, limits);
    case ImageFormat::kJpeg: return decode_jpeg(data, size, name, limits);
    default: break;
  }
  const auto* p = static_cast<const uint8_t*>(data);
  char head[64];
  std::snprintf(head, sizeof(head), "%02X %02X %02X %02X", p[0], size > 1 ? p[1] : 0, size > 2 ? p[2] : 0,
                size > 3 ? p[3] : 0);
  CTDET_FAIL("'", name, "': unknown image format (first bytes ", head,
             "); supported: PNG, JPEG (DICOM goes through the DICOM reader)");
}

Image read_image(const std::string& path, const ImageLimits& limits) {
  const std::string bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

std::string encode_png(const Image& img, const std::string& name, int compression_level) {
  check_encodable(img, name, /*jpeg=*/false);
  PngWriteJob job;
  job.img = &img;
  job.level = compression_level;
  job.row.resize(size_t(img.width) * img.channels * (img.bit_depth / 8));
  if (!png_encode_core(&job)) CTDET_FAIL("'", name, "': PNG encode failed: ", job.error);
  return std::move(job.out);
}

std::string encode_jpeg(const Image& img, int quality, const std::string& name) {
  check_encodable(img, name, /*jpeg=*/true);
  CTDET_CHECK(quality >= 1 && quality <= 100, "'", name, "': JPEG quality ", quality, " not in 1..100");
  JpegWriteJob job;
  job.img = &img;
  job.quality = quality;
  job.row.resize(size_t(img.width) * img.channels);
  const bool ok = jpeg_encode_core(&job);
  std::string out;
  if (ok && job.buf) out.assign(reinterpret_cast<const char*>(job.buf), job.buf_size);
  if (job.buf) std::free(job.buf);
  if (!ok) CTDET_FAIL("'", name, "': JPEG encode failed: ", job.error);
  return out;
}

size_t write_png(const std::string& path, const Image& img, int compression_level) {
  const std::string bytes = encode_png(img, path, compression_level);
  write_file_atomic(path, bytes);
  return bytes.size();
}

size_t write_jpeg(const std::string& path, const Image& img, int quality) {
  const std::string bytes = encode_jpeg(img, quality, path);
  write_file_atomic(path, bytes);
  return bytes.size();
}

}  // namespace ctdet
