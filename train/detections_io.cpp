#include "train/detections_io.h"

#include "io/coco.h"
#include "io/via.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

using nlohmann::json;

// ---- id map -----------------------------------------------------------------------------------------

std::string CocoIdMap::image_name(long long coco_id, const std::string& where) const {
  for (size_t i = 0; i < image_ids.size(); ++i)
    if (image_ids[i] == coco_id) return image_names[i];
  CTDET_FAIL(where, ": image_id ", coco_id, " is not in the ground truth (mismatched files?)");
}

long long CocoIdMap::image_id(const std::string& name, const std::string& where) const {
  for (size_t i = 0; i < image_names.size(); ++i)
    if (image_names[i] == name) return image_ids[i];
  CTDET_FAIL(where, ": image '", name, "' is not in the ground truth");
}

int CocoIdMap::label(long long category_id, const std::string& where) const {
  for (size_t i = 0; i < category_ids.size(); ++i)
    if (category_ids[i] == category_id) return int(i) + 1;
  CTDET_FAIL(where, ": category_id ", category_id, " is not a known class (", category_ids.size(), " classes)");
}

CocoIdMap make_coco_id_map(const Dataset& ds, const std::vector<long long>& category_ids) {
  CocoIdMap m;
  for (size_t i = 0; i < ds.images.size(); ++i) {
    const auto& im = ds.images[i];
    long long id = (long long)(i + 1);
    auto it = im.attributes.find("coco_id");
    if (it != im.attributes.end()) {
      char* end = nullptr;
      id = std::strtoll(it->second.c_str(), &end, 10);
      CTDET_CHECK(!it->second.empty() && end && *end == '\0', "image '", im.id, "': attribute coco_id '", it->second,
                  "' is not an integer");
    }
    m.image_names.push_back(im.id);
    m.image_ids.push_back(id);
  }
  if (category_ids.empty()) {
    for (size_t c = 0; c < ds.class_names.size(); ++c) m.category_ids.push_back((long long)(c + 1));
  } else {
    CTDET_CHECK(category_ids.size() == ds.class_names.size(), "coco id map: ", category_ids.size(),
                " category ids for ", ds.class_names.size(), " classes");
    m.category_ids = category_ids;
  }
  return m;
}

std::vector<long long> coco_category_ids(const std::string& text, const std::string& source,
                                         const std::vector<std::string>& class_names) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    CTDET_FAIL(source, ": not valid JSON: ", e.what());
  }
  CTDET_CHECK(j.is_object() && j.contains("categories") && j["categories"].is_array(), source,
              ": no 'categories' array (not a COCO dataset file?)");
  std::vector<long long> ids;
  for (const auto& name : class_names) {
    bool found = false;
    for (const auto& c : j["categories"]) {
      if (c.is_object() && c.contains("name") && c["name"].is_string() && c["name"].get<std::string>() == name &&
          c.contains("id") && c["id"].is_number_integer()) {
        ids.push_back(c["id"].get<long long>());
        found = true;
        break;
      }
    }
    CTDET_CHECK(found, source, ": class '", name, "' has no entry in 'categories'");
  }
  return ids;
}

// ---- COCO results JSON ------------------------------------------------------------------------------

