// Label masks → boxes. A lesion is an 8-connected component of lesion pixels (value ggo_value or
// cd_value; other values, e.g. MedSeg's 3 = pleural effusion, are treated as background and counted).
// Class rule (the study's): a component with only GGO pixels is GGO, only CD pixels CD, both GGO+CD.
// Boxes use exclusive right/bottom edges: a component over columns 3..5 gives x1 = 3, x2 = 6.
#pragma once
#include <cstdint>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

struct MaskRule {
  uint8_t ggo_value = 1, cd_value = 2;            // pixel values in the mask
  int label_ggo = 1, label_cd = 2, label_both = 3;  // 1-based labels (default_class_names order)
  int min_area = 1;                               // components with fewer pixels are dropped
};

struct MaskComponent {
  int x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // x2/y2 exclusive
  int area = 0, ggo_pixels = 0, cd_pixels = 0;
};

struct MaskStats {
  int components = 0, small_dropped = 0;
  long other_pixels = 0;  // non-zero pixels that are neither value
};

// All 8-connected components of pixels equal to one of the rule's two values, in raster order of
// their first pixel. mask is (h, w), row-major.
std::vector<MaskComponent> mask_components(const uint8_t* mask, int w, int h, const MaskRule& rule = {},
                                           MaskStats* stats = nullptr);
// Components with area >= min_area as labelled boxes.
std::vector<Box> mask_to_boxes(const uint8_t* mask, int w, int h, const MaskRule& rule = {},
                               MaskStats* stats = nullptr);

}  // namespace ctdet
