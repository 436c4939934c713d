// COCO detection *dataset* JSON (images, annotations, categories) in and out. Detection *results*
// (the flat list with scores) live elsewhere.
//   images:      {id, file_name, width, height [, patient_id, study_id, series_id: ctdet extensions]}
//   annotations: {id, image_id, category_id, bbox:[x,y,w,h] (top-left, pixels), area, iscrowd, segmentation}
//   categories:  {id, name, supercategory}
// Box has no crowd flag, so crowd annotations (iscrowd=1) are kept as ordinary boxes or dropped
// (CocoOptions::skip_crowd), and counted either way.
#pragma once
#include <string>
#include <vector>

#include "io/annotations.h"

namespace ctdet {

struct CocoOptions {
  // Label map to map category names onto (index = label-1). Empty: categories sorted by id become
  // the class names, labels 1..N in that order.
  std::vector<std::string> class_names;
  bool skip_unknown_classes = false;  // only with class_names: categories not in it are dropped and counted
  bool skip_crowd = false;
  std::string image_dir;              // ImageRecord::file = image_dir + "/" + file_name
};

struct CocoStats {
  int images = 0, annotations = 0, boxes = 0, negatives = 0, crowd = 0, crowd_skipped = 0,
      unknown_class_skipped = 0;
};

// Throws ctdet::Error naming the file and the offending entry (annotations[i], images[i]).
Dataset parse_coco(const std::string& text, const std::string& source, const CocoOptions& opt = {},
                   CocoStats* stats = nullptr);
Dataset read_coco(const std::string& path, const CocoOptions& opt = {}, CocoStats* stats = nullptr);

// Image ids 1..N in dataset order, annotation ids 1..M, category ids = labels. file_name is the record id.
std::string coco_to_json(const Dataset& ds);
void write_coco(const std::string& path, const Dataset& ds);  // atomic

}  // namespace ctdet