std::vector<Detection> parse_detections_coco_json(const std::string& text, const std::string& source,
                                                  const CocoIdMap& ids) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    CTDET_FAIL(source, ": not valid JSON: ", e.what());
  }
  CTDET_CHECK(j.is_array(), source, ": COCO results must be a JSON array of detections");
  std::vector<Detection> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = str(source, ": [", i, "]");
    const json& e = j[i];
    CTDET_CHECK(e.is_object(), where, ": expected an object, found ", e.dump());
    for (const char* key : {"image_id", "category_id", "bbox", "score"})
      CTDET_CHECK(e.contains(key), where, ": missing '", key, "'");
    CTDET_CHECK(e["image_id"].is_number_integer(), where, ": image_id must be an integer, found ", e["image_id"].dump());
    CTDET_CHECK(e["category_id"].is_number_integer(), where, ": category_id must be an integer, found ",
                e["category_id"].dump());
    // nlohmann parses NaN/Infinity as invalid JSON; a null score is how some writers emit NaN.
    CTDET_CHECK(e["score"].is_number(), where, ": score must be a number, found ", e["score"].dump());
    const json& bb = e["bbox"];
    CTDET_CHECK(bb.is_array() && bb.size() == 4 && bb[0].is_number() && bb[1].is_number() && bb[2].is_number() &&
                    bb[3].is_number(),
                where, ": bbox must be [x, y, w, h] numbers, found ", bb.dump());
    Detection d;
    d.image_id = ids.image_name(e["image_id"].get<long long>(), where);
    d.label = ids.label(e["category_id"].get<long long>(), where);
    const double score = e["score"].get<double>();
    CTDET_CHECK(std::isfinite(score), where, ": score is ", score);
    d.score = float(score);
    const double x = bb[0].get<double>(), y = bb[1].get<double>(), w = bb[2].get<double>(), h = bb[3].get<double>();
    CTDET_CHECK(std::isfinite(x) && std::isfinite(y) && std::isfinite(w) && std::isfinite(h) && w >= 0 && h >= 0,
                where, ": invalid bbox ", bb.dump());
    d.x1 = float(x);
    d.y1 = float(y);
    d.x2 = float(x + w);
    d.y2 = float(y + h);
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<Detection> read_detections_coco_json(const std::string& path, const CocoIdMap& ids) {
  return parse_detections_coco_json(read_file(path), path, ids);
}

std::string detections_to_coco_json(const std::vector<Detection>& dets, const CocoIdMap& ids) {
  json j = json::array();
  for (size_t i = 0; i < dets.size(); ++i) {
    const Detection& d = dets[i];
    const std::string where = str("detection ", i);
    CTDET_CHECK(d.label >= 1 && size_t(d.label) <= ids.category_ids.size(), where, ": label ", d.label,
                " outside 1..", ids.category_ids.size());
    CTDET_CHECK(std::isfinite(d.score), where, " on image '", d.image_id, "': score is ", d.score);
    j.push_back({{"image_id", ids.image_id(d.image_id, where)},
                 {"category_id", ids.category_ids[size_t(d.label - 1)]},
                 {"bbox", {d.x1, d.y1, double(d.x2) - double(d.x1), double(d.y2) - double(d.y1)}},
                 {"score", d.score}});
  }
  return j.dump() + "\n";
}

void write_detections_coco_json(const std::string& path, const std::vector<Detection>& dets, const CocoIdMap& ids) {
  write_file_atomic(path, detections_to_coco_json(dets, ids));
}

// ---- CSV --------------------------------------------------------------------------------------------

namespace {

// One CSV record (RFC 4180 quoting, no embedded line breaks).
std::vector<std::string> split_record(const std::string& line, const std::string& where) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          f.back() += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        f.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      f.emplace_back();
    } else {
      f.back() += c;
    }
  }
  CTDET_CHECK(!quoted, where, ": unterminated quoted field");
  return f;
}

std::string quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

double parse_number(const std::string& s, const std::string& where, const char* column) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  CTDET_CHECK(!s.empty() && end && *end == '\0', where, ": column '", column, "' is not a number: '", s, "'");
  CTDET_CHECK(std::isfinite(v), where, ": column '", column, "' is ", s);
  return v;
}

std::string fmt9(double v) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

