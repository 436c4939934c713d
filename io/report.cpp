// Self-contained HTML report (io/report.h).
#include "io/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/overlay.h"
#include "io/svg_plot.h"
#include "io/via.h"
#include "nn/error.h"
#include "train/evaluation.h"

namespace ctdet {

using nlohmann::json;
namespace fs = std::filesystem;

// ============================================================================ small pieces
std::string html_escape(const std::string& s) { return xml_escape(s); }

std::string base64_encode(const void* data, size_t size) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string o;
  o.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
    o += kAlphabet[v >> 18];
    o += kAlphabet[(v >> 12) & 63];
    o += kAlphabet[(v >> 6) & 63];
    o += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    const uint32_t v = uint32_t(p[i]) << 16;
    o += kAlphabet[v >> 18];
    o += kAlphabet[(v >> 12) & 63];
    o += "==";
  } else if (size - i == 2) {
    const uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8);
    o += kAlphabet[v >> 18];
    o += kAlphabet[(v >> 12) & 63];
    o += kAlphabet[(v >> 6) & 63];
    o += '=';
  }
  return o;
}

// ============================================================================ training log
int TrainMetrics::column_index(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return int(i);
  return -1;
}

std::vector<double> TrainMetrics::column(const std::string& name) const {
  const int j = column_index(name);
  std::vector<double> v;
  if (j < 0) return v;
  for (const auto& r : rows) v.push_back(size_t(j) < r.size() ? r[j] : NAN);
  return v;
}

namespace {

std::string canonical_column(const std::string& c) {
  static const std::map<std::string, std::string> kAlias = {
      {"iter", "step"},
      {"iteration", "step"},
      {"global_step", "step"},
      {"total_loss", "loss_total"},
      {"Loss/total_loss", "loss_total"},
      {"Loss/RPNLoss/objectness_loss", "loss_rpn_cls"},
      {"Loss/RPNLoss/localization_loss", "loss_rpn_loc"},
      {"Loss/BoxClassifierLoss/classification_loss", "loss_cls"},
      {"Loss/BoxClassifierLoss/localization_loss", "loss_box_reg"},
      {"learning_rate", "lr"}};
  auto it = kAlias.find(c);
  return it == kAlias.end() ? c : it->second;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

double parse_number(const std::string& field, const std::string& where) {
  const std::string t = trim(field);
  if (t.empty()) return NAN;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  CTDET_CHECK(end && *end == '\0', where, ": expected a number, got '", t, "'");
  return v;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    std::string l = text.substr(pos, e - pos);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
    pos = e + 1;
  }
  return lines;
}

}  // namespace

TrainMetrics parse_train_log(const std::string& text, const std::string& source) {
  TrainMetrics log;
  const auto lines = split_lines(text);
  size_t first = 0;
  while (first < lines.size() && (trim(lines[first]).empty() || trim(lines[first])[0] == '#')) ++first;
  CTDET_CHECK(first < lines.size(), source, ": empty training log");
  const bool jsonl = trim(lines[first])[0] == '{';
  if (jsonl) {
    std::vector<std::map<std::string, double>> recs;
    for (size_t i = first; i < lines.size(); ++i) {
      const std::string l = trim(lines[i]);
      if (l.empty() || l[0] == '#') continue;
      const std::string where = source + ":" + std::to_string(i + 1);
      nlohmann::ordered_json j;  // keeps the key order of the line
      try {
        j = nlohmann::ordered_json::parse(l);
      } catch (const json::exception& e) {
        CTDET_FAIL(where, ": not a JSON object: ", e.what());
      }
      CTDET_CHECK(j.is_object(), where, ": a training log line must be a JSON object");
      std::map<std::string, double> rec;
      for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string key = canonical_column(it.key());
        if (it->is_number()) rec[key] = it->get<double>();
        else if (it->is_null()) rec[key] = NAN;
        else if (it->is_string() || it->is_boolean()) continue;  // text fields (timestamps, phase) are ignored
        else CTDET_FAIL(where, ": column '", it.key(), "' is not a number");
        if (std::find(log.columns.begin(), log.columns.end(), key) == log.columns.end()) log.columns.push_back(key);
      }
      CTDET_CHECK(rec.count("step"), where, ": no 'step' value");
      recs.push_back(std::move(rec));
    }
    auto it = std::find(log.columns.begin(), log.columns.end(), "step");
    std::rotate(log.columns.begin(), it, it + 1);
    for (const auto& r : recs) {
      std::vector<double> row;
      for (const auto& c : log.columns) {
        auto f = r.find(c);
        row.push_back(f == r.end() ? NAN : f->second);
      }
      log.rows.push_back(std::move(row));
    }
  } else {
    const std::string hw = source + ":" + std::to_string(first + 1);
    std::vector<std::string> header = split_csv_record(lines[first], hw);
    for (auto& h : header) h = canonical_column(trim(h));
    const auto step = std::find(header.begin(), header.end(), "step");
    CTDET_CHECK(step != header.end(), hw, ": the training log header has no 'step' column (columns: ", lines[first],
                ")");
    std::vector<size_t> order{size_t(step - header.begin())};
    for (size_t j = 0; j < header.size(); ++j)
      if (j != order[0]) order.push_back(j);
    for (size_t j : order) log.columns.push_back(header[j]);
    for (size_t i = first + 1; i < lines.size(); ++i) {
      const std::string l = trim(lines[i]);
      if (l.empty() || l[0] == '#') continue;
      const std::string where = source + ":" + std::to_string(i + 1);
      const auto fields = split_csv_record(lines[i], where);
      CTDET_CHECK(fields.size() == header.size(), where, ": ", fields.size(), " fields, the header has ",
                  header.size());
      std::vector<double> row;
      for (size_t j : order) row.push_back(parse_number(fields[j], where + " column '" + header[j] + "'"));
      CTDET_CHECK(!std::isnan(row[0]), where, ": empty step");
      log.rows.push_back(std::move(row));
    }
  }
  return log;
}

