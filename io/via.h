// VGG Image Annotator (VIA) annotations → Dataset: 2.x CSV export, 2.x JSON (annotation export or
// project file with _via_img_metadata) and 1.x JSON (regions as an object keyed "0","1",...).
//
// Shapes become axis-aligned boxes (x1,y1,x2,y2 in image pixels):
//   rect (x,y,width,height), polygon / polyline (min/max of all_points_x/y; polygon needs >= 3 points,
//   polyline >= 2), circle (cx±r, cy±r), ellipse (cx,cy,rx,ry, theta in radians: the extent of the
//   rotated ellipse, half-width sqrt(rx²cos²θ + ry²sin²θ), half-height sqrt(rx²sin²θ + ry²cos²θ)).
//   point regions carry no extent: they are skipped and counted.
// The class of a region is a region attribute (ViaOptions::class_attr; when empty: "lesion" if present,
// else the region's only attribute). Text/dropdown/radio values are the class name; a checkbox value
// ({"GGO":true}) must have exactly one true option. Names map to 1-based labels through class_names.
// Images without regions are kept as negatives. The file attribute "patient_id" (and "study_id",
// "series_id") fills the ImageRecord fields; every file attribute is also kept in attributes.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

struct ViaOptions {
  std::string class_attr;                                 // empty: "lesion", else the single attribute
  std::vector<std::string> class_names = default_class_names();  // label map, index = label-1
  bool skip_unknown_classes = false;                      // false: an unknown class is an error
  std::string image_dir;                                  // ImageRecord::file = image_dir + "/" + filename
  // Optional: fills width/height of ImageRecord::file (returns false when unknown). When sizes are known,
  // boxes are clipped to the image.
  std::function<bool(const std::string& file, int* width, int* height)> image_size;
};

struct ViaStats {
  int rows = 0;                  // CSV data rows / JSON regions read
  int images = 0, negatives = 0, boxes = 0;
  int points_skipped = 0;        // point regions (no extent)
  int polylines = 0;             // polyline regions turned into boxes
  int unknown_class_skipped = 0; // only with skip_unknown_classes
  int clipped = 0;               // boxes that reached outside the image and were clipped
  int degenerate_dropped = 0;    // boxes with no area (after clipping) dropped
  int entries_discarded = 0;     // JSON entries lacking filename/regions (VIA discards them too)
};

// Throws ctdet::Error naming the file and row (CSV: 1-based line number, the header is line 1) or the
// image key and region index (JSON).
Dataset read_via_csv(const std::string& path, const ViaOptions& opt = {}, ViaStats* stats = nullptr);
Dataset parse_via_csv(const std::string& text, const std::string& source, const ViaOptions& opt = {},
                      ViaStats* stats = nullptr);
Dataset read_via_json(const std::string& path, const ViaOptions& opt = {}, ViaStats* stats = nullptr);
Dataset parse_via_json(const std::string& text, const std::string& source, const ViaOptions& opt = {},
                       ViaStats* stats = nullptr);

// One CSV record split into unquoted fields (RFC 4180: "..." with "" for a quote). Exposed for tests.
std::vector<std::string> split_csv_record(const std::string& line, const std::string& where);

// Axis-aligned extent of a VIA shape given as JSON text (the region_shape_attributes column). Returns
// false for a point; throws for an unknown shape or missing/invalid keys (`where` names the row).
bool via_shape_extent(const std::string& shape_json, Box* box, const std::string& where);

// Clips every box to [0,width]x[0,height] for images whose size is known (> 0), dropping boxes left
// without area. Counts into stats->clipped / degenerate_dropped when given.
void clip_boxes_to_images(Dataset& ds, ViaStats* stats = nullptr);

}  // namespace ctdet
