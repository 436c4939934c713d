#include "train/train_log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "nn/error.h"

namespace fs = std::filesystem;

namespace ctdet {

namespace {
std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> out(1);
  bool q = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (q) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else if (c == '"') q = false;
      else out.back() += c;
    } else if (c == '"') q = true;
    else if (c == ',') out.emplace_back();
    else out.back() += c;
  }
  return out;
}

std::string fmt_num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

bool parse_step(const std::string& s, int64_t* step) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end != '\0') return false;
  *step = v;
  return true;
}

// Complete lines of a file ("" when missing); a last line without '\n' is torn and left out.
std::vector<std::string> complete_lines(const std::string& path, bool* torn) {
  std::vector<std::string> out;
  *torn = false;
  if (!fs::exists(path)) return out;
  std::string text = read_file(path);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      *torn = true;
      break;
    }
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::FILE* open_append(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "ab");
  CTDET_CHECK(f != nullptr, "TrainLog: cannot open '", path, "' for append: ", std::strerror(errno));
  return f;
}

void put(std::FILE* f, const std::string& s, const std::string& path) {
  CTDET_CHECK(std::fwrite(s.data(), 1, s.size(), f) == s.size() && std::fflush(f) == 0, "TrainLog: write to '", path,
              "' failed: ", std::strerror(errno));
}
}  // namespace

TrainLog::TrainLog(const std::string& dir, int64_t resume_step, const TrainLogOptions& opt)
    : dir_(dir), csv_path_((fs::path(dir) / "metrics.csv").string()),
      jsonl_path_((fs::path(dir) / "metrics.jsonl").string()) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  CTDET_CHECK(!ec, "TrainLog: cannot create directory '", dir, "': ", ec.message());
  columns_ = opt.csv_columns;

  bool csv_torn = false, jsonl_torn = false;
  std::vector<std::string> csv_lines = complete_lines(csv_path_, &csv_torn);
  std::vector<std::string> jsonl_lines = complete_lines(jsonl_path_, &jsonl_torn);
  const bool has_rows = csv_lines.size() > 1 || !jsonl_lines.empty() || csv_torn || jsonl_torn;

  if (resume_step < 0) {
    CTDET_CHECK(!has_rows || opt.overwrite, "TrainLog: '", dir, "' already holds metrics (", csv_path_,
                "); resume from a step or set overwrite to start over");
    write_file_atomic(csv_path_, "");
    write_file_atomic(jsonl_path_, "");
    for (const std::string& p : list_tb_event_files(dir)) fs::remove(p, ec);
  } else {
    // CSV: keep the header and rows with step <= resume_step.
    std::string kept;
    int64_t dropped = csv_torn ? 1 : 0;
    if (!csv_lines.empty()) {
      std::vector<std::string> head = csv_split(csv_lines[0]);
      CTDET_CHECK(head.size() >= 2 && head[0] == "step" && head[1] == "wall_time", "TrainLog: '", csv_path_,
                  "' does not start with a step,wall_time header: '", csv_lines[0], "'");
      std::vector<std::string> existing(head.begin() + 2, head.end());
      if (!columns_.empty() && columns_ != existing)
        std::fprintf(stderr, "warning: TrainLog: resuming %s with its existing columns, not the requested ones\n",
                     csv_path_.c_str());
      columns_ = existing;
      header_written_ = true;
      kept = csv_lines[0] + "\n";
      for (size_t i = 1; i < csv_lines.size(); ++i) {
        int64_t s;
        if (parse_step(csv_split(csv_lines[i])[0], &s) && s <= resume_step) kept += csv_lines[i] + "\n";
        else ++dropped;
      }
    }
    if (dropped || csv_torn) write_file_atomic(csv_path_, kept);
    // JSONL: the same by the "step" field.
    kept.clear();
    dropped = jsonl_torn ? 1 : 0;
    for (const std::string& line : jsonl_lines) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= resume_step)
        kept += line + "\n";
      else
        ++dropped;
    }
    if (dropped) write_file_atomic(jsonl_path_, kept);
    if (opt.tensorboard)
      for (const std::string& p : list_tb_event_files(dir)) truncate_tb_events(p, resume_step);
  }
  csv_ = open_append(csv_path_);
  jsonl_ = open_append(jsonl_path_);
  if (opt.tensorboard) {
    tb_ = std::make_unique<TbEventWriter>(dir, opt.tb);
    if (resume_step >= 0) tb_->session_start(resume_step + 1);
  }
}