TrainMetrics read_train_log(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"metrics.csv", "metrics.jsonl"}) {
      const std::string p = (fs::path(path) / name).string();
      if (fs::is_regular_file(p, ec)) return parse_train_log(read_file(p), p);
    }
    CTDET_FAIL("report: training log folder '", path, "' holds neither metrics.csv nor metrics.jsonl");
  }
  CTDET_CHECK(fs::is_regular_file(path, ec), "report: training log '", path, "' is not a readable file");
  return parse_train_log(read_file(path), path);
}

// ============================================================================ eval folder
EvalFolder read_eval_folder(const std::string& dir) {
  std::error_code ec;
  CTDET_CHECK(fs::exists(dir, ec), "report: eval folder '", dir,
              "' does not exist (run `ctdet eval --gt GT --dets DETS --out ", dir, "` first)");
  CTDET_CHECK(fs::is_directory(dir, ec), "report: --eval '", dir, "' is not a folder");
  EvalFolder f;
  f.dir = dir;
  const std::string report = (fs::path(dir) / "eval_report.json").string();
  CTDET_CHECK(fs::exists(report, ec), "report: eval folder '", dir, "' has no eval_report.json (run `ctdet eval --out ",
              dir, "` to make one)");
  f.report_json = read_file(report);
  auto optional = [&](const char* name, std::string* dst) {
    const std::string p = (fs::path(dir) / name).string();
    if (fs::exists(p, ec)) *dst = read_file(p);
    else f.missing.push_back(name);
  };
  optional("pr_curves.csv", &f.pr_curves_csv);
  optional("froc.csv", &f.froc_csv);
  optional("patient_level.csv", &f.patient_level_csv);
  return f;
}

// ============================================================================ gallery
std::vector<GalleryCase> select_gallery_cases(const Dataset& gt, const std::vector<Detection>& dets,
                                              const GalleryOptions& opt) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < gt.images.size(); ++i) index[gt.images[i].id] = i;
  std::vector<std::vector<const Detection*>> per_image(gt.images.size());
  for (const auto& d : dets) {
    auto it = index.find(d.image_id);
    CTDET_CHECK(it != index.end(), "report gallery: detection on image '", d.image_id, "' not in the ground truth");
    if (d.score >= opt.score_threshold) per_image[it->second].push_back(&d);
  }
  std::vector<GalleryCase> all(gt.images.size());
  for (size_t i = 0; i < gt.images.size(); ++i) {
    const auto& rec = gt.images[i];
    auto& ds = per_image[i];
    std::stable_sort(ds.begin(), ds.end(), [](const Detection* a, const Detection* b) { return a->score > b->score; });
    GalleryCase& c = all[i];
    c.image_id = rec.id;
    c.n_lesions = int(rec.boxes.size());
    std::set<int> labels;
    for (auto* d : ds) labels.insert(d->label);
    for (const auto& b : rec.boxes) labels.insert(b.label);
    double tp_sum = 0;
    for (int label : labels) {
      std::vector<Rect> dr, gr;
      std::vector<double> scores;
      for (auto* d : ds)
        if (d->label == label) dr.push_back({d->x1, d->y1, d->x2, d->y2}), scores.push_back(d->score);
      for (const auto& b : rec.boxes)
        if (b.label == label) gr.push_back({b.x1, b.y1, b.x2, b.y2});
      const auto m = greedy_match(dr, gr, opt.match_iou);
      int matched = 0;
      for (size_t k = 0; k < m.size(); ++k) {
        if (m[k] >= 0) {
          ++c.tp, ++matched;
          tp_sum += scores[k];
        } else {
          ++c.fp;
          c.max_fp_score = std::max(c.max_fp_score, scores[k]);
        }
      }
      c.fn += int(gr.size()) - matched;
    }
    c.mean_tp_score = c.tp > 0 ? tp_sum / c.tp : 0;
  }
  std::vector<char> used(all.size(), 0);
  auto pick = [&](const char* group, auto eligible, auto better) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < all.size(); ++i)
      if (!used[i] && eligible(all[i])) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return better(all[a], all[b]); });
    std::vector<GalleryCase> out;
    for (size_t k = 0; k < idx.size() && int(k) < opt.per_group; ++k) {
      used[idx[k]] = 1;
      out.push_back(all[idx[k]]);
      out.back().group = group;
    }
    return out;
  };
  const auto miss = pick(
      "miss", [](const GalleryCase& c) { return c.fn > 0; },
      [](const GalleryCase& a, const GalleryCase& b) { return a.fn != b.fn ? a.fn > b.fn : a.tp < b.tp; });
  const auto fps = pick(
      "false positive", [](const GalleryCase& c) { return c.fp > 0; },
      [](const GalleryCase& a, const GalleryCase& b) {
        return a.max_fp_score != b.max_fp_score ? a.max_fp_score > b.max_fp_score : a.fp > b.fp;
      });
  const auto best = pick(
      "best", [](const GalleryCase& c) { return c.n_lesions > 0 && c.tp > 0; },
      [](const GalleryCase& a, const GalleryCase& b) {
        const int ea = a.fn + a.fp, eb = b.fn + b.fp;
        return ea != eb ? ea < eb : a.mean_tp_score > b.mean_tp_score;
      });
  std::vector<GalleryCase> out = best;
  out.insert(out.end(), miss.begin(), miss.end());
  out.insert(out.end(), fps.begin(), fps.end());
  return out;
}

