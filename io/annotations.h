// The dataset model shared by every importer (VIA CSV/JSON, COCO, label masks, DICOM) and by
// prepare, train and eval. Boxes are in absolute pixels of the ORIGINAL image, corner order x1,y1,x2,y2
// (x to the right, y down; x2/y2 exclusive edges as VIA/COCO draw them). TF records store the normalised
// y/x form; conversion happens at that edge only.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace ctdet {

struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int label = 0;  // 1-based class index into Dataset::class_names (0 is background)
  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
};

struct ImageRecord {
  std::string file;       // path of the image (or of the DICOM file)
  std::string id;         // unique id within the dataset (file name by default)
  int width = 0, height = 0;
  std::vector<Box> boxes; // empty: a lesion-free (negative) image, kept
  std::string patient_id, study_id, series_id, study_date;  // empty when unknown
  double slice_position = 0;                                 // along the patient axis, for series order
  std::map<std::string, std::string> attributes;             // VIA file attributes etc.
};

struct Dataset {
  std::vector<std::string> class_names;  // index 0 = class 1 (default: GGO, CD, GGO+CD)
  std::vector<ImageRecord> images;
};

// One detection, as written by `ctdet infer` and read by `ctdet eval`.
struct Detection {
  std::string image_id;
  int label = 0;  // 1-based
  float score = 0;
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // original-image pixels
};

inline std::vector<std::string> default_class_names() { return {"GGO", "CD", "GGO+CD"}; }

}  // namespace ctdet
