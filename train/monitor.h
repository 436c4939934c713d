// `ctdet monitor`: one patient's lesions followed from study to study, per lung zone and class.
//
// Input: the studies of one patient (each an ordered stack of slices) and, per slice, detections (boxes).
// Everything here works from detections; where they come from (a results file, the detector) is the caller's
// DetectionSource.
//
// Per slice (segment_lungs), the classical way, on values in one unit (HU for DICOM, display levels for 8-bit
// PNGs in the lung window; MonitorOptions gives the thresholds in that unit):
//   body  = largest 4-connected component of value > body_threshold, holes filled (pixels not reachable from
//           the image border through non-body pixels become body: this takes the lungs in);
//   lungs = value < lung_threshold inside the body, closed with a small disc (bridge_radius: vessels cut the
//           aerated lung into pieces) and kept inside the body, 4-connected components, the 2 largest kept when they have
//           >= min_lung_fraction of the image; each kept component has its holes filled (vessels, central
//           lesions) and is closed morphologically (Euclidean disc of closing_radius, exact distance transform)
//           so that dense lesions at the pleura fall inside it; where closings overlap, the larger lung keeps it.
//   side  = a component's centroid left or right of the body's centroid column, turned into the PATIENT's side
//           by the orientation: radiological (patient's left on the image right; DICOM row direction +x) or
//           neurological. One component with >= 25% of its pixels on each side of the body centre (merged
//           lungs) is split at the body centre column.
// Upper / middle / lower (vertical_third): thirds of the lungs' extent along the study, slices ordered apex to
// base: with lung on slices first..last (n = last - first + 1), slice i lies in third floor(3 (i - first + 0.5) / n).
// Slices beyond the extent take the nearest end (noted in StudyResult::notes when they hold detections).
// Zones: index = side * 3 + third, side 0 = patient right, 1 = patient left (the order of io/synth's manifest).
//
// A detection goes to the side holding most of its box pixels inside the lung mask; with no lung pixel in the
// box, or a tie, to the side whose lung centroid is nearest to the box centre ("nearest"), or with no lung on
// the slice, to the side of the image half holding the box centre ("midline"); the method is reported.
// Box pixels: pixel (x, y) is inside Box x1,y1,x2,y2 (x2/y2 exclusive) when x1 <= x + 0.5 < x2 (same for y).
//
// Lesion area (measure_slice) per zone and class: the union of the boxes of that class (a pixel covered by
// several boxes counts once, for the highest-scoring box's zone), each box limited to its lung region
// (box_lung_region: the lung mask inside the box plus the convex hull of it, so that a lesion biting into the
// lung at the pleura or the mediastinum, wider than the closing disc, is still inside), counting pixels with
// value >= lesion_threshold (denser than aerated lung). In mm^2 when every slice of every study has a pixel
// spacing (DICOM), else in pixels.
//
// Changes (compare_studies) between consecutive studies (by date), per zone and class present in either:
//   new (0 -> >0), resolved (>0 -> 0), larger / smaller (|after - before| / before > change_threshold), stable.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

constexpr int kMonitorZones = 6;
const char* monitor_zone_name(int zone);  // "right_upper", "right_middle", "right_lower", "left_upper", ...
const char* monitor_third_name(int third);  // "upper", "middle", "lower"

struct MonitorOptions {
  // Thresholds in the unit of the slice values. Defaults: Hounsfield units.
  float body_threshold = -500;    // body = above (outside air ~ -1000, fat ~ -100)
  float lung_threshold = -320;    // aerated lung = below, inside the body
  float lesion_threshold = -750;  // lesion pixel = at or above, inside a box and the lung
  double min_lung_fraction = 0.002;  // a lung component needs this fraction of the image's pixels
  int closing_radius = -1;           // pixels; < 0: round(0.03 * max(width, height)); 0: no closing
  int bridge_radius = -1;            // closing of the air mask before components (vessels split the lung);
                                     // < 0: max(1, round(0.01 * max(width, height))); 0: none
  double change_threshold = 0.2;     // relative change beyond which larger / smaller
  float min_score = 0.5f;            // detections below are ignored
  bool radiological = true;          // PNG convention (patient's left on the image right); DICOM: orientation
};
// The same thresholds for 8-bit images in a display window (level/width in HU, io/dicom.h's window_to_u8
// mapping without rounding): value = (HU - (level - width / 2)) / width * 255.
MonitorOptions monitor_options_u8(double level = -600, double width = 1500);

