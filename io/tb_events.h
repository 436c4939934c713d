// TensorBoard event files, scalars only: what `tensorboard --logdir` reads.
//
// File name: events.out.tfevents.<10-digit unix time>.<hostname> (".<n>" appended if that name is taken).
// Content: TFRecord framing (io/tfrecord.h: length, masked CRC-32C, data, masked CRC-32C) of serialized
// Event messages (io/proto/event.proto, TensorFlow's field numbers). The first record is
// Event{wall_time, file_version: "brain.Event:2"}; then one Event{wall_time, step, summary{value{tag,
// simple_value}...}} per scalars() call.
//
// Flush policy: records go through a stdio buffer that is flushed every `flush_every` events and whenever
// `flush_secs` have passed since the last flush (checked at each write), and on flush()/close() (close
// also fsyncs). A crash loses at most the events since the last flush; a torn last record is what a
// crash mid-write leaves, and read_tb_events_tolerant / truncate_tb_events stop cleanly before it.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ctdet {

struct TbScalar {
  std::string tag;
  float value = 0;
};

struct TbEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;      // "brain.Event:2" on the first record, else ""
  std::vector<TbScalar> scalars;  // summary values that carry a simple_value
  int session_status = 0;        // SessionLog status (1 START, 2 STOP, 3 CHECKPOINT), 0 when none
};

// Serialized Event bytes (no framing).
std::string encode_tb_file_version(double wall_time);
std::string encode_tb_scalars(int64_t step, double wall_time, const std::vector<TbScalar>& values);
std::string encode_tb_session_start(int64_t step, double wall_time);
TbEvent decode_tb_event(const std::string& bytes, const std::string& where);

std::string tb_event_file_basename(int64_t unix_seconds, const std::string& hostname);
double unix_time_now();  // seconds since the epoch, microsecond resolution

struct TbWriterOptions {
  int flush_every = 10;     // events between flushes
  double flush_secs = 5.0;  // seconds between flushes (checked when an event is written)
};

class TbEventWriter {
 public:
  // Creates dir (and parents) if needed and a new event file in it, named for `wall_time` (< 0: now),
  // then writes the file_version record.
  explicit TbEventWriter(const std::string& dir, const TbWriterOptions& opt = {}, double wall_time = -1);
  ~TbEventWriter();  // close(); errors are printed to stderr, not thrown
  TbEventWriter(const TbEventWriter&) = delete;
  TbEventWriter& operator=(const TbEventWriter&) = delete;

  void scalars(int64_t step, const std::vector<TbScalar>& values, double wall_time = -1);
  void scalar(int64_t step, const std::string& tag, float value, double wall_time = -1) {
    scalars(step, {{tag, value}}, wall_time);
  }
  // SessionLog START at `step`: TensorBoard then discards older events with step >= this step (restart).
  void session_start(int64_t step, double wall_time = -1);
  void flush();
  void close();  // flush, fsync, close; throws ctdet::Error naming the file
  const std::string& path() const { return path_; }
  int64_t events() const { return events_; }  // records written, the file_version one included

 private:
  void write_record(const std::string& event_bytes);
  std::string path_;
  std::FILE* f_ = nullptr;
  TbWriterOptions opt_;
  int64_t events_ = 0, since_flush_ = 0;
  double last_flush_ = 0;
};

// Reads every event; a bad CRC, a torn record or an undecodable Event throws ctdet::Error naming the file,
// record index and byte offset.
std::vector<TbEvent> read_tb_events(const std::string& path);

struct TbReadResult {
  std::vector<TbEvent> events;  // the good records before the first bad one
  uint64_t good_bytes = 0;      // bytes they span
  std::string tail_error;       // why reading stopped early ("" at a clean end of file)
};
TbReadResult read_tb_events_tolerant(const std::string& path);

// Event files (basename contains "tfevents") directly in dir, sorted by name; [] when dir does not exist.
std::vector<std::string> list_tb_event_files(const std::string& dir);

// Rewrites `path` atomically keeping the file_version record, session logs and scalar events with
// step <= max_step, and dropping a torn tail. Returns the number of events dropped.
int64_t truncate_tb_events(const std::string& path, int64_t max_step);

}  // namespace ctdet
