#include "io/via.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace ctdet {

using ojson = nlohmann::ordered_json;

namespace {

const char* kHeader2 = "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes";
const char* kHeader1 = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes";
const char* kColumns[7] = {"filename", "file_size", "file_attributes", "region_count", "region_id",
                           "region_shape_attributes", "region_attributes"};

struct CsvRecord {
  int line = 0;  // 1-based line where the record starts
  std::vector<std::string> fields;
};

// Parses one record starting at text[i]; leaves i after its line end. `line` is advanced past any
// newlines (also those inside quotes).
CsvRecord parse_record(const std::string& text, size_t& i, int& line, const std::string& source) {
  CsvRecord rec;
  rec.line = line;
  std::string field;
  const size_t n = text.size();
  for (;;) {
    field.clear();
    if (i < n && text[i] == '"') {  // quoted field
      ++i;
      for (;;) {
        CTDET_CHECK(i < n, source, ":", rec.line, ": quoted field ", rec.fields.size() + 1,
                    " is not closed (missing '\"')");
        char c = text[i];
        if (c == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (c == '\n') ++line;
        field += c;
        ++i;
      }
      CTDET_CHECK(i >= n || text[i] == ',' || text[i] == '\n' || text[i] == '\r', source, ":", rec.line,
                  ": unexpected character '", text[i], "' after the closing quote of field ", rec.fields.size() + 1);
    } else {
      while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') field += text[i++];
    }
    rec.fields.push_back(field);
    if (i < n && text[i] == ',') {
      ++i;
      continue;
    }
    // end of record: consume one line ending (\n, \r or \r\n)
    if (i < n && text[i] == '\r') ++i;
    if (i < n && text[i] == '\n') ++i;
    ++line;
    return rec;
  }
}

double num(const ojson& j, const char* key, const std::string& where) {
  CTDET_CHECK(j.contains(key), where, ": shape '", j.value("name", std::string("?")), "' lacks '", key, "'");
  const ojson& v = j[key];
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return d;
  }
  CTDET_FAIL(where, ": shape key '", key, "' is not a number: ", v.dump());
}

std::vector<double> num_array(const ojson& j, const char* key, const std::string& where) {
  CTDET_CHECK(j.contains(key) && j[key].is_array(), where, ": shape '", j.value("name", std::string("?")),
              "' lacks the array '", key, "'");
  std::vector<double> out;
  for (auto& v : j[key]) {
    CTDET_CHECK(v.is_number(), where, ": '", key, "' holds a non-number: ", v.dump());
    out.push_back(v.get<double>());
  }
  return out;
}

// Fills box from a shape; false for a point. `polyline` is set for polylines.
bool shape_extent(const ojson& s, Box* b, bool* polyline, const std::string& where) {
  CTDET_CHECK(s.is_object(), where, ": region_shape_attributes is not a JSON object: ", s.dump());
  CTDET_CHECK(s.contains("name") && s["name"].is_string(), where, ": shape without a 'name': ", s.dump());
  const std::string name = s["name"].get<std::string>();
  *polyline = false;
  double x1, y1, x2, y2;
  if (name == "rect") {
    double x = num(s, "x", where), y = num(s, "y", where), w = num(s, "width", where), h = num(s, "height", where);
    x1 = std::min(x, x + w), x2 = std::max(x, x + w), y1 = std::min(y, y + h), y2 = std::max(y, y + h);
  } else if (name == "polygon" || name == "polyline") {
    auto xs = num_array(s, "all_points_x", where), ys = num_array(s, "all_points_y", where);
    CTDET_CHECK(xs.size() == ys.size(), where, ": ", name, " has ", xs.size(), " x but ", ys.size(), " y points");
    const size_t need = name == "polygon" ? 3 : 2;
    CTDET_CHECK(xs.size() >= need, where, ": ", name, " has ", xs.size(), " points; at least ", need, " needed");
    x1 = *std::min_element(xs.begin(), xs.end()), x2 = *std::max_element(xs.begin(), xs.end());
    y1 = *std::min_element(ys.begin(), ys.end()), y2 = *std::max_element(ys.begin(), ys.end());
    *polyline = name == "polyline";
  } else if (name == "circle") {
    double cx = num(s, "cx", where), cy = num(s, "cy", where), r = std::abs(num(s, "r", where));
    x1 = cx - r, x2 = cx + r, y1 = cy - r, y2 = cy + r;
  } else if (name == "ellipse") {
    double cx = num(s, "cx", where), cy = num(s, "cy", where);
    double rx = std::abs(num(s, "rx", where)), ry = std::abs(num(s, "ry", where));
    double th = s.contains("theta") ? num(s, "theta", where) : 0.0;
    double c = std::cos(th), sn = std::sin(th);
    double hw = std::sqrt(rx * rx * c * c + ry * ry * sn * sn);
    double hh = std::sqrt(rx * rx * sn * sn + ry * ry * c * c);
    x1 = cx - hw, x2 = cx + hw, y1 = cy - hh, y2 = cy + hh;
  } else if (name == "point") {
    return false;
  } else {
    CTDET_FAIL(where, ": unknown shape '", name, "' (known: rect, polygon, polyline, circle, ellipse, point)");
  }
  b->x1 = float(x1), b->y1 = float(y1), b->x2 = float(x2), b->y2 = float(y2);
  return true;
}

std::string attr_to_string(const ojson& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// The class name of a region; empty when it has none.
std::string region_class(const ojson& attrs, const ViaOptions& opt, const std::string& where) {
  CTDET_CHECK(attrs.is_object(), where, ": region_attributes is not a JSON object: ", attrs.dump());
  std::string key = opt.class_attr;
  if (key.empty()) {
    if (attrs.contains("lesion")) {
      key = "lesion";
    } else if (attrs.size() == 1) {
      key = attrs.begin().key();
    } else if (attrs.empty()) {
      return "";
    } else {
      std::string keys;
      for (auto it = attrs.begin(); it != attrs.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
      CTDET_FAIL(where, ": cannot tell which region attribute is the class (", keys,
                 "); name it with the class attribute option (--class-attr)");
    }
  }
  if (!attrs.contains(key)) return "";
  const ojson& v = attrs[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {  // checkbox: {option: true, ...}
    std::string chosen;
    int n = 0;
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.value().is_boolean() && it.value().get<bool>()) chosen = it.key(), ++n;
    CTDET_CHECK(n <= 1, where, ": checkbox attribute '", key, "' has ", n, " options ticked: ", v.dump());
    return chosen;
  }
  CTDET_FAIL(where, ": region attribute '", key, "' is neither text nor a checkbox: ", v.dump());
}

class Builder {
 public:
  Builder(const ViaOptions& opt, ViaStats* stats) : opt_(opt), st_(stats ? stats : &local_) {
    *st_ = ViaStats{};
    ds_.class_names = opt.class_names;
  }

  ImageRecord& image(const std::string& filename, const ojson& file_attrs, const std::string& where) {
    auto it = index_.find(filename);
    if (it != index_.end()) return ds_.images[it->second];
    CTDET_CHECK(!filename.empty(), where, ": empty filename");
    ImageRecord r;
    r.id = filename;
    r.file = opt_.image_dir.empty() ? filename : opt_.image_dir + "/" + filename;
    if (!file_attrs.is_null()) {
      CTDET_CHECK(file_attrs.is_object(), where, ": file_attributes is not a JSON object: ", file_attrs.dump());
      for (auto a = file_attrs.begin(); a != file_attrs.end(); ++a) r.attributes[a.key()] = attr_to_string(a.value());
    }
    if (r.attributes.count("patient_id")) r.patient_id = r.attributes["patient_id"];
    if (r.attributes.count("study_id")) r.study_id = r.attributes["study_id"];
    if (r.attributes.count("series_id")) r.series_id = r.attributes["series_id"];
    if (opt_.image_size) {
      int w = 0, h = 0;
      if (opt_.image_size(r.file, &w, &h)) r.width = w, r.height = h;
    }
    index_[filename] = ds_.images.size();
    ds_.images.push_back(r);
    return ds_.images.back();
  }

  void region(ImageRecord& r, const ojson& shape, const ojson& attrs, const std::string& where) {
    ++st_->rows;
    if (shape.is_object() && shape.empty() && (attrs.is_null() || (attrs.is_object() && attrs.empty())))
      return;  // VIA's "file without regions" row
    Box b;
    bool polyline = false;
    if (!shape_extent(shape, &b, &polyline, where)) {
      ++st_->points_skipped;
      return;
    }
    std::string cls = region_class(attrs.is_null() ? ojson::object() : attrs, opt_, where);
    auto pos = std::find(opt_.class_names.begin(), opt_.class_names.end(), cls);
    if (pos == opt_.class_names.end()) {
      if (opt_.skip_unknown_classes) {
        ++st_->unknown_class_skipped;
        return;
      }
      std::string known;
      for (auto& c : opt_.class_names) known += (known.empty() ? "" : ", ") + c;
      CTDET_FAIL(where, ": unknown class '", cls, "' in image '", r.id, "' (label map: ", known, ")");
    }
    b.label = int(pos - opt_.class_names.begin()) + 1;
    if (polyline) ++st_->polylines;
    r.boxes.push_back(b);
  }

  Dataset finish() {
    clip_boxes_to_images(ds_, st_);
    st_->images = int(ds_.images.size());
    st_->boxes = 0;
    st_->negatives = 0;
    for (auto& r : ds_.images) {
      st_->boxes += int(r.boxes.size());
      st_->negatives += r.boxes.empty();
    }
    return std::move(ds_);
  }

 private:
  const ViaOptions& opt_;
  ViaStats local_;
  ViaStats* st_;
  Dataset ds_;
  std::map<std::string, size_t> index_;
};

ojson parse_json_field(const std::string& s, const std::string& where, const char* column) {
  if (s.empty()) return ojson::object();
  try {
    return ojson::parse(s);
  } catch (const nlohmann::json::exception& e) {
    CTDET_FAIL(where, ": column ", column, " is not valid JSON (", e.what(), "): ", s.substr(0, 120));
  }
}

long parse_int(const std::string& s, const std::string& where, const char* column) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  CTDET_CHECK(!s.empty() && end && *end == '\0', where, ": column ", column, " is not an integer: '", s, "'");
  return v;
}

}  // namespace

std::vector<std::string> split_csv_record(const std::string& line, const std::string& where) {
  size_t i = 0;
  int ln = 1;
  return parse_record(line, i, ln, where).fields;
}

bool via_shape_extent(const std::string& shape_json, Box* box, const std::string& where) {
  ojson s = parse_json_field(shape_json, where, "region_shape_attributes");
  bool polyline = false;
  return shape_extent(s, box, &polyline, where);
}

void clip_boxes_to_images(Dataset& ds, ViaStats* stats) {
  for (auto& r : ds.images) {
    if (r.width <= 0 || r.height <= 0) continue;
    std::vector<Box> kept;
    for (Box b : r.boxes) {
      Box c = b;
      c.x1 = std::clamp(b.x1, 0.f, float(r.width));
      c.x2 = std::clamp(b.x2, 0.f, float(r.width));
      c.y1 = std::clamp(b.y1, 0.f, float(r.height));
      c.y2 = std::clamp(b.y2, 0.f, float(r.height));
      if (stats && (c.x1 != b.x1 || c.x2 != b.x2 || c.y1 != b.y1 || c.y2 != b.y2)) ++stats->clipped;
      if (c.x2 > c.x1 && c.y2 > c.y1) kept.push_back(c);
      else if (stats) ++stats->degenerate_dropped;
    }
    r.boxes = std::move(kept);
  }
}

Dataset parse_via_csv(const std::string& text_in, const std::string& source, const ViaOptions& opt,
                      ViaStats* stats) {
  std::string text = text_in;
  if (text.size() >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
      (unsigned char)text[2] == 0xBF)
    text.erase(0, 3);
  Builder b(opt, stats);
  size_t i = 0;
  int line = 1;
  bool header = false;
  while (i < text.size()) {
    CsvRecord rec = parse_record(text, i, line, source);
    if (rec.fields.size() == 1 && rec.fields[0].empty()) continue;  // blank line
    const std::string where = str(source, ":", rec.line);
    if (!header) {
      std::string h;
      for (size_t k = 0; k < rec.fields.size(); ++k) h += (k ? "," : "") + rec.fields[k];
      CTDET_CHECK(h == kHeader2 || h == kHeader1, where, ": not a VIA CSV header: expected '", kHeader2,
                  "', found '", h.substr(0, 200), "'");
      header = true;
      continue;
    }
    CTDET_CHECK(rec.fields.size() == 7, where, ": row has ", rec.fields.size(),
                " fields, a VIA CSV row has 7 (filename,file_size,file_attributes,region_count,region_id,"
                "region_shape_attributes,region_attributes)");
    parse_int(rec.fields[1], where, kColumns[1]);
    long count = parse_int(rec.fields[3], where, kColumns[3]);
    long rid = parse_int(rec.fields[4], where, kColumns[4]);
    CTDET_CHECK(count >= 0 && rid >= 0 && (count == 0 || rid < count), where, ": region_id ", rid,
                " does not fit region_count ", count);
    ojson fattr = parse_json_field(rec.fields[2], where, kColumns[2]);
    ojson shape = parse_json_field(rec.fields[5], where, kColumns[5]);
    ojson rattr = parse_json_field(rec.fields[6], where, kColumns[6]);
    ImageRecord& r = b.image(rec.fields[0], fattr, where);
    if (count == 0) {
      CTDET_CHECK(shape.is_object() && shape.empty(), where, ": region_count is 0 but the row has a shape: ",
                  shape.dump());
      continue;
    }
    b.region(r, shape, rattr, where);
  }
  CTDET_CHECK(header, source, ": empty file (no VIA CSV header)");
  return b.finish();
}

Dataset read_via_csv(const std::string& path, const ViaOptions& opt, ViaStats* stats) {
  return parse_via_csv(read_file(path), path, opt, stats);
}

Dataset parse_via_json(const std::string& text, const std::string& source, const ViaOptions& opt, ViaStats* stats) {
  ojson top;
  try {
    top = ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    CTDET_FAIL(source, ": not valid JSON (", e.what(), ")");
  }
  CTDET_CHECK(top.is_object(), source, ": a VIA JSON file is an object, found ", top.type_name());
  const ojson* meta = &top;
  std::vector<std::string> order;
  if (top.contains("_via_img_metadata")) {
    meta = &top["_via_img_metadata"];
    CTDET_CHECK(meta->is_object(), source, ": _via_img_metadata is not an object");
    if (top.contains("_via_image_id_list") && top["_via_image_id_list"].is_array())
      for (auto& k : top["_via_image_id_list"])
        if (k.is_string()) order.push_back(k.get<std::string>());
  }
  std::vector<std::string> keys;
  for (auto it = meta->begin(); it != meta->end(); ++it) keys.push_back(it.key());
  if (!order.empty()) {
    for (auto& k : order) CTDET_CHECK(meta->contains(k), source, ": _via_image_id_list names '", k,
                                      "' which is not in _via_img_metadata");
    for (auto& k : keys)  // ids missing from the list go last, in file order
      if (std::find(order.begin(), order.end(), k) == order.end()) order.push_back(k);
    keys = order;
  }
  Builder b(opt, stats);
  int discarded = 0;
  for (auto& key : keys) {
    const ojson& e = (*meta)[key];
    const std::string where = str(source, ": image '", key, "'");
    if (!e.is_object() || !e.contains("filename") || !e["filename"].is_string() || !e.contains("regions")) {
      ++discarded;
      continue;
    }
    const ojson fattr = e.contains("file_attributes") ? e["file_attributes"] : ojson();
    ImageRecord& r = b.image(e["filename"].get<std::string>(), fattr, where);
    const ojson& regs = e["regions"];
    std::vector<const ojson*> list;
    if (regs.is_array()) {
      for (auto& x : regs) list.push_back(&x);
    } else if (regs.is_object()) {  // VIA 1.x: {"0": {...}, "1": {...}}
      std::vector<std::pair<long, std::string>> ks;
      for (auto it = regs.begin(); it != regs.end(); ++it) {
        char* end = nullptr;
        long v = std::strtol(it.key().c_str(), &end, 10);
        CTDET_CHECK(!it.key().empty() && *end == '\0', where, ": 1.x region key '", it.key(), "' is not an index");
        ks.push_back({v, it.key()});
      }
      std::sort(ks.begin(), ks.end());
      for (auto& k : ks) list.push_back(&regs[k.second]);
    } else {
      CTDET_FAIL(where, ": 'regions' is neither an array nor an object");
    }
    for (size_t k = 0; k < list.size(); ++k) {
      const ojson& reg = *list[k];
      const std::string rw = str(where, " region ", k);
      CTDET_CHECK(reg.is_object() && reg.contains("shape_attributes"), rw, ": region without shape_attributes");
      b.region(r, reg["shape_attributes"], reg.contains("region_attributes") ? reg["region_attributes"] : ojson(),
               rw);
    }
  }
  Dataset ds = b.finish();
  if (stats) stats->entries_discarded = discarded;
  return ds;
}

Dataset read_via_json(const std::string& path, const ViaOptions& opt, ViaStats* stats) {
  return parse_via_json(read_file(path), path, opt, stats);
}

}  // namespace ctdet
