#include "io/tb_events.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "io/atomic_file.h"
#include "io/proto/event.pb.h"
#include "io/tfrecord.h"
#include "nn/error.h"

namespace fs = std::filesystem;

namespace ctdet {

namespace {
uint64_t get_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string serialize(const tbproto::Event& ev) {
  std::string out;
  CTDET_CHECK(ev.SerializeToString(&out), "tensorboard: cannot serialize an Event");
  return out;
}
}  // namespace

double unix_time_now() {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count();
  return double(us) * 1e-6;
}

std::string encode_tb_file_version(double wall_time) {
  tbproto::Event ev;
  ev.set_wall_time(wall_time);
  ev.set_file_version("brain.Event:2");
  return serialize(ev);
}

std::string encode_tb_scalars(int64_t step, double wall_time, const std::vector<TbScalar>& values) {
  tbproto::Event ev;
  ev.set_wall_time(wall_time);
  ev.set_step(step);
  tbproto::Summary* s = ev.mutable_summary();
  for (const TbScalar& v : values) {
    CTDET_CHECK(!v.tag.empty(), "tensorboard: empty scalar tag at step ", step);
    tbproto::Summary::Value* sv = s->add_value();
    sv->set_tag(v.tag);
    sv->set_simple_value(v.value);
  }
  return serialize(ev);
}

std::string encode_tb_session_start(int64_t step, double wall_time) {
  tbproto::Event ev;
  ev.set_wall_time(wall_time);
  ev.set_step(step);
  ev.mutable_session_log()->set_status(tbproto::SessionLog::START);
  return serialize(ev);
}

TbEvent decode_tb_event(const std::string& bytes, const std::string& where) {
  tbproto::Event ev;
  CTDET_CHECK(ev.ParseFromString(bytes), "tensorboard '", where, "': record is not an Event message (", bytes.size(),
              " bytes)");
  TbEvent out;
  out.wall_time = ev.wall_time();
  out.step = ev.step();
  if (ev.has_file_version()) out.file_version = ev.file_version();
  if (ev.has_session_log()) out.session_status = int(ev.session_log().status());
  if (ev.has_summary())
    for (const auto& v : ev.summary().value())
      if (v.has_simple_value()) out.scalars.push_back({v.tag(), v.simple_value()});
  return out;
}

std::string tb_event_file_basename(int64_t unix_seconds, const std::string& hostname) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%010lld", static_cast<long long>(unix_seconds));
  return std::string("events.out.tfevents.") + buf + "." + hostname;
}

// ---- writer ----------------------------------------------------------------------------------------------

TbEventWriter::TbEventWriter(const std::string& dir, const TbWriterOptions& opt, double wall_time) : opt_(opt) {
  CTDET_CHECK(opt.flush_every >= 1, "tensorboard: flush_every must be >= 1, got ", opt.flush_every);
  std::error_code ec;
  fs::create_directories(dir, ec);
  CTDET_CHECK(!ec, "tensorboard: cannot create directory '", dir, "': ", ec.message());
  if (wall_time < 0) wall_time = unix_time_now();
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const std::string base = (fs::path(dir) / tb_event_file_basename(int64_t(wall_time), host)).string();
  // "x": fail rather than append to an existing file (two writers in one second, or a resumed run).
  for (int n = 0; n < 1000 && !f_; ++n) {
    path_ = n == 0 ? base : base + "." + std::to_string(n);
    f_ = std::fopen(path_.c_str(), "wbx");
    if (!f_ && errno != EEXIST) CTDET_FAIL("tensorboard: cannot create '", path_, "': ", std::strerror(errno));
  }
  CTDET_CHECK(f_ != nullptr, "tensorboard: no free event file name near '", base, "'");
  last_flush_ = unix_time_now();
  write_record(encode_tb_file_version(wall_time));
  flush();
}

TbEventWriter::~TbEventWriter() {
  try {
    close();
  } catch (const Error& e) {
    std::fprintf(stderr, "warning: %s\n", e.what());
  }
}

void TbEventWriter::write_record(const std::string& event_bytes) {
  CTDET_CHECK(f_ != nullptr, "tensorboard: writing to closed event file '", path_, "'");
  const std::string rec = frame_tfrecord(event_bytes);
  CTDET_CHECK(std::fwrite(rec.data(), 1, rec.size(), f_) == rec.size(), "tensorboard: write to '", path_,
              "' failed: ", std::strerror(errno));
  ++events_;
  ++since_flush_;
  if (since_flush_ >= opt_.flush_every || unix_time_now() - last_flush_ >= opt_.flush_secs) flush();
}

