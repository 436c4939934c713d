// Detection overlays: boxes and score labels drawn onto an 8-bit RGB copy of an image (for the report
// gallery and `ctdet infer`), plus a box-filter downscale for thumbnails.
//
// Pixel convention: a box (x1, y1, x2, y2) in image pixels with exclusive x2/y2 edges (io/annotations.h)
// covers pixel columns floor(x1) .. ceil(x2)-1 and rows floor(y1) .. ceil(y2)-1. Its outline is drawn
// INSIDE that range, `thickness` pixels wide, clipped to the image; nothing outside it is touched except
// the label. Labels are placed best score first: just above the box, else just below it, else inside its
// top edge, taking the first place inside the image that overlaps no label placed before.
// Colours: GGO yellow, CD red, GGO+CD magenta, other classes from a fixed palette; ground truth green,
// 1 pixel, dashed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/annotations.h"
#include "io/image.h"

namespace ctdet {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
};

constexpr Rgb kGroundTruthColor{0, 200, 0};
// By class name (case-insensitive "GGO", "CD", "GGO+CD"), else a palette entry picked by label.
Rgb class_color(int label, const std::string& name);
std::string css_color(Rgb c);  // "#rrggbb"

// Any Image (gray / gray+alpha / RGB / RGBA, 8- or 16-bit) -> 8-bit RGB; alpha is dropped, 16-bit samples
// scaled by 255/65535 with rounding. Throws ctdet::Error for an empty image or unsupported channel count.
Image to_rgb8(const Image& img);

// Drawing primitives on an 8-bit RGB image (ctdet::Error otherwise). Coordinates are inclusive pixel
// indices; anything outside the image is clipped.
void fill_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c);
// Outline of the pixel rectangle [x0, x1] x [y0, y1], `thickness` pixels inward. Dashed: runs of
// dash_on pixels drawn, dash_off skipped, along each edge.
void draw_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c, int thickness = 2, bool dashed = false,
               int dash_on = 4, int dash_off = 3);
// Built-in 5x7 bitmap font: digits, A-Z (lower case drawn as upper case), space and . , + - % : / _ ( ) # =
// (anything else draws as '?'). Each glyph is 5x7 pixels times `scale`, advance 6*scale; (x, y) is the top
// left corner of the first glyph. Returns the width drawn.
int draw_text(Image& img, int x, int y, const std::string& text, Rgb fg, int scale = 1);
int text_width(const std::string& text, int scale = 1);
constexpr int kGlyphW = 5, kGlyphH = 7, kGlyphAdvance = 6;
// Bitmap rows of a glyph: 7 bytes, bit 4 = leftmost column. Exposed for tests.
const uint8_t* glyph_rows(char c);

struct OverlayOptions {
  int thickness = 2;          // detection outline width (pixels of the ORIGINAL image)
  bool draw_gt = true;        // ground truth: green, 1 pixel, dashed
  bool labels = true;         // "<class> <score>" above each detection
  float min_score = 0.0f;     // detections below are not drawn
  int font_scale = 0;         // 0: 1 for images up to 600 px on the long side, 2 above
};

// An 8-bit RGB copy of img with ground-truth boxes (drawn first) and detections (lowest score first, so
// the best box ends on top). class_names[label-1] names the classes; unknown labels print as their number.
Image draw_overlay(const Image& img, const std::vector<Box>& gt, const std::vector<Detection>& dets,
                   const std::vector<std::string>& class_names, const OverlayOptions& opt = {});

// Box-filter (area-average) downscale of an 8-bit image so that max(width, height) <= max_side, keeping
// the aspect ratio (sides rounded, at least 1). Returns a copy when it already fits.
Image downscale_to_fit(const Image& img, int max_side);

}  // namespace ctdet