// One slice's pixels as the monitor reads them.
struct MonitorImage {
  int width = 0, height = 0;
  std::vector<float> values;          // (height, width) row-major
  double pixel_area_mm2 = 0;          // row spacing * column spacing; 0 when unknown
  int patient_left_on_image_right = -1;  // 1 / 0 from the image orientation; -1 unknown (use the option)
};

struct LungSegmentation {
  int width = 0, height = 0;
  std::vector<uint8_t> body;  // 1 inside the (filled) body
  std::vector<uint8_t> lung;  // 0 none, 1 patient right lung, 2 patient left lung (filled, closed)
  int64_t pixels[2] = {0, 0};  // per side (0 right, 1 left)
  double centroid_x[2] = {0, 0}, centroid_y[2] = {0, 0};  // per side, pixel centres; valid when pixels > 0
  int components = 0;          // lung components kept (0..2)
  bool patient_left_on_image_right = true;  // the convention the sides were read with
  bool has_lung() const { return pixels[0] + pixels[1] > 0; }
};
// Throws ctdet::Error for a size mismatch or a non-finite value (naming `where`).
LungSegmentation segment_lungs(const MonitorImage& img, const MonitorOptions& opt, const std::string& where = "");

// Morphology on 0/1 masks (exact squared Euclidean distance transform between pixel centres).
// dist2[i] = squared distance from pixel i to the nearest pixel with mask != 0 (a large value when none).
std::vector<int64_t> squared_distance_transform(const std::vector<uint8_t>& mask, int width, int height);
// Closing with the disc {d^2 <= r^2}: dilate then erode.
std::vector<uint8_t> close_mask(const std::vector<uint8_t>& mask, int width, int height, int radius);
// Pixels of value 0 not 4-connected to the image border through value-0 pixels become 1.
std::vector<uint8_t> fill_holes(const std::vector<uint8_t>& mask, int width, int height);

struct SideAssignment {
  int side = 0;             // 0 patient right, 1 patient left
  std::string method;       // "overlap", "nearest" (tie or no lung pixel in the box), "midline" (no lung)
  int64_t overlap[2] = {0, 0};  // box pixels inside each side's lung
};
SideAssignment assign_side(const LungSegmentation& seg, const Box& box);

// The lung region of a box, (y - y0, x - x0) over the box's pixels: lung-mask pixels (either side) plus the
// pixels whose centres lie inside the convex hull of the lung pixels in the box (none added with < 3 hull points).
std::vector<uint8_t> box_lung_region(const LungSegmentation& seg, const Box& box);

// Third (0 upper, 1 middle, 2 lower) of the slice at `index` (apex-to-base order) given which slices have lung.
// *outside is set when the slice lies beyond the lungs' extent (or no slice has lung: then thirds of all slices).
int vertical_third(const std::vector<bool>& has_lung, int index, bool* outside = nullptr);

// One detection's fate on its slice.
struct DetectionFinding {
  Detection det;
  int side = 0;
  std::string method;
  int64_t lesion_px = 0;  // this box's dense lung pixels (its own, before the union)
};
struct SliceFindings {
  std::string image_id;
  bool has_lung = false;
  double pixel_area_mm2 = 0;
  std::vector<DetectionFinding> detections;  // those kept (score >= min_score), highest score first
  // (side, label) -> union lesion pixels
  std::map<std::pair<int, int>, int64_t> lesion_px;
};
// Segments the slice, assigns each detection a side and counts the lesion pixels (header comment).
// Detections with labels < 1 or non-finite boxes are errors naming `where`.
SliceFindings measure_slice(const MonitorImage& img, const std::vector<Detection>& dets, const MonitorOptions& opt,
                            const std::string& where);

// ---- series -----------------------------------------------------------------------------------------------
struct MonitorStudy {
  std::string study_id, date;        // date "YYYY-MM-DD" (or any string that sorts by time)
  std::vector<ImageRecord> slices;   // apex to base; ImageRecord::id is the detection key
  bool dicom = false;                // slices are DICOM files (values in HU), else 8-bit images
};
struct MonitorSeries {
  std::string patient_id;
  std::vector<MonitorStudy> studies;
};