GalleryItem make_gallery_item(const ImageRecord& rec, const std::vector<Detection>& image_dets,
                              const std::vector<std::string>& class_names, const GalleryCase& c,
                              float score_threshold, int max_side) {
  const Image full = to_rgb8(read_image(rec.file));
  const Image thumb = downscale_to_fit(full, max_side);
  const float sx = float(thumb.width) / full.width, sy = float(thumb.height) / full.height;
  std::vector<Box> gt = rec.boxes;
  for (auto& b : gt) b.x1 *= sx, b.x2 *= sx, b.y1 *= sy, b.y2 *= sy;
  std::vector<Detection> ds;
  for (const auto& d : image_dets) {
    if (d.score < score_threshold) continue;
    Detection s = d;
    s.x1 *= sx, s.x2 *= sx, s.y1 *= sy, s.y2 *= sy;
    ds.push_back(s);
  }
  OverlayOptions oo;
  oo.thickness = 2;
  oo.font_scale = 1;
  GalleryItem g;
  const Image drawn = draw_overlay(thumb, gt, ds, class_names, oo);
  g.png = encode_png(drawn, rec.file);
  g.width = drawn.width;
  g.height = drawn.height;
  g.group = c.group;
  g.title = rec.id;
  char b[200];
  std::snprintf(b, sizeof b, "lesions %d: TP %d, FP %d, FN %d", c.n_lesions, c.tp, c.fp, c.fn);
  g.caption = b;
  if (c.tp > 0) {
    std::snprintf(b, sizeof b, "; mean TP score %.2f", c.mean_tp_score);
    g.caption += b;
  }
  if (c.fp > 0) {
    std::snprintf(b, sizeof b, "; top FP score %.2f", c.max_fp_score);
    g.caption += b;
  }
  return g;
}