TrainLog::~TrainLog() {
  try {
    close();
  } catch (const Error& e) {
    std::fprintf(stderr, "warning: %s\n", e.what());
  }
}

void TrainLog::log(int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time) {
  CTDET_CHECK(csv_ != nullptr, "TrainLog: log(step ", step, ") after close() in '", dir_, "'");
  if (wall_time < 0) wall_time = unix_time_now();
  std::set<std::string> seen;
  for (auto& [tag, v] : values) {
    CTDET_CHECK(!tag.empty() && tag != "step" && tag != "wall_time", "TrainLog: bad tag '", tag, "' at step ", step);
    CTDET_CHECK(seen.insert(tag).second, "TrainLog: tag '", tag, "' given twice at step ", step);
  }
  if (!header_written_) {
    if (columns_.empty())
      for (auto& kv : values) columns_.push_back(kv.first);
    std::string h = "step,wall_time";
    for (const std::string& c : columns_) h += "," + csv_quote(c);
    put(csv_, h + "\n", csv_path_);
    header_written_ = true;
  }
  // CSV row in header order.
  std::string row = std::to_string(step) + "," + fmt_num(wall_time);
  for (const std::string& c : columns_) {
    row += ",";
    for (auto& kv : values)
      if (kv.first == c) row += fmt_num(kv.second);
  }
  for (auto& kv : values) {
    bool in_csv = false;
    for (const std::string& c : columns_) in_csv = in_csv || c == kv.first;
    if (!in_csv && warned_.insert(kv.first).second)
      std::fprintf(stderr, "warning: TrainLog: tag '%s' (step %lld) is not a column of %s; it goes to the JSONL and "
                   "event files only\n", kv.first.c_str(), static_cast<long long>(step), csv_path_.c_str());
  }
  put(csv_, row + "\n", csv_path_);
  // JSONL.
  nlohmann::ordered_json j;
  j["step"] = step;
  j["wall_time"] = wall_time;
  for (auto& [tag, v] : values) {
    if (std::isfinite(v)) j[tag] = v;
    else j[tag] = nullptr;
  }
  put(jsonl_, j.dump() + "\n", jsonl_path_);
  // TensorBoard.
  if (tb_) {
    std::vector<TbScalar> s;
    for (auto& [tag, v] : values) s.push_back({tag, float(v)});
    tb_->scalars(step, s, wall_time);
  }
}

void TrainLog::flush() {
  if (csv_) std::fflush(csv_);
  if (jsonl_) std::fflush(jsonl_);
  if (tb_) tb_->flush();
}

void TrainLog::close() {
  std::string err;
  for (auto [f, path] : {std::pair<std::FILE**, const std::string*>{&csv_, &csv_path_}, {&jsonl_, &jsonl_path_}}) {
    if (!*f) continue;
    bool ok = std::fflush(*f) == 0;
    ok = ::fsync(::fileno(*f)) == 0 && ok;
    ok = std::fclose(*f) == 0 && ok;
    *f = nullptr;
    if (!ok && err.empty()) err = str("TrainLog: closing '", *path, "' failed: ", std::strerror(errno));
  }
  if (tb_) {
    std::unique_ptr<TbEventWriter> tb = std::move(tb_);
    tb->close();
  }
  if (!err.empty()) throw Error(err);
}

}  // namespace ctdet
