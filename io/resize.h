// From a decoded Image to the network input (faster_rcnn_spec.md §2): keep-aspect resize with TF1 bilinear
// sampling, gray -> 3 channels, per-backbone normalisation, CHW float output, and the scale factors that map
// boxes back to original pixels.
//
// Bilinear sampling (TF1 `tf.image.resize_images(..., BILINEAR, align_corners=False)`, the legacy sampler
// without half-pixel centres): for an output index d on an axis with in -> out samples,
//   s = d * (in / out)            (NO +0.5 / -0.5 offset; TF2 and torch align_corners=False DO offset)
//   i0 = floor(s), i1 = min(i0 + 1, in - 1), t = s - i0
// and the value is lerp(lerp(row i0), lerp(row i1), t_y) with x interpolated first, as TF computes it:
//   top = tl + (tr - tl) * tx;  bottom = bl + (br - bl) * tx;  out = top + (bottom - top) * ty.
// The scale in/out is computed in float, as TF does. Pixel edges therefore map by x_in = x_out * in/out, so a
// box maps back to original pixels by dividing by (out/in) per axis.
#pragma once
#include <string>
#include <vector>

#include "io/image.h"

namespace ctdet {

// (in_h, in_w, C) float HWC -> (out_h, out_w, C). Throws ctdet::Error on non-positive sizes.
void resize_bilinear_tf1(const float* src, int in_h, int in_w, int channels, float* dst, int out_h, int out_w);

// Keep-aspect rule of TF-OD `resize_to_range` (keep_aspect_ratio_resizer, no padding):
//   large = min_side / min(H, W); (h, w) = (round(H*large), round(W*large));
//   if max(h, w) > max_side: small = max_side / max(H, W); (h, w) = (round(H*small), round(W*small)).
// round() is Python 3's round (half to even), computed in double. Small images are upscaled.
struct ResizeShape {
  int out_h = 0, out_w = 0;
  double scale_y = 1, scale_x = 1;  // out / in per axis (the realised ratio after rounding)
};
ResizeShape keep_aspect_shape(int in_h, int in_w, int min_side = 600, int max_side = 1024);

enum class Normalization {
  kNone,       // RGB values 0..255 unchanged
  kResNet,     // subtract channel means [123.68, 116.779, 103.939] (RGB order), no division (TF-slim / TF-OD)
  kInception,  // x * (2/255) - 1, i.e. [0,255] -> [-1,1]
};
Normalization parse_normalization(const std::string& name);  // "none", "resnet", "inception"

// Image -> (H, W, 3) float RGB in [0,255]: gray replicated to 3 channels, alpha dropped, 16-bit samples
// scaled linearly by 255/65535 (window HU data BEFORE this if it is raw CT).
std::vector<float> image_to_rgb_float(const Image& img);

struct NetInput {
  int height = 0, width = 0;     // resized size (the network input)
  std::vector<float> chw;        // (3, height, width), normalised
  int orig_height = 0, orig_width = 0;
  double scale_y = 1, scale_x = 1;  // resized / original: x_orig = x_net / scale_x, y_orig = y_net / scale_y
};

// Full pipeline: RGB float -> keep-aspect TF1 bilinear resize -> normalisation -> CHW. Throws ctdet::Error
// if the resized image is under 33x33 (the minimum both TF-OD extractors assert).
NetInput preprocess_image(const Image& img, Normalization norm, int min_side = 600, int max_side = 1024);

// Map a box (x1, y1, x2, y2) in network-input pixels back to original-image pixels (in place).
void box_to_original(const NetInput& in, float& x1, float& y1, float& x2, float& y2);

}  // namespace ctdet