// ============================================================================ HTML
namespace {

const char* kCss = R"CSS(
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td.name,th.name{text-align:left}
tr.mean td{font-weight:bold;background:#fafafa}tr.any td{background:#eef5ff}
td.diag{background:#d9f2d9;font-weight:bold}td.bg{background:#f6e3e3}td.zero{color:#bbb}
p.def{font-size:12.5px;color:#444;margin:4px 0 4px 0;max-width:1100px}p.def b{color:#222}
.meta{color:#555;font-size:13px}.note{background:#fff8e0;border:1px solid #eed;padding:6px 10px;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #ddd;background:#fff}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:1px solid #ddd;padding:4px;background:#fafafa;max-width:384px}
figure img{display:block;image-rendering:auto}figcaption{font-size:12px;margin-top:4px;overflow-wrap:anywhere}
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
pre{background:#f6f6f6;border:1px solid #ddd;padding:8px;font-size:12px;overflow:auto;max-height:600px}
)CSS";

const json& need(const json& j, const std::string& key, const std::string& path) {
  CTDET_CHECK(j.is_object() && j.contains(key), "report: eval_report.json lacks '", path.empty() ? key : path + "." + key,
              "' (was it written by `ctdet eval`?)");
  return j.at(key);
}

bool is_num(const json& v) { return v.is_number(); }

std::string fixed(const json& v, int prec) {
  if (!is_num(v)) return "n/a";
  char b[48];
  std::snprintf(b, sizeof b, "%.*f", prec, v.get<double>());
  return b;
}

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100 * v);
  return b;
}

std::string int_str(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<long long>());
  if (v.is_number()) return fixed(v, 0);
  return "n/a";
}

std::string td(const std::string& text, const char* cls = nullptr) {
  return cls ? std::string("<td class=\"") + cls + "\">" + text + "</td>" : "<td>" + text + "</td>";
}

std::string definition(const json& defs, const std::string& key, const std::string& label, std::set<std::string>* shown) {
  if (!defs.is_object() || !defs.contains(key) || !defs.at(key).is_string()) return "";
  shown->insert(key);
  return "<p class=\"def\"><b>" + html_escape(label) + ":</b> " + html_escape(defs.at(key).get<std::string>()) + "</p>\n";
}

// Proportion row: measure | value | k/n | 95% CI
std::string prop_row(const std::string& label, const json& p) {
  std::string r = "<tr>" + td(html_escape(label), "name");
  if (!p.is_object()) return r + td("n/a") + td("n/a") + td("n/a") + "</tr>\n";
  const json& v = p.contains("value") ? p.at("value") : json();
  r += td(is_num(v) ? pct(v.get<double>()) : "n/a");
  r += td(int_str(p.value("k", json())) + "/" + int_str(p.value("n", json())));
  const json ci = p.value("ci95", json::array());
  if (ci.is_array() && ci.size() == 2 && is_num(ci[0]) && is_num(ci[1]))
    r += td(pct(ci[0].get<double>()) + " – " + pct(ci[1].get<double>()));
  else
    r += td("n/a");
  return r + "</tr>\n";
}

struct Curve {
  std::string name;
  std::vector<double> x, y;
};

// Groups CSV rows by their first column, taking columns xi and yi as numbers.
std::vector<Curve> read_curves(const std::string& text, const std::string& file, const std::vector<std::string>& header,
                               size_t xi, size_t yi) {
  std::vector<Curve> curves;
  const auto lines = split_lines(text);
  bool first = true;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;
    const std::string where = file + ":" + std::to_string(i + 1);
    const auto f = split_csv_record(lines[i], where);
    if (first) {
      CTDET_CHECK(f == header, where, ": unexpected header '", lines[i], "'");
      first = false;
      continue;
    }
    CTDET_CHECK(f.size() == header.size(), where, ": ", f.size(), " fields, expected ", header.size());
    if (curves.empty() || curves.back().name != f[0]) curves.push_back({f[0], {}, {}});
    curves.back().x.push_back(parse_number(f[xi], where));
    curves.back().y.push_back(parse_number(f[yi], where));
  }
  return curves;
}

std::string color_for(const std::string& name, const std::vector<std::string>& classes) {
  if (name == "any lesion") return "#222222";
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i] == name) return css_color(class_color(int(i) + 1, name));
  return "#1f77b4";
}

// Yellow is hard to see on white: darken class colours for chart lines only.
std::string chart_color(const std::string& name, const std::vector<std::string>& classes) {
  std::string c = color_for(name, classes);
  if (c == "#ffdc00") return "#d4a600";
  return c;
}

}  // namespace

