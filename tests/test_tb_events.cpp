// TensorBoard event files and the TrainLog CSV/JSONL/event twins: Event bytes against the byte templates
// verified in docs (shared/reference/ecosystem.md §2.3), framing read back with the independent TFRecord
// reader, the flush policy seen from the file size on disk, torn tails, and resume truncation.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/tb_events.h"
#include "io/tfrecord.h"
#include "nn/error.h"
#include "tests/test_util.h"
#include "train/train_log.h"

namespace fs = std::filesystem;
using namespace ctdet;

namespace {
std::string tmp_dir(const std::string& name) { return ctdet::testing::tmp_dir("tb", name); }

using ctdet::testing::expect_error;

std::string f64_bytes(double v) {
  std::string s(8, '\0');
  std::memcpy(&s[0], &v, 8);
  return s;
}

std::string hex(const std::string& s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) std::snprintf(b, sizeof b, "%02x ", c), out += b;
  return out;
}

void append(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::app);
  f << bytes;
}

std::vector<std::string> lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream f(path);
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}
}  // namespace

TEST(TbEvents, BytesMatchVerifiedTemplates) {
  const double wt = 1700000000.25;
  // header: 09 <f64 wall_time> 1a 0d "brain.Event:2"
  std::string want_h = "\x09" + f64_bytes(wt) + "\x1a\x0d" + "brain.Event:2";
  EXPECT_EQ(hex(encode_tb_file_version(wt)), hex(want_h));
  // scalar (step 7, tag "loss/total", 0.25): 09 <f64> 10 07 2a 13 0a 11 0a 0a "loss/total" 15 0000803e
  std::string want_s = "\x09" + f64_bytes(wt) + "\x10\x07\x2a\x13\x0a\x11\x0a\x0a" + "loss/total" +
                       std::string("\x15\x00\x00\x80\x3e", 5);
  EXPECT_EQ(hex(encode_tb_scalars(7, wt, {{"loss/total", 0.25f}})), hex(want_s));
  // A value of exactly 0 must still be on the wire (simple_value sits in a oneof).
  std::string zero = encode_tb_scalars(7, wt, {{"loss/total", 0.0f}});
  EXPECT_EQ(hex(zero.substr(zero.size() - 5)), hex(std::string("\x15\x00\x00\x00\x00", 5)));
  TbEvent ev = decode_tb_event(zero, "mem");
  ASSERT_EQ(ev.scalars.size(), 1u);
  EXPECT_EQ(ev.scalars[0].value, 0.0f);
  EXPECT_EQ(ev.step, 7);
}