// manifest.json as `ctdet synth --series` writes it (io/synth.h):
//   {"patient_id": "...", "studies": [{"date": "2020-03-02", "folder": "study_00_2020-03-02",
//     "slices": [{"file": "slice_000.png", "z": 0.16}, ...]}, ...]}
// Slice files are resolved under <manifest dir>/<folder>; slices are ordered by "z" (apex 0 .. base 1) when
// every slice has one, else listed order. A study may instead give "dicom_dir" (relative to the manifest):
// its files are read as a DICOM series (io/dicom.h) and ordered apex to base from their positions.
// Image ids (detection keys): "<folder>/<file>". Studies are sorted by date. Errors name the file and study.
MonitorSeries read_monitor_manifest(const std::string& path);
// The dataset of every slice in series order (for COCO results ids: make_coco_id_map).
Dataset monitor_dataset(const MonitorSeries& series, const std::vector<std::string>& class_names);

using DetectionSource = std::function<std::vector<Detection>(const ImageRecord&)>;
using SliceLoader = std::function<MonitorImage(const ImageRecord&)>;
// Reads PNG/JPEG (channel 0 as is) or, when the file is not an image, a DICOM slice (HU, spacing,
// orientation).
MonitorImage load_monitor_image(const ImageRecord& rec);
// Detections grouped by image id (a slice without any gets none).
DetectionSource detections_by_image(const std::vector<Detection>& dets);
// Ids of detections that name no slice of the series (empty when all match).
std::vector<std::string> unknown_detection_ids(const MonitorSeries& series, const std::vector<Detection>& dets);

struct StudyResult {
  std::string study_id, date;
  int slices = 0, slices_with_lung = 0, detections = 0;
  bool mm2 = false;  // every slice had a pixel spacing
  // (zone, label) -> union lesion pixels / mm^2 (mm^2 NaN-free only when mm2)
  std::map<std::pair<int, int>, int64_t> area_px;
  std::map<std::pair<int, int>, double> area_mm2;
  std::map<std::pair<int, int>, int> count;  // detections per zone and class
  std::vector<std::string> notes;            // nearest-side assignments, slices beyond the lung extent
};
StudyResult analyze_study(const MonitorStudy& study, const DetectionSource& dets, const SliceLoader& load,
                          const MonitorOptions& opt);

enum class ChangeKind { kNew, kResolved, kLarger, kSmaller, kStable };
const char* change_name(ChangeKind c);  // "new", "resolved", "larger", "smaller", "stable"
// The rule of the header comment; before/after >= 0, not both 0.
ChangeKind classify_change(double before, double after, double threshold);

struct ZoneChange {
  int zone = 0, label = 0;
  std::string date_before, date_after;
  double before = 0, after = 0;
  double percent = 0;  // 100 (after - before) / before; NaN when before == 0
  ChangeKind change = ChangeKind::kStable;
};
struct MonitorReport {
  std::string patient_id;
  std::vector<std::string> class_names;
  std::string unit;  // "mm2" or "px"
  std::vector<StudyResult> studies;  // by date
  std::vector<ZoneChange> changes;   // per consecutive pair, zone, label (only where either side > 0)
  double change_threshold = 0.2;
};
// Changes between consecutive studies (header comment); area in `unit` ("mm2" or "px").
std::vector<ZoneChange> compare_studies(const std::vector<StudyResult>& studies, const std::string& unit,
                                        double threshold);
double study_area(const StudyResult& s, const std::string& unit, int zone, int label);

MonitorReport run_monitor(const MonitorSeries& series, const DetectionSource& dets, const SliceLoader& load,
                          const MonitorOptions& opt, const std::vector<std::string>& class_names);

// Outputs. CSV: zone,class,date_before,date_after,area_before,area_after,percent_change,change,unit.
std::string monitor_csv(const MonitorReport& r);
std::string monitor_markdown(const MonitorReport& r);
// A self-contained <section> (inline SVG: area over time per zone, one line per class) and a whole document.
std::string monitor_html_section(const MonitorReport& r);
std::string monitor_html_document(const MonitorReport& r);
struct MonitorPaths {
  std::string csv, md, html;
};
// Writes monitor.csv, monitor.md, monitor.html into out_dir (created), each atomically.
MonitorPaths write_monitor_outputs(const MonitorReport& r, const std::string& out_dir);

}  // namespace ctdet