std::string render_report_html(const ReportInputs& in) {
  json r;
  try {
    r = json::parse(in.eval.report_json);
  } catch (const json::exception& e) {
    CTDET_FAIL("report: ", in.eval.dir, "/eval_report.json is not valid JSON: ", e.what());
  }
  CTDET_CHECK(r.is_object(), "report: ", in.eval.dir, "/eval_report.json is not a JSON object");
  const json& ap = need(r, "ap", "");
  const json& per_class = need(ap, "per_class", "ap");
  const json& counts = need(r, "counts", "");
  const json defs = r.value("definitions", json::object());
  const json opts = r.value("options", json::object());
  std::set<std::string> shown;
  std::vector<std::string> classes;
  for (const auto& c : per_class) classes.push_back(c.value("class", std::string("?")));

  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + html_escape(in.title) +
       "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n";
  h += "<h1>" + html_escape(in.title) + "</h1>\n";
  h += "<p class=\"meta\">Eval folder: <code>" + html_escape(in.eval.dir) + "</code>. Images " +
       int_str(counts.value("images", json())) + " (with lesions " + int_str(counts.value("lesion_images", json())) +
       "), lesions " + int_str(counts.value("lesions", json())) + ", detections " +
       int_str(counts.value("detections", json())) + ", patients " + int_str(counts.value("patients", json())) +
       ". Operating point: score &ge; " + fixed(opts.value("score_threshold", json()), 2) + ", match IoU " +
       fixed(opts.value("match_iou", json()), 2) + ", localisation IoU " + fixed(opts.value("localize_iou", json()), 2) +
       ", FROC IoU " + fixed(opts.value("froc_iou", json()), 2) + ".</p>\n";
  if (!in.command_line.empty()) h += "<p class=\"meta\">Made by: <code>" + html_escape(in.command_line) + "</code></p>\n";
  if (!in.eval.missing.empty()) {
    std::string m;
    for (const auto& f : in.eval.missing) m += (m.empty() ? "" : ", ") + html_escape(f);
    h += "<p class=\"note\">Not found in the eval folder (sections left out): " + m + "</p>\n";
  }

  // ---- AP table
  h += "<h2 id=\"detection\">Detection: average precision</h2>\n";
  h += "<p class=\"meta\">Method: " + html_escape(ap.value("method", std::string("COCO AP"))) + "</p>\n";
  h += "<table id=\"ap-table\">\n<tr><th class=\"name\">class</th><th>GT boxes</th><th>detections</th><th>AP@0.5</th>"
       "<th>AP@0.75</th><th>AP@[.5:.95]</th><th>recall@0.5</th><th>TP</th><th>FP</th><th>FN</th></tr>\n";
  auto ap_row = [&](const json& c, const char* cls) {
    h += std::string("<tr") + (cls ? std::string(" class=\"") + cls + "\"" : "") + ">" +
         td(html_escape(c.value("class", std::string("?"))), "name") + td(int_str(c.value("n_gt", json()))) +
         td(int_str(c.value("n_det", json()))) + td(fixed(c.value("ap50", json()), 4)) +
         td(fixed(c.value("ap75", json()), 4)) + td(fixed(c.value("ap", json()), 4)) +
         td(fixed(c.value("recall50", json()), 4)) + td(int_str(c.value("tp", json()))) +
         td(int_str(c.value("fp", json()))) + td(int_str(c.value("fn", json()))) + "</tr>\n";
  };
  for (const auto& c : per_class) ap_row(c, nullptr);
  if (ap.contains("mean")) {
    const json& m = ap.at("mean");
    h += "<tr class=\"mean\">" + td("mean over " + int_str(m.value("classes_in_mean", json())) + " classes", "name") +
         td("") + td("") + td(fixed(m.value("ap50", json()), 4)) + td(fixed(m.value("ap75", json()), 4)) +
         td(fixed(m.value("ap", json()), 4)) + td("") + td("") + td("") + td("") + "</tr>\n";
  }
  if (ap.contains("any_lesion")) ap_row(ap.at("any_lesion"), "any");
  h += "</table>\n";
  h += definition(defs, "ap", "AP", &shown) + definition(defs, "map", "Mean AP", &shown) +
       definition(defs, "any_lesion_ap", "Any-lesion AP", &shown) + definition(defs, "tp_fp_fn", "TP / FP / FN", &shown);

  // ---- image / patient level
  if (r.contains("image_level")) {
    const json& il = r.at("image_level");
    h += "<h2 id=\"clinical\">Image and patient level</h2>\n";
    h += "<table id=\"clinical-table\">\n<tr><th class=\"name\">measure</th><th>value</th><th>k/n</th><th>95% CI "
         "(Wilson)</th></tr>\n";
    const std::pair<const char*, const char*> rows[] = {
        {"success_rate_marked", "Success rate (detection)"},
        {"success_rate_localized", "Success rate (localisation)"},
        {"positive_images_marked", "Images with lesions: marked"},
        {"positive_images_localized", "Images with lesions: localised"},
        {"negative_images_not_marked", "Images without lesions: not marked"},
        {"sensitivity", "Image sensitivity"},
        {"specificity", "Image specificity"},
        {"accuracy", "Image accuracy"},
        {"ppv", "Image PPV"},
        {"npv", "Image NPV"}};
    for (const auto& [key, label] : rows) h += prop_row(label, il.value(key, json()));
    if (r.contains("patient_level")) {
      const json& pl = r.at("patient_level");
      for (const auto& [key, label] : {std::pair<const char*, const char*>{"sensitivity", "Patient sensitivity"},
                                       {"specificity", "Patient specificity"},
                                       {"accuracy", "Patient accuracy"}})
        h += prop_row(label, pl.value(key, json()));
    }
    h += "</table>\n";
    h += "<p class=\"meta\">Image level: TP " + int_str(il.value("tp", json())) + ", FP " + int_str(il.value("fp", json())) +
         ", TN " + int_str(il.value("tn", json())) + ", FN " + int_str(il.value("fn", json())) + ".";
    if (r.contains("patient_level")) {
      const json& pl = r.at("patient_level");
      h += " Patient level (rule '" + html_escape(pl.value("rule", std::string("?"))) + "', patient key '" +
           html_escape(pl.value("patient_key", std::string("?"))) + "'): TP " + int_str(pl.value("tp", json())) +
           ", FP " + int_str(pl.value("fp", json())) + ", TN " + int_str(pl.value("tn", json())) + ", FN " +
           int_str(pl.value("fn", json())) + ".";
    }
    h += "</p>\n";
    h += definition(defs, "marked", "Marked", &shown) + definition(defs, "localized", "Localised", &shown) +
         definition(defs, "image_success", "Success rate", &shown) +
         definition(defs, "image_decision", "Image decision", &shown) + definition(defs, "patient", "Patient", &shown);
  }

  // ---- FROC table
  std::vector<std::pair<std::string, std::vector<double>>> froc_marks;  // curve name -> sens at the 7 targets
  std::vector<double> froc_targets;
  if (r.contains("froc")) {
    const json& fr = r.at("froc");
    std::vector<const json*> curves;
    if (fr.contains("any_lesion")) curves.push_back(&fr.at("any_lesion"));
    if (fr.contains("per_class"))
      for (const auto& c : fr.at("per_class")) curves.push_back(&c);
    h += "<h2 id=\"froc\">FROC</h2>\n<table id=\"froc-table\">\n<tr><th class=\"name\">curve</th><th>lesions</th>";
    if (!curves.empty())
      for (const auto& p : curves[0]->value("points", json::array())) {
        const double t = p.value("fp_per_image", 0.0);
        froc_targets.push_back(t);
        char b[32];
        if (t < 1) std::snprintf(b, sizeof b, "1/%g", std::round(1 / t));
        else std::snprintf(b, sizeof b, "%g", t);
        h += std::string("<th>") + b + " FP</th>";
      }
    h += "<th>FROC score</th><th>95% CI</th></tr>\n";
    for (size_t k = 0; k < curves.size(); ++k) {
      const json& c = *curves[k];
      const std::string name = c.value("curve", std::string("?"));
      h += std::string(k == 0 ? "<tr class=\"any\">" : "<tr>") + td(html_escape(name), "name") +
           td(int_str(c.value("n_lesions", json())));
      std::vector<double> sens;
      for (const auto& p : c.value("points", json::array())) {
        const json s = p.value("sensitivity", json());
        h += td(fixed(s, 3));
        sens.push_back(is_num(s) ? s.get<double>() : NAN);
      }
      froc_marks.push_back({name, sens});
      h += td(fixed(c.value("score", json()), 4));
      const json ci = c.value("score_ci95", json::array());
      h += td(ci.is_array() && ci.size() == 2 && is_num(ci[0]) && is_num(ci[1])
                  ? fixed(ci[0], 4) + " – " + fixed(ci[1], 4)
                  : "n/a");
      h += "</tr>\n";
    }
    h += "</table>\n" + definition(defs, "froc", "FROC", &shown);
  }

  // ---- charts
  h += "<h2 id=\"curves\">Curves</h2>\n<div class=\"charts\">\n";
  if (!in.eval.pr_curves_csv.empty()) {
    const auto curves = read_curves(in.eval.pr_curves_csv, in.eval.dir + "/pr_curves.csv",
                                    {"class", "iou", "recall", "precision"}, 2, 3);
    std::vector<PlotSeries> ser;
    for (const auto& c : curves) {
      PlotSeries s;
      s.name = c.name;
      // The curve ends at the highest recall reached (COCO reads precision 0 beyond it).
      size_t keep = c.y.size();
      while (keep > 1 && c.y[keep - 1] == 0) --keep;
      s.x.assign(c.x.begin(), c.x.begin() + keep);
      s.y.assign(c.y.begin(), c.y.begin() + keep);
      s.color = chart_color(c.name, classes);
      s.dashed = c.name == "any lesion";
      ser.push_back(s);
    }
    PlotOptions po;
    po.title = "Precision-recall at IoU 0.5 (COCO 101-point)";
    po.x_label = "recall";
    po.y_label = "precision";
    po.x_min = 0, po.x_max = 1, po.y_min = 0, po.y_max = 1.02;
    po.y_ticks = {0, 0.2, 0.4, 0.6, 0.8, 1.0};
    po.legend = LegendCorner::kBottomLeft;
    po.id = "pr-chart";
    h += svg_line_chart(ser, po) + "\n";
  }
  if (!in.eval.froc_csv.empty()) {
    const auto curves = read_curves(in.eval.froc_csv, in.eval.dir + "/froc.csv",
                                    {"curve", "threshold", "fp_per_image", "sensitivity"}, 2, 3);
    const double xmin = 1.0 / 16, xmax = 16;
    std::vector<PlotSeries> ser;
    for (const auto& c : curves) {
      PlotSeries s;
      s.name = c.name;
      s.color = chart_color(c.name, classes);
      s.stroke_width = c.name == "any lesion" ? 2.4 : 1.5;
      // Step curve: sensitivity at FP rate f is that of the last point with fp <= f.
      double prev = 0;
      s.x.push_back(xmin);
      s.y.push_back(0);
      for (size_t i = 0; i < c.x.size(); ++i) {
        s.x.push_back(std::max(c.x[i], xmin));
        s.y.push_back(prev);
        s.x.push_back(std::max(c.x[i], xmin));
        s.y.push_back(c.y[i]);
        prev = c.y[i];
      }
      s.x.push_back(xmax);
      s.y.push_back(prev);
      ser.push_back(s);
    }
    for (const auto& [name, sens] : froc_marks) {
      if (sens.size() != froc_targets.size()) continue;
      PlotSeries m;
      m.x = froc_targets;
      m.y = sens;
      m.line = false;
      m.markers = true;
      m.marker_radius = name == "any lesion" ? 4 : 3;
      m.color = chart_color(name, classes);
      ser.push_back(m);
    }
    PlotOptions po;
    po.title = "FROC (dots: the 7 operating points)";
    po.x_label = "false positives per image";
    po.y_label = "lesion sensitivity";
    po.log_x = true;
    po.x_min = xmin, po.x_max = xmax, po.y_min = 0, po.y_max = 1.02;
    po.x_ticks = {0.125, 0.25, 0.5, 1, 2, 4, 8};
    po.y_ticks = {0, 0.2, 0.4, 0.6, 0.8, 1.0};
    po.legend = LegendCorner::kBottomRight;
    po.id = "froc-chart";
    h += svg_line_chart(ser, po) + "\n";
  }
  h += "</div>\n";

  // ---- confusion matrix
  if (r.contains("confusion_matrix")) {
    const json& cm = r.at("confusion_matrix");
    const json& labels = need(cm, "labels", "confusion_matrix");
    const json& cnt = need(cm, "counts", "confusion_matrix");
    const size_t n = labels.size();
    h += "<h2 id=\"confusion\">Confusion matrix</h2>\n<table id=\"confusion-table\">\n<tr><th class=\"name\">true "
         "&#8595; / predicted &#8594;</th>";
    for (const auto& l : labels) h += "<th>" + html_escape(l.is_string() ? l.get<std::string>() : "?") + "</th>";
    h += "</tr>\n";
    CTDET_CHECK(cnt.is_array() && cnt.size() == n, "report: eval_report.json confusion_matrix.counts has ", cnt.size(),
                " rows for ", n, " labels");
    for (size_t i = 0; i < n; ++i) {
      CTDET_CHECK(cnt[i].is_array() && cnt[i].size() == n, "report: eval_report.json confusion_matrix.counts[", i,
                  "] has ", cnt[i].size(), " entries for ", n, " labels");
      h += "<tr><th class=\"name\">" + html_escape(labels[i].is_string() ? labels[i].get<std::string>() : "?") + "</th>";
      for (size_t j = 0; j < n; ++j) {
        const bool bg = i + 1 == n || j + 1 == n;
        const long long v = cnt[i][j].is_number() ? cnt[i][j].get<long long>() : 0;
        const char* cls = (i + 1 == n && j + 1 == n) ? "zero" : i == j ? "diag" : bg ? "bg" : v == 0 ? "zero" : nullptr;
        h += td(i + 1 == n && j + 1 == n ? "&#8212;" : int_str(cnt[i][j]), cls);
      }
      h += "</tr>\n";
    }
    h += "</table>\n" + definition(defs, "confusion_matrix", "Confusion matrix", &shown);
  }

  // ---- training
  h += "<h2 id=\"training\">Training</h2>\n";
  if (in.has_train_log) {
    const TrainMetrics& log = in.train_log;
    const auto steps = log.column("step");
    static const char* kPalette[] = {"#222222", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
    std::vector<PlotSeries> losses;
    for (const auto& c : log.columns) {
      if (c.rfind("loss", 0) != 0) continue;
      PlotSeries s;
      s.name = c;
      s.x = steps;
      s.y = log.column(c);
      s.color = kPalette[losses.size() % 7];
      s.stroke_width = c == "loss_total" ? 2.2 : 1.4;
      losses.push_back(s);
    }
    h += "<p class=\"meta\">Log: <code>" + html_escape(in.train_log_name) + "</code>, " + std::to_string(log.rows.size()) +
         " rows.</p>\n<div class=\"charts\">\n";
    if (!losses.empty() && !steps.empty()) {
      PlotOptions po;
      po.title = "Training losses";
      po.x_label = "step";
      po.y_label = "loss";
      po.y_min = 0;
      po.id = "loss-chart";
      h += svg_line_chart(losses, po) + "\n";
    }
    if (log.column_index("lr") >= 0 && !steps.empty()) {
      PlotSeries s;
      s.name = "lr";
      s.x = steps;
      s.y = log.column("lr");
      s.color = "#9467bd";
      PlotOptions po;
      po.title = "Learning rate";
      po.x_label = "step";
      po.y_label = "lr";
      po.y_min = 0;
      po.width = 420;
      po.left = 66;
      po.legend = LegendCorner::kNone;
      po.id = "lr-chart";
      h += svg_line_chart({s}, po) + "\n";
    }
    h += "</div>\n";
    if (losses.empty()) h += "<p class=\"note\">The training log has no loss columns.</p>\n";
  } else {
    h += "<p class=\"note\">No training log given (--train-log).</p>\n";
  }

  // ---- gallery
  h += "<h2 id=\"gallery\">Gallery</h2>\n";
  if (in.gallery.empty()) {
    h += "<p class=\"note\">" + html_escape(in.gallery_note.empty() ? "No gallery (give --images, --gt and --dets)."
                                                                   : in.gallery_note) +
         "</p>\n";
  } else {
    h += "<p class=\"key\">Boxes at the operating point:";
    for (size_t i = 0; i < classes.size(); ++i)
      h += "<span style=\"background:" + css_color(class_color(int(i) + 1, classes[i])) + "\"></span>" +
           html_escape(classes[i]);
    h += "<span style=\"background:" + css_color(kGroundTruthColor) + "\"></span>ground truth (dashed)</p>\n";
    const std::pair<const char*, const char*> groups[] = {{"best", "Best: highest-scoring true positives"},
                                                          {"miss", "Worst misses"},
                                                          {"false positive", "Worst false positives"}};
    for (const auto& [g, label] : groups) {
      std::string items;
      for (const auto& it : in.gallery) {
        if (it.group != g) continue;
        items += "<figure><img width=\"" + std::to_string(it.width) + "\" height=\"" + std::to_string(it.height) +
                 "\" alt=\"" + html_escape(it.title) + "\" src=\"data:image/png;base64," + base64_encode(it.png) +
                 "\"><figcaption><b>" + html_escape(it.title) + "</b><br>" + html_escape(it.caption) +
                 "</figcaption></figure>\n";
      }
      if (items.empty()) continue;
      h += "<h3>" + html_escape(label) + "</h3>\n<div class=\"gallery\">\n" + items + "</div>\n";
    }
  }

  // ---- patients
  if (!in.eval.patient_level_csv.empty()) {
    const auto lines = split_lines(in.eval.patient_level_csv);
    h += "<h2 id=\"patients\">Patients</h2>\n<table id=\"patient-table\">\n";
    size_t shown_rows = 0, total = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (trim(lines[i]).empty()) continue;
      const auto f = split_csv_record(lines[i], in.eval.dir + "/patient_level.csv:" + std::to_string(i + 1));
      if (i > 0) ++total;
      if (i > 0 && shown_rows >= 200) continue;
      h += "<tr>";
      for (size_t j = 0; j < f.size(); ++j) {
        const std::string cell = html_escape(f[j]);
        if (i == 0) h += j == 0 ? "<th class=\"name\">" + cell + "</th>" : "<th>" + cell + "</th>";
        else h += j == 0 ? td(cell, "name") : td(cell);
      }
      h += "</tr>\n";
      if (i > 0) ++shown_rows;
    }
    h += "</table>\n";
    if (total > shown_rows)
      h += "<p class=\"meta\">First " + std::to_string(shown_rows) + " of " + std::to_string(total) +
           " patients; all are in patient_level.csv.</p>\n";
  }

  // ---- definitions not shown yet
  std::string rest;
  if (defs.is_object())
    for (auto it = defs.begin(); it != defs.end(); ++it)
      if (!shown.count(it.key())) rest += definition(defs, it.key(), it.key(), &shown);
  if (!rest.empty()) h += "<h2 id=\"definitions\">Other definitions</h2>\n" + rest;

  // ---- configuration
  h += "<h2 id=\"config\">Configuration</h2>\n";
  h += "<h3>Evaluation options</h3>\n<pre id=\"eval-options\">" + html_escape(opts.dump(2)) + "</pre>\n";
  if (!in.config_name.empty())
    h += "<h3>Run config: " + html_escape(in.config_name) + "</h3>\n<pre id=\"run-config\">" +
         html_escape(in.config_text) + "</pre>\n";
  else
    h += "<p class=\"note\">No run config given (--config).</p>\n";
  h += "</body>\n</html>\n";
  return h;
}

void write_report_html(const std::string& path, const ReportInputs& in) {
  write_file_atomic(path, render_report_html(in));
}

}  // namespace ctdet
