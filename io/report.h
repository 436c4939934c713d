// `ctdet report`: one self-contained HTML file (no external CSS, scripts, fonts or images) built from a
// `ctdet eval` output folder, an optional training log, an optional gallery of detection overlays and an
// optional config file. Charts are inline SVG (io/svg_plot.h); gallery images are PNG data URIs.
// Every string that comes from an input (class names, image ids, file names, config text, column names)
// is HTML-escaped.
//
// ---- Training log format (read here) -------------------------------------------------------------------
// The trainer's metrics twins (train/train_log.h: metrics.csv "step,wall_time,<tag>,..." and metrics.jsonl
// one object per line), or any file in either form. --train-log may name the run folder: metrics.csv is
// read, else metrics.jsonl. The columns the report draws:
//   step,loss_total,loss_rpn_cls,loss_rpn_loc,loss_cls,loss_box_reg,lr
//   100,1.234,0.12,0.05,0.4,0.3,0.003
//   {"step": 100, "wall_time": 1.7e9, "loss_total": 1.234, "loss_rpn_cls": 0.12, ..., "lr": 0.003}
// A file is JSON lines when its first non-blank, non-'#' line starts with '{', else CSV with a header.
// `step` is required (aliases "iter", "iteration", "global_step"). Other names read as these columns:
// detectron2 "total_loss" -> loss_total; TF OD API "Loss/total_loss" -> loss_total,
// "Loss/RPNLoss/objectness_loss" -> loss_rpn_cls, "Loss/RPNLoss/localization_loss" -> loss_rpn_loc,
// "Loss/BoxClassifierLoss/classification_loss" -> loss_cls, "Loss/BoxClassifierLoss/localization_loss" ->
// loss_box_reg, "learning_rate" -> lr. Every numeric column is kept: names starting with "loss" go on the
// loss chart, "lr" on its own chart, the rest (wall_time, ...) are not drawn. Empty CSV fields, nan, JSON
// null and missing keys are NaN (a gap in the curve); JSON string/bool values are ignored; '#' lines and
// blank lines are skipped. A non-numeric CSV value is an error naming the file, line and column.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "io/annotations.h"
#include "io/image.h"

namespace ctdet {

// ---- training log ------------------------------------------------------------------------------------
struct TrainMetrics {
  std::vector<std::string> columns;       // "step" first, then the other columns in first-seen order
  std::vector<std::vector<double>> rows;  // rows[i][j] = value of columns[j] (NaN when absent)
  int column_index(const std::string& name) const;   // -1 when absent
  std::vector<double> column(const std::string& name) const;  // empty when absent
};
TrainMetrics parse_train_log(const std::string& text, const std::string& source);
// path: a log file, or a folder holding metrics.csv or metrics.jsonl. Throws naming the path otherwise.
TrainMetrics read_train_log(const std::string& path);

// ---- small pieces ------------------------------------------------------------------------------------
std::string html_escape(const std::string& s);                 // & < > " ' (same as xml_escape)
std::string base64_encode(const void* data, size_t size);      // RFC 4648, with '=' padding
inline std::string base64_encode(const std::string& bytes) { return base64_encode(bytes.data(), bytes.size()); }

// ---- the eval folder ---------------------------------------------------------------------------------
struct EvalFolder {
  std::string dir;
  std::string report_json;                              // eval_report.json (required)
  std::string pr_curves_csv, froc_csv, patient_level_csv;  // empty when the file is absent
  std::vector<std::string> missing;                     // optional files that were not found
};
// Throws ctdet::Error when dir does not exist, is not a folder, or lacks eval_report.json (the message
// names the folder and says to run `ctdet eval --out DIR`).
EvalFolder read_eval_folder(const std::string& dir);

// ---- gallery -----------------------------------------------------------------------------------------
// Per-image outcome at the operating point: detections with score >= score_threshold, matched greedily
// (highest score first, pycocotools matching) to lesions of the SAME class with IoU >= match_iou.
struct GalleryCase {
  std::string image_id;
  std::string group;  // "best", "miss", "false positive"
  int tp = 0, fp = 0, fn = 0, n_lesions = 0;
  double mean_tp_score = 0;   // 0 without TPs
  double max_fp_score = 0;    // 0 without FPs
};
struct GalleryOptions {
  float score_threshold = 0.5f;
  double match_iou = 0.5;
  int per_group = 3;  // images per group
};
// Up to per_group images for each group, each image in at most one group:
//   "miss"           images with missed lesions: most FN first, then fewest TP, then image order;
//   "false positive" images with FPs: highest FP score first, then most FPs;
//   "best"           images with lesions and >= 1 TP: fewest FN+FP first, then highest mean TP score.
// Returned in display order: best, miss, false positive.
std::vector<GalleryCase> select_gallery_cases(const Dataset& gt, const std::vector<Detection>& dets,
                                              const GalleryOptions& opt);

struct GalleryItem {
  std::string group, title, caption;
  std::string png;  // encoded PNG bytes
  int width = 0, height = 0;
};
// Reads rec.file, downscales it to fit max_side, and draws the ground truth and the detections with
// score >= score_threshold (boxes scaled to the thumbnail) with io/overlay.h.
GalleryItem make_gallery_item(const ImageRecord& rec, const std::vector<Detection>& image_dets,
                              const std::vector<std::string>& class_names, const GalleryCase& c,
                              float score_threshold, int max_side = 384);

// ---- the report --------------------------------------------------------------------------------------
struct ReportInputs {
  std::string title = "ctdet evaluation report";
  EvalFolder eval;
  bool has_train_log = false;
  TrainMetrics train_log;
  std::string train_log_name;
  std::vector<GalleryItem> gallery;
  std::string gallery_note;  // shown when the gallery is empty (why)
  std::string config_text, config_name;  // config_name empty: no config section content
  std::string command_line;
};

// The whole HTML document. Throws ctdet::Error naming eval_report.json and the key when the JSON lacks
// a section the report needs, and naming the CSV file and line for malformed curve rows.
std::string render_report_html(const ReportInputs& in);
// render_report_html written atomically (io/atomic_file.h).
void write_report_html(const std::string& path, const ReportInputs& in);

}  // namespace ctdet
