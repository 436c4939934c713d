// Detections (ctdet::Detection) in and out:
//   COCO results JSON  [{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}, ...]
//   CSV                image,class,score,x1,y1,x2,y2   (header required; class = class name or 1-based label)
// COCO uses integer image and category ids; CocoIdMap translates them to ImageRecord::id and 1-based labels.
// An empty results list ("[]") is valid and means "no detections" (pycocotools' loadRes crashes on it).
#pragma once
#include <string>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

struct CocoIdMap {
  std::vector<std::string> image_names;  // parallel to image_ids: ImageRecord::id
  std::vector<long long> image_ids;      // COCO image id
  std::vector<long long> category_ids;   // index = label-1: COCO category id
  std::string image_name(long long coco_id, const std::string& where) const;  // throws when unknown
  long long image_id(const std::string& name, const std::string& where) const;
  int label(long long category_id, const std::string& where) const;          // throws when unknown
};

// Image ids: ImageRecord::attributes["coco_id"] when present (io/coco.h sets it), else 1..N in dataset
// order (what io/coco.h coco_to_json writes). Category ids: category_ids when given (size = number of
// classes), else label = category id.
CocoIdMap make_coco_id_map(const Dataset& ds, const std::vector<long long>& category_ids = {});

// Category id of each class of ds (index = label-1), read from the "categories" of a COCO dataset JSON
// text by name. Throws naming the class when a class has no category.
std::vector<long long> coco_category_ids(const std::string& coco_json_text, const std::string& source,
                                         const std::vector<std::string>& class_names);

// COCO results JSON. Throws ctdet::Error naming the file and entry index for malformed entries, unknown
// image ids or category ids, and non-finite scores.
std::vector<Detection> parse_detections_coco_json(const std::string& text, const std::string& source,
                                                  const CocoIdMap& ids);
std::vector<Detection> read_detections_coco_json(const std::string& path, const CocoIdMap& ids);
std::string detections_to_coco_json(const std::vector<Detection>& dets, const CocoIdMap& ids);
void write_detections_coco_json(const std::string& path, const std::vector<Detection>& dets, const CocoIdMap& ids);

// CSV. Reading: the class column is a name from class_names or an integer 1..K; errors name the line.
std::vector<Detection> parse_detections_csv(const std::string& text, const std::string& source,
                                            const std::vector<std::string>& class_names);
std::vector<Detection> read_detections_csv(const std::string& path, const std::vector<std::string>& class_names);
std::string detections_to_csv(const std::vector<Detection>& dets, const std::vector<std::string>& class_names);
void write_detections_csv(const std::string& path, const std::vector<Detection>& dets,
                          const std::vector<std::string>& class_names);

// By extension: ".json" → COCO results, else CSV.
// Ground truth for evaluation: a VIA CSV (by extension), a COCO dataset JSON (has "images" and
// "annotations"), or a VIA project/export JSON. `classes` (optional) fixes the class order; `class_attr` is the
// VIA region attribute holding the class (empty: the importer's default); file paths are resolved under
// `image_dir`. For COCO, *category_ids receives the category id of each class (else it is left empty).
Dataset read_ground_truth(const std::string& path, const std::vector<std::string>& classes,
                          const std::string& class_attr, const std::string& image_dir,
                          std::vector<long long>* category_ids);

std::vector<Detection> read_detections(const std::string& path, const CocoIdMap& ids,
                                       const std::vector<std::string>& class_names);

}  // namespace ctdet
