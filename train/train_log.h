// TrainLog: one call per step writes the same scalars to three twins in a run directory:
//   metrics.csv    step,wall_time,<tag>,...   (header fixed at the first call, or by options.csv_columns)
//   metrics.jsonl  {"step":N,"wall_time":T,"<tag>":v,...}  one object per line, every tag of the call
//   events.out.tfevents.<time>.<host>        TensorBoard scalars (io/tb_events.h)
//
// CSV columns: a tag that is not in the header is still written to the JSONL and event file but not to the
// CSV (a warning is printed once per tag); a header tag missing from a call leaves its cell empty. Log
// evaluation metrics to their own TrainLog (e.g. model_dir/eval, as the TF OD API does) or declare all
// columns up front. Non-finite values are written as nan/inf in the CSV, null in the JSONL.
//
// Resume (resume_step >= 0): the existing metrics.csv keeps its header and the rows with step <=
// resume_step; rows with a larger step (logged after the checkpoint being resumed from) and a torn last
// line are removed; the same for metrics.jsonl. Existing event files are rewritten without events of step
// > resume_step (io/tb_events.h truncate_tb_events), and a new event file starts with a SessionLog START
// at resume_step + 1. The rewrites are atomic; then the CSV/JSONL files are opened in append mode, so the
// header is never duplicated.
//
// A fresh run (resume_step < 0) in a directory whose metrics.csv or metrics.jsonl already holds rows is an
// error unless options.overwrite is set (then they are emptied and old event files removed).
//
// CSV and JSONL lines are flushed after every call (a crash loses at most a torn line, which resume
// removes); the event file follows options.tb's flush policy. All three are fsynced by close().
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/tb_events.h"

namespace ctdet {

struct TrainLogOptions {
  bool tensorboard = true;
  TbWriterOptions tb;
  std::vector<std::string> csv_columns;  // fixed CSV tags; empty: the tags of the first log() call
  bool overwrite = false;                // fresh run may discard existing logs
};

class TrainLog {
 public:
  TrainLog(const std::string& dir, int64_t resume_step = -1, const TrainLogOptions& opt = {});
  ~TrainLog();  // close(); errors printed, not thrown
  TrainLog(const TrainLog&) = delete;
  TrainLog& operator=(const TrainLog&) = delete;

  // wall_time < 0: now.
  void log(int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time = -1);
  void flush();
  void close();

  const std::string& csv_path() const { return csv_path_; }
  const std::string& jsonl_path() const { return jsonl_path_; }
  std::string event_path() const { return tb_ ? tb_->path() : ""; }
  const std::vector<std::string>& columns() const { return columns_; }  // CSV tags (after step,wall_time)

 private:
  std::string dir_, csv_path_, jsonl_path_;
  std::FILE* csv_ = nullptr;
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<TbEventWriter> tb_;
  std::vector<std::string> columns_;
  bool header_written_ = false;
  std::set<std::string> warned_;
};

}  // namespace ctdet