std::vector<Detection> parse_detections_csv(const std::string& text, const std::string& source,
                                            const std::vector<std::string>& class_names) {
  std::vector<Detection> out;
  size_t pos = 0, line_no = 0;
  bool header = false;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = str(source, ":", line_no);
    auto f = split_record(line, where);
    if (!header) {
      const std::vector<std::string> want = {"image", "class", "score", "x1", "y1", "x2", "y2"};
      CTDET_CHECK(f == want, where, ": header must be 'image,class,score,x1,y1,x2,y2', found '", line, "'");
      header = true;
      continue;
    }
    CTDET_CHECK(f.size() == 7, where, ": expected 7 columns, found ", f.size());
    Detection d;
    d.image_id = f[0];
    CTDET_CHECK(!d.image_id.empty(), where, ": empty image column");
    d.label = 0;
    for (size_t c = 0; c < class_names.size(); ++c)
      if (class_names[c] == f[1]) d.label = int(c) + 1;
    if (d.label == 0) {
      char* e = nullptr;
      const long v = std::strtol(f[1].c_str(), &e, 10);
      CTDET_CHECK(!f[1].empty() && e && *e == '\0' && v >= 1 && size_t(v) <= class_names.size(), where, ": class '",
                  f[1], "' is neither a class name nor a label 1..", class_names.size());
      d.label = int(v);
    }
    d.score = float(parse_number(f[2], where, "score"));
    d.x1 = float(parse_number(f[3], where, "x1"));
    d.y1 = float(parse_number(f[4], where, "y1"));
    d.x2 = float(parse_number(f[5], where, "x2"));
    d.y2 = float(parse_number(f[6], where, "y2"));
    CTDET_CHECK(d.x2 >= d.x1 && d.y2 >= d.y1, where, ": box corners out of order (", f[3], ",", f[4], ",", f[5],
                ",", f[6], ")");
    out.push_back(std::move(d));
  }
  CTDET_CHECK(header, source, ": empty file (the header 'image,class,score,x1,y1,x2,y2' is required)");
  return out;
}

std::vector<Detection> read_detections_csv(const std::string& path, const std::vector<std::string>& class_names) {
  return parse_detections_csv(read_file(path), path, class_names);
}

std::string detections_to_csv(const std::vector<Detection>& dets, const std::vector<std::string>& class_names) {
  std::string s = "image,class,score,x1,y1,x2,y2\n";
  for (size_t i = 0; i < dets.size(); ++i) {
    const Detection& d = dets[i];
    CTDET_CHECK(d.label >= 1 && size_t(d.label) <= class_names.size(), "detection ", i, " on image '", d.image_id,
                "': label ", d.label, " outside 1..", class_names.size());
    s += quote(d.image_id) + "," + quote(class_names[size_t(d.label - 1)]) + "," + fmt9(d.score) + "," + fmt9(d.x1) +
         "," + fmt9(d.y1) + "," + fmt9(d.x2) + "," + fmt9(d.y2) + "\n";
  }
  return s;
}

void write_detections_csv(const std::string& path, const std::vector<Detection>& dets,
                          const std::vector<std::string>& class_names) {
  write_file_atomic(path, detections_to_csv(dets, class_names));
}

std::vector<Detection> read_detections(const std::string& path, const CocoIdMap& ids,
                                       const std::vector<std::string>& class_names) {
  const bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  return is_json ? read_detections_coco_json(path, ids) : read_detections_csv(path, class_names);
}

Dataset read_ground_truth(const std::string& path, const std::vector<std::string>& classes,
                          const std::string& class_attr, const std::string& image_dir,
                          std::vector<long long>* category_ids) {
  category_ids->clear();
  ViaOptions vo;
  if (!classes.empty()) vo.class_names = classes;
  if (!class_attr.empty()) vo.class_attr = class_attr;
  vo.image_dir = image_dir;
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0) return read_via_csv(path, vo);
  const std::string text = read_file(path);
  nlohmann::json probe;
  try {
    probe = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    CTDET_FAIL(path, ": not valid JSON: ", e.what());
  }
  if (probe.is_object() && probe.contains("images") && probe.contains("annotations")) {
    CocoOptions co;
    co.class_names = classes;
    co.image_dir = image_dir;
    Dataset ds = parse_coco(text, path, co);
    *category_ids = coco_category_ids(text, path, ds.class_names);
    return ds;
  }
  return parse_via_json(text, path, vo);
}

}  // namespace ctdet
