#include "io/coco.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

using json = nlohmann::json;

namespace {
const json& field(const json& obj, const char* key, const std::string& where) {
  CTDET_CHECK(obj.is_object() && obj.contains(key), where, ": missing '", key, "'");
  return obj[key];
}
long long int_field(const json& obj, const char* key, const std::string& where) {
  const json& v = field(obj, key, where);
  CTDET_CHECK(v.is_number_integer() || (v.is_number() && v.get<double>() == double(v.get<long long>())), where,
              ": '", key, "' must be an integer, found ", v.dump());
  return v.get<long long>();
}
std::string opt_string(const json& obj, const char* key) {
  if (!obj.contains(key)) return "";
  const json& v = obj[key];
  return v.is_string() ? v.get<std::string>() : v.is_null() ? "" : v.dump();
}
}  // namespace

Dataset parse_coco(const std::string& text, const std::string& source, const CocoOptions& opt, CocoStats* stats) {
  CocoStats local;
  CocoStats& st = stats ? *stats : local;
  st = CocoStats{};
  json top;
  try {
    top = json::parse(text);
  } catch (const json::exception& e) {
    CTDET_FAIL(source, ": not valid JSON (", e.what(), ")");
  }
  CTDET_CHECK(top.is_object(), source, ": a COCO dataset is a JSON object (a list is a results file)");
  const json& images = field(top, "images", source);
  const json& anns = top.contains("annotations") ? top["annotations"] : json::array();
  const json& cats = field(top, "categories", source);
  CTDET_CHECK(images.is_array() && anns.is_array() && cats.is_array(), source,
              ": images, annotations and categories must be arrays");

  // categories -> labels
  std::vector<std::pair<long long, std::string>> cat_list;
  for (size_t i = 0; i < cats.size(); ++i) {
    const std::string where = str(source, ": categories[", i, "]");
    long long id = int_field(cats[i], "id", where);
    const json& name = field(cats[i], "name", where);
    CTDET_CHECK(name.is_string(), where, ": 'name' must be a string");
    for (auto& c : cat_list) CTDET_CHECK(c.first != id, where, ": category id ", id, " used twice");
    cat_list.push_back({id, name.get<std::string>()});
  }
  std::sort(cat_list.begin(), cat_list.end());
  Dataset ds;
  std::map<long long, int> label_of;  // category id -> label (0: skip)
  if (opt.class_names.empty()) {
    for (auto& [id, name] : cat_list) {
      ds.class_names.push_back(name);
      label_of[id] = int(ds.class_names.size());
    }
  } else {
    ds.class_names = opt.class_names;
    for (auto& [id, name] : cat_list) {
      auto pos = std::find(opt.class_names.begin(), opt.class_names.end(), name);
      if (pos == opt.class_names.end()) {
        std::string known;
        for (auto& c : opt.class_names) known += (known.empty() ? "" : ", ") + c;
        CTDET_CHECK(opt.skip_unknown_classes, source, ": category ", id, " '", name,
                    "' is not in the label map (", known, ")");
        label_of[id] = 0;
      } else {
        label_of[id] = int(pos - opt.class_names.begin()) + 1;
      }
    }
  }

  std::map<long long, size_t> image_index;
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string where = str(source, ": images[", i, "]");
    const json& im = images[i];
    long long id = int_field(im, "id", where);
    CTDET_CHECK(!image_index.count(id), where, ": image id ", id, " used twice");
    const json& fn = field(im, "file_name", where);
    CTDET_CHECK(fn.is_string() && !fn.get<std::string>().empty(), where, ": 'file_name' must be a non-empty string");
    ImageRecord r;
    r.id = fn.get<std::string>();
    r.file = opt.image_dir.empty() ? r.id : opt.image_dir + "/" + r.id;
    if (im.contains("width")) r.width = int(int_field(im, "width", where));
    if (im.contains("height")) r.height = int(int_field(im, "height", where));
    CTDET_CHECK(r.width >= 0 && r.height >= 0, where, ": negative size ", r.width, "x", r.height);
    r.patient_id = opt_string(im, "patient_id");
    r.study_id = opt_string(im, "study_id");
    r.series_id = opt_string(im, "series_id");
    r.attributes["coco_id"] = std::to_string(id);
    image_index[id] = ds.images.size();
    ds.images.push_back(std::move(r));
  }

  for (size_t i = 0; i < anns.size(); ++i) {
    const std::string where = str(source, ": annotations[", i, "]");
    const json& a = anns[i];
    ++st.annotations;
    long long image_id = int_field(a, "image_id", where);
    auto it = image_index.find(image_id);
    CTDET_CHECK(it != image_index.end(), where, ": image_id ", image_id, " is not in images");
    long long cat = int_field(a, "category_id", where);
    auto lt = label_of.find(cat);
    CTDET_CHECK(lt != label_of.end(), where, ": category_id ", cat, " is not in categories");
    bool crowd = a.contains("iscrowd") && a["iscrowd"].is_number() && a["iscrowd"].get<double>() != 0;
    st.crowd += crowd;
    if (crowd && opt.skip_crowd) {
      ++st.crowd_skipped;
      continue;
    }
    if (lt->second == 0) {
      ++st.unknown_class_skipped;
      continue;
    }
    const json& bb = field(a, "bbox", where);
    CTDET_CHECK(bb.is_array() && bb.size() == 4 && bb[0].is_number() && bb[1].is_number() && bb[2].is_number() &&
                    bb[3].is_number(),
                where, ": bbox must be [x, y, w, h] numbers, found ", bb.dump());
    double x = bb[0].get<double>(), y = bb[1].get<double>(), w = bb[2].get<double>(), h = bb[3].get<double>();
    CTDET_CHECK(w >= 0 && h >= 0, where, ": bbox has negative size ", bb.dump());
    Box b;
    b.x1 = float(x), b.y1 = float(y), b.x2 = float(x + w), b.y2 = float(y + h);
    b.label = lt->second;
    ds.images[it->second].boxes.push_back(b);
    ++st.boxes;
  }
  st.images = int(ds.images.size());
  for (auto& r : ds.images) st.negatives += r.boxes.empty();
  return ds;
}