TEST(TbEvents, WriteReadBackAndFraming) {
  std::string dir = tmp_dir("rw");
  const double t0 = 1700000123.5;
  std::string path;
  {
    TbEventWriter w(dir, {}, t0);
    path = w.path();
    for (int s = 0; s < 25; ++s)
      w.scalars(s, {{"loss/total", 1.0f / float(s + 1)}, {"lr", 0.01f * float(s)}}, t0 + s);
    w.close();
    EXPECT_EQ(w.events(), 26);
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(fs::path(path).filename().string(), std::string("events.out.tfevents.1700000123.") + host);
  // Framing through the independent TFRecord reader (it checks both CRCs).
  std::vector<std::string> recs = read_tfrecord_file(path);
  ASSERT_EQ(recs.size(), 26u);
  std::vector<TbEvent> ev = read_tb_events(path);
  ASSERT_EQ(ev.size(), 26u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_EQ(ev[0].wall_time, t0);
  double max_err = 0;
  for (int s = 0; s < 25; ++s) {
    const TbEvent& e = ev[size_t(s) + 1];
    EXPECT_EQ(e.step, s);
    EXPECT_EQ(e.wall_time, t0 + s);
    ASSERT_EQ(e.scalars.size(), 2u);
    EXPECT_EQ(e.scalars[0].tag, "loss/total");
    EXPECT_EQ(e.scalars[1].tag, "lr");
    max_err = std::max(max_err, std::abs(double(e.scalars[0].value) - double(1.0f / float(s + 1))));
    max_err = std::max(max_err, std::abs(double(e.scalars[1].value) - double(0.01f * float(s))));
  }
  std::printf("[err] tb scalars read back max_abs=%.3e\n", max_err);
  EXPECT_EQ(max_err, 0.0);
  // A second writer in the same second gets its own file.
  TbEventWriter w2(dir, {}, t0);
  EXPECT_NE(w2.path(), path);
  w2.close();
  EXPECT_EQ(list_tb_event_files(dir).size(), 2u);
  fs::remove_all(dir);
}

TEST(TbEvents, FlushPolicyBoundsWhatACrashLoses) {
  std::string dir = tmp_dir("flush");
  TbWriterOptions o;
  o.flush_every = 3;
  o.flush_secs = 1e9;
  TbEventWriter w(dir, o, 1700000000.0);
  const uintmax_t header = fs::file_size(w.path());  // the file_version record is flushed at once
  EXPECT_EQ(header, 12u + encode_tb_file_version(1700000000.0).size() + 4u);
  w.scalar(0, "a", 1.0f, 1.0);
  w.scalar(1, "a", 2.0f, 2.0);
  EXPECT_EQ(fs::file_size(w.path()), header) << "buffered until flush_every events";
  w.scalar(2, "a", 3.0f, 3.0);  // 3 since the last flush (the header counted) -> flushed
  const uintmax_t after3 = fs::file_size(w.path());
  EXPECT_GT(after3, header);
  EXPECT_EQ(read_tb_events(w.path()).size(), 4u);
  w.scalar(3, "a", 4.0f, 4.0);
  EXPECT_EQ(fs::file_size(w.path()), after3);
  w.flush();
  EXPECT_EQ(read_tb_events(w.path()).size(), 5u);
  // Time-based: flush_secs = 0 flushes every event.
  TbWriterOptions t;
  t.flush_every = 1000;
  t.flush_secs = 0;
  TbEventWriter w2(dir, t, 1700000001.0);
  w2.scalar(0, "b", 1.0f);
  EXPECT_EQ(read_tb_events(w2.path()).size(), 2u);
  w.close();
  w2.close();
  fs::remove_all(dir);
}

TEST(TbEvents, TornTailAndTruncation) {
  std::string dir = tmp_dir("torn");
  std::string path;
  {
    TbEventWriter w(dir, {}, 1700000000.0);
    path = w.path();
    for (int s = 0; s < 6; ++s) w.scalar(s, "loss", float(s), 10.0 + s);
  }
  // A crash mid-record: half of a framed record.
  std::string rec = frame_tfrecord(encode_tb_scalars(6, 16.0, {{"loss", 6.0f}}));
  append(path, rec.substr(0, rec.size() / 2));
  std::string e = expect_error([&] { read_tb_events(path); });
  EXPECT_NE(e.find(path), std::string::npos);
  EXPECT_NE(e.find("record 7"), std::string::npos);
  TbReadResult r = read_tb_events_tolerant(path);
  EXPECT_EQ(r.events.size(), 7u);
  EXPECT_FALSE(r.tail_error.empty());
  // Keep steps <= 3: drops steps 4, 5 and the torn tail.
  EXPECT_EQ(truncate_tb_events(path, 3), 3);
  std::vector<TbEvent> ev = read_tb_events(path);
  ASSERT_EQ(ev.size(), 5u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_EQ(ev.back().step, 3);
  EXPECT_EQ(truncate_tb_events(path, 3), 0);  // idempotent, file untouched
  // A flipped data byte is a CRC error naming the file.
  std::string bytes = read_file(path);
  bytes[bytes.size() - 6] ^= 0x40;
  write_file_atomic(path, bytes);
  e = expect_error([&] { read_tb_events(path); });
  EXPECT_NE(e.find("CRC"), std::string::npos);
  fs::remove_all(dir);
}

TEST(TrainLog, CsvJsonlEventsTwins) {
  std::string dir = tmp_dir("log");
  {
    TrainLog log(dir);
    log.log(0, {{"loss/total", 2.5}, {"lr", 0.001}}, 100.0);
    log.log(1, {{"loss/total", 0.0}, {"lr", 0.002}, {"mem/gb", 3.0}}, 101.5);  // mem/gb: not a CSV column
    log.log(2, {{"lr", 0.003}}, 102.0);                                         // loss missing: empty cell
    log.close();
  }
  std::vector<std::string> csv = lines(dir + "/metrics.csv");
  std::vector<std::string> want = {"step,wall_time,loss/total,lr", "0,100,2.5,0.001", "1,101.5,0,0.002", "2,102,,0.003"};
  EXPECT_EQ(csv, want);
  std::vector<std::string> js = lines(dir + "/metrics.jsonl");
  ASSERT_EQ(js.size(), 3u);
  nlohmann::json j1 = nlohmann::json::parse(js[1]);
  EXPECT_EQ(j1["step"], 1);
  EXPECT_EQ(j1["wall_time"], 101.5);
  EXPECT_EQ(j1["mem/gb"], 3.0);
  EXPECT_EQ(j1["loss/total"], 0.0);
  auto files = list_tb_event_files(dir);
  ASSERT_EQ(files.size(), 1u);
  std::vector<TbEvent> ev = read_tb_events(files[0]);
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[2].scalars.size(), 3u);
  EXPECT_EQ(ev[2].scalars[2].tag, "mem/gb");
  EXPECT_EQ(ev[2].scalars[2].value, 3.0f);
  EXPECT_EQ(ev[3].wall_time, 102.0);
  // A fresh run over existing logs is refused unless overwrite is set.
  std::string e = expect_error([&] { TrainLog again(dir); });
  EXPECT_NE(e.find(dir), std::string::npos);
  TrainLogOptions ow;
  ow.overwrite = true;
  { TrainLog again(dir, -1, ow); }
  EXPECT_TRUE(lines(dir + "/metrics.csv").empty());
  EXPECT_EQ(list_tb_event_files(dir).size(), 1u);
  fs::remove_all(dir);
}

TEST(TrainLog, ResumeTruncatesLaterRowsAndKeepsOneHeader) {
  std::string dir = tmp_dir("resume");
  {
    TrainLog log(dir);
    for (int s = 0; s < 6; ++s) log.log(s, {{"loss", 10.0 - s}}, 100.0 + s);
  }
  // A crash after step 5: torn lines at the end of both files.
  append(dir + "/metrics.csv", "6,106,4");
  append(dir + "/metrics.jsonl", "{\"step\":6,\"wall");
  {
    TrainLog log(dir, 2);  // resuming from the checkpoint of step 2
    log.log(3, {{"loss", 7.5}}, 200.0);
    log.log(4, {{"loss", 6.5}}, 201.0);
  }
  std::vector<std::string> csv = lines(dir + "/metrics.csv");
  std::vector<std::string> want = {"step,wall_time,loss", "0,100,10", "1,101,9", "2,102,8", "3,200,7.5", "4,201,6.5"};
  EXPECT_EQ(csv, want);
  std::vector<std::string> js = lines(dir + "/metrics.jsonl");
  ASSERT_EQ(js.size(), 5u);
  for (int s = 0; s < 5; ++s) EXPECT_EQ(nlohmann::json::parse(js[size_t(s)])["step"], s);
  // Across all event files every step 0..4 appears once, with the resumed values.
  std::map<int64_t, std::vector<float>> seen;
  int starts = 0;
  for (const std::string& f : list_tb_event_files(dir))
    for (const TbEvent& e : read_tb_events(f)) {
      if (e.session_status == 1) {
        ++starts;
        EXPECT_EQ(e.step, 3);
      }
      for (auto& s : e.scalars) seen[e.step].push_back(s.value);
    }
  EXPECT_EQ(starts, 1);
  ASSERT_EQ(seen.size(), 5u);
  for (auto& [step, v] : seen) EXPECT_EQ(v.size(), 1u) << "step " << step;
  EXPECT_EQ(seen[3][0], 7.5f);
  EXPECT_EQ(seen[2][0], 8.0f);
  // Kept in the build tree for scripts/check_tensorboard.py (TensorBoard's own reader).
  const std::string keep = std::string(CTDET_BINARY_DIR) + "/test_out/tb_resume";
  fs::remove_all(keep);
  fs::create_directories(keep);
  fs::copy(dir, keep, fs::copy_options::recursive);
  fs::remove_all(dir);
}
