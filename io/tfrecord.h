// TFRecord files (TensorFlow's record framing) and tf.train.Example records in the TF Object Detection
// API layout.
//
// Framing, per record, little-endian:  uint64 length | uint32 masked_crc32c(length bytes) |
//                                       data[length]  | uint32 masked_crc32c(data)
// CRC-32C is Castagnoli (reflected polynomial 0x82F63B78); mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
// Only uncompressed files are handled (no GZIP/ZLIB record options).
//
// Example feature keys (TF OD API): image/encoded, image/format, image/height, image/width,
// image/filename, image/source_id, image/object/bbox/{xmin,xmax,ymin,ymax} (floats normalised to the
// image size, origin top-left), image/object/class/text, image/object/class/label (int64, 1-based).
// ctdet extensions (ignored by TF tooling): image/patient_id, image/study_id, image/series_id (bytes),
// image/slice_position (float). They are written only when non-empty / non-zero.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "io/annotations.h"
#include "io/crc32c.h"

namespace ctdet {


// One framed record (header + data + footer) as bytes.
std::string frame_tfrecord(const std::string& data);

// Writes records to "<path>.tmp.<pid>" and renames to <path> on close(). Destroying an unclosed writer
// removes the temporary file (nothing half-written is left under the final name).
class TFRecordWriter {
 public:
  explicit TFRecordWriter(const std::string& path);
  ~TFRecordWriter();
  TFRecordWriter(const TFRecordWriter&) = delete;
  TFRecordWriter& operator=(const TFRecordWriter&) = delete;
  void write(const std::string& data);
  void close();  // flush, fsync, rename; throws ctdet::Error naming the file
  int64_t records() const { return count_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  int64_t count_ = 0;
};

// Sequential reader. next() returns false at a clean end of file; a bad CRC, a truncated header or a
// truncated record throws ctdet::Error with the file, the record index and the byte offset.
class TFRecordReader {
 public:
  explicit TFRecordReader(const std::string& path, bool check_crc = true);
  ~TFRecordReader();
  TFRecordReader(const TFRecordReader&) = delete;
  TFRecordReader& operator=(const TFRecordReader&) = delete;
  bool next(std::string* data);
  // Positions the reader at a record boundary (an offset from index_tfrecord_file); `index` numbers the
  // record in later error messages.
  void seek(uint64_t offset, int64_t index);
  int64_t index() const { return index_; }     // records read so far
  uint64_t offset() const { return offset_; }  // byte offset of the next record

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  bool check_crc_;
  int64_t index_ = 0;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;  // file size at open (UINT64_MAX for a pipe): a length field is checked against it before allocating
};

std::vector<std::string> read_tfrecord_file(const std::string& path, bool check_crc = true);

// Byte offset of every record, from the 12-byte headers only (length CRC checked, data skipped; a record
// running past the end of the file is an error naming the file, record and offset). For random access.
std::vector<uint64_t> index_tfrecord_file(const std::string& path);
// The record that starts at `offset`; `index` is its number for error messages.
std::string read_tfrecord_at(const std::string& path, uint64_t offset, int64_t index, bool check_crc = true);

// An ImageRecord with its encoded image, as one tf.train.Example holds it.
struct ExampleImage {
  ImageRecord record;   // boxes in pixels of (width, height); file = image/filename; id = image/source_id
  std::string encoded;  // JPEG/PNG bytes (may be empty)
  std::string format;   // "jpeg", "png", ...
};

// Serialises to tf.train.Example bytes. record.width/height must be > 0; box labels must lie in
// 1..class_names.size() (class/text is class_names[label-1]).
std::string encode_example(const ExampleImage& ex, const std::vector<std::string>& class_names);
// Parses tf.train.Example bytes. Labels come from image/object/class/label; when that is absent they are
// looked up from class/text in class_names. `where` names the record in error messages.
ExampleImage decode_example(const std::string& bytes, const std::vector<std::string>& class_names,
                            const std::string& where = "example");

// "<prefix>-00003-of-00010.tfrecord"
std::string shard_name(const std::string& prefix, int shard, int num_shards);

// Round-robin over num_shards TFRecordWriters named shard_name(prefix, i, n); all files are renamed
// into place by close(), none if it is destroyed unclosed.
class ShardedTFRecordWriter {
 public:
  ShardedTFRecordWriter(const std::string& prefix, int num_shards);
  void write(const std::string& data);
  void close();
  std::vector<std::string> paths() const;
  int64_t records() const { return count_; }

 private:
  std::vector<std::unique_ptr<TFRecordWriter>> shards_;
  int64_t count_ = 0;
};

}  // namespace ctdet