Dataset read_coco(const std::string& path, const CocoOptions& opt, CocoStats* stats) {
  return parse_coco(read_file(path), path, opt, stats);
}

std::string coco_to_json(const Dataset& ds) {
  json images = json::array(), anns = json::array(), cats = json::array();
  for (size_t c = 0; c < ds.class_names.size(); ++c)
    cats.push_back({{"id", c + 1}, {"name", ds.class_names[c]}, {"supercategory", "lesion"}});
  long long ann_id = 0;
  for (size_t i = 0; i < ds.images.size(); ++i) {
    const ImageRecord& r = ds.images[i];
    json im = {{"id", i + 1}, {"file_name", r.id.empty() ? r.file : r.id}, {"width", r.width}, {"height", r.height}};
    if (!r.patient_id.empty()) im["patient_id"] = r.patient_id;
    if (!r.study_id.empty()) im["study_id"] = r.study_id;
    if (!r.series_id.empty()) im["series_id"] = r.series_id;
    images.push_back(im);
    for (const Box& b : r.boxes) {
      CTDET_CHECK(b.label >= 1 && size_t(b.label) <= ds.class_names.size(), "coco_to_json: image '", r.id,
                  "' has a box with label ", b.label, " outside 1..", ds.class_names.size());
      double w = double(b.x2) - b.x1, h = double(b.y2) - b.y1;
      anns.push_back({{"id", ++ann_id},
                      {"image_id", i + 1},
                      {"category_id", b.label},
                      {"bbox", {b.x1, b.y1, w, h}},
                      {"area", w * h},
                      {"iscrowd", 0},
                      {"segmentation", json::array()}});
    }
  }
  json top = {{"info", {{"description", "written by ctdet"}}},
              {"images", images},
              {"annotations", anns},
              {"categories", cats}};
  return top.dump(1);
}

void write_coco(const std::string& path, const Dataset& ds) { write_file_atomic(path, coco_to_json(ds)); }

}  // namespace ctdet