void TbEventWriter::scalars(int64_t step, const std::vector<TbScalar>& values, double wall_time) {
  write_record(encode_tb_scalars(step, wall_time < 0 ? unix_time_now() : wall_time, values));
}

void TbEventWriter::session_start(int64_t step, double wall_time) {
  write_record(encode_tb_session_start(step, wall_time < 0 ? unix_time_now() : wall_time));
}

void TbEventWriter::flush() {
  if (!f_) return;
  CTDET_CHECK(std::fflush(f_) == 0, "tensorboard: flushing '", path_, "' failed: ", std::strerror(errno));
  since_flush_ = 0;
  last_flush_ = unix_time_now();
}

void TbEventWriter::close() {
  if (!f_) return;
  std::FILE* f = f_;
  f_ = nullptr;
  bool ok = std::fflush(f) == 0;
  ok = (::fsync(::fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  CTDET_CHECK(ok, "tensorboard: closing '", path_, "' failed: ", std::strerror(errno));
}

// ---- reading ---------------------------------------------------------------------------------------------

namespace {
// Walks the records of `bytes`; stops at the first bad one, describing it in *err.
std::vector<TbEvent> walk(const std::string& bytes, const std::string& path, uint64_t* good, std::string* err) {
  std::vector<TbEvent> out;
  uint64_t off = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const uint64_t n = bytes.size();
  *good = 0;
  err->clear();
  while (off < n) {
    const std::string at = str("tensorboard '", path, "': record ", out.size(), " at byte ", off);
    if (n - off < 12) { *err = str(at, ": truncated header (", n - off, " bytes)"); break; }
    uint64_t len = get_le(p + off, 8);
    uint32_t len_crc = uint32_t(get_le(p + off + 8, 4));
    if (len_crc != crc32c_mask(crc32c(p + off, 8))) { *err = str(at, ": length CRC mismatch"); break; }
    if (len > n - off - 12 || n - off - 12 - len < 4) {
      *err = str(at, ": truncated record (length ", len, ", ", n - off - 12, " bytes left)");
      break;
    }
    uint32_t data_crc = uint32_t(get_le(p + off + 12 + len, 4));
    if (data_crc != crc32c_mask(crc32c(p + off + 12, size_t(len)))) { *err = str(at, ": data CRC mismatch"); break; }
    try {
      out.push_back(decode_tb_event(bytes.substr(size_t(off + 12), size_t(len)), path));
    } catch (const Error& e) {
      *err = str(at, ": ", e.what());
      break;
    }
    off += 12 + len + 4;
    *good = off;
  }
  return out;
}
}  // namespace

std::vector<TbEvent> read_tb_events(const std::string& path) {
  uint64_t good = 0;
  std::string err;
  std::vector<TbEvent> ev = walk(read_file(path), path, &good, &err);
  if (!err.empty()) throw Error(err);
  return ev;
}

TbReadResult read_tb_events_tolerant(const std::string& path) {
  TbReadResult r;
  r.events = walk(read_file(path), path, &r.good_bytes, &r.tail_error);
  return r;
}

std::vector<std::string> list_tb_event_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.find("tfevents") != std::string::npos && name.find(".tmp.") == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t truncate_tb_events(const std::string& path, int64_t max_step) {
  const std::string bytes = read_file(path);
  uint64_t good = 0;
  std::string err;
  walk(bytes, path, &good, &err);
  std::string kept;
  int64_t dropped = err.empty() ? 0 : 1;  // a torn tail counts as one dropped event
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (uint64_t off = 0; off < good;) {
    uint64_t len = get_le(p + off, 8);
    std::string data = bytes.substr(size_t(off + 12), size_t(len));
    TbEvent ev = decode_tb_event(data, path);
    if (!ev.file_version.empty() || ev.step <= max_step) kept += bytes.substr(size_t(off), size_t(12 + len + 4));
    else ++dropped;
    off += 12 + len + 4;
  }
  if (dropped) {
    if (!err.empty()) std::fprintf(stderr, "warning: dropping the torn tail of %s (%s)\n", path.c_str(), err.c_str());
    write_file_atomic(path, kept);
  }
  return dropped;
}

}  // namespace ctdet
