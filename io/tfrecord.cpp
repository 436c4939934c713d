#include "io/tfrecord.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "io/proto/example.pb.h"
#include "nn/error.h"

namespace ctdet {

// ---- CRC-32C ---------------------------------------------------------------------------------------
namespace {
void put_le(char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = char((v >> (8 * i)) & 0xff);
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace


std::string frame_tfrecord(const std::string& data) {
  std::string out(12 + data.size() + 4, '\0');
  put_le(&out[0], uint64_t(data.size()), 8);
  put_le(&out[8], crc32c_mask(crc32c(out.data(), 8)), 4);
  std::memcpy(&out[12], data.data(), data.size());
  put_le(&out[12 + data.size()], crc32c_mask(crc32c(data.data(), data.size())), 4);
  return out;
}

// ---- writer ----------------------------------------------------------------------------------------
TFRecordWriter::TFRecordWriter(const std::string& path)
    : path_(path), tmp_(path + ".tmp." + std::to_string(::getpid())) {
  f_ = std::fopen(tmp_.c_str(), "wb");
  CTDET_CHECK(f_ != nullptr, "TFRecordWriter: cannot create '", tmp_, "': ", std::strerror(errno));
}

TFRecordWriter::~TFRecordWriter() {
  if (f_) {
    std::fclose(f_);
    ::unlink(tmp_.c_str());
  }
}

void TFRecordWriter::write(const std::string& data) {
  CTDET_CHECK(f_ != nullptr, "TFRecordWriter: write to closed file '", path_, "'");
  std::string rec = frame_tfrecord(data);
  CTDET_CHECK(std::fwrite(rec.data(), 1, rec.size(), f_) == rec.size(), "TFRecordWriter: write to '", tmp_,
              "' failed at record ", count_, ": ", std::strerror(errno));
  ++count_;
}

void TFRecordWriter::close() {
  if (!f_) return;
  std::FILE* f = f_;
  f_ = nullptr;
  bool ok = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int e = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    ::unlink(tmp_.c_str());
    CTDET_FAIL("TFRecordWriter: flushing '", tmp_, "' failed: ", std::strerror(e));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    e = errno;
    ::unlink(tmp_.c_str());
    CTDET_FAIL("TFRecordWriter: renaming '", tmp_, "' to '", path_, "' failed: ", std::strerror(e));
  }
}

// ---- reader ----------------------------------------------------------------------------------------
TFRecordReader::TFRecordReader(const std::string& path, bool check_crc) : path_(path), check_crc_(check_crc) {
  f_ = std::fopen(path.c_str(), "rb");
  CTDET_CHECK(f_ != nullptr, "TFRecordReader: cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  size_ = (::fstat(::fileno(f_), &st) == 0 && S_ISREG(st.st_mode)) ? uint64_t(st.st_size) : UINT64_MAX;
}

TFRecordReader::~TFRecordReader() {
  if (f_) std::fclose(f_);
}

bool TFRecordReader::next(std::string* data) {
  unsigned char head[12];
  size_t got = std::fread(head, 1, 12, f_);
  if (got == 0 && std::feof(f_)) return false;
  CTDET_CHECK(got == 12, "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
              ": truncated header (", got, " of 12 bytes)");
  uint64_t len = get_le(head, 8);
  uint32_t len_crc = uint32_t(get_le(head + 8, 4));
  if (check_crc_) {
    uint32_t want = crc32c_mask(crc32c(head, 8));
    CTDET_CHECK(len_crc == want, "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
                ": length CRC mismatch (stored 0x", std::hex, len_crc, ", computed 0x", want, ")");
  }
  CTDET_CHECK(len < (uint64_t(1) << 40), "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
              ": implausible length ", len);
  // A corrupt length (possible without CRC checks) must not allocate more than the file holds.
  const uint64_t left = size_ > offset_ + 12 ? size_ - offset_ - 12 : 0;
  CTDET_CHECK(len <= left, "TFRecord '", path_, "': record ", index_, " at byte ", offset_, ": truncated data (",
              "length ", len, " but only ", left, " bytes left in the file)");
  data->resize(size_t(len));
  size_t got_data = len ? std::fread(&(*data)[0], 1, size_t(len), f_) : 0;
  CTDET_CHECK(got_data == len, "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
              ": truncated data (", got_data, " of ", len, " bytes)");
  unsigned char foot[4];
  size_t got_foot = std::fread(foot, 1, 4, f_);
  CTDET_CHECK(got_foot == 4, "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
              ": truncated data CRC (", got_foot, " of 4 bytes)");
  if (check_crc_) {
    uint32_t stored = uint32_t(get_le(foot, 4));
    uint32_t want = crc32c_mask(crc32c(data->data(), data->size()));
    CTDET_CHECK(stored == want, "TFRecord '", path_, "': record ", index_, " at byte ", offset_,
                ": data CRC mismatch (stored 0x", std::hex, stored, ", computed 0x", want, ")");
  }
  offset_ += 16 + len;
  ++index_;
  return true;
}

void TFRecordReader::seek(uint64_t offset, int64_t index) {
  CTDET_CHECK(offset <= uint64_t(INT64_MAX) && std::fseek(f_, long(offset), SEEK_SET) == 0, "TFRecord '", path_,
              "': cannot seek to byte ", offset, ": ", std::strerror(errno));
  offset_ = offset;
  index_ = index;
}

std::vector<uint64_t> index_tfrecord_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CTDET_CHECK(f != nullptr, "TFRecord: cannot open '", path, "': ", std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, &std::fclose);
  CTDET_CHECK(std::fseek(f, 0, SEEK_END) == 0, "TFRecord '", path, "': cannot seek: ", std::strerror(errno));
  const long size_l = std::ftell(f);
  CTDET_CHECK(size_l >= 0, "TFRecord '", path, "': cannot tell its size");
  const uint64_t size = uint64_t(size_l);
  std::vector<uint64_t> offsets;
  uint64_t off = 0;
  while (off < size) {
    CTDET_CHECK(std::fseek(f, long(off), SEEK_SET) == 0, "TFRecord '", path, "': cannot seek to ", off);
    unsigned char head[12];
    size_t got = std::fread(head, 1, 12, f);
    CTDET_CHECK(got == 12, "TFRecord '", path, "': record ", offsets.size(), " at byte ", off,
                ": truncated header (", got, " of 12 bytes)");
    const uint64_t len = get_le(head, 8);
    const uint32_t stored = uint32_t(get_le(head + 8, 4)), want = crc32c_mask(crc32c(head, 8));
    CTDET_CHECK(stored == want, "TFRecord '", path, "': record ", offsets.size(), " at byte ", off,
                ": length CRC mismatch (stored 0x", std::hex, stored, ", computed 0x", want, ")");
    CTDET_CHECK(len <= size - off - 12 && size - off - 12 - len >= 4, "TFRecord '", path, "': record ",
                offsets.size(), " at byte ", off, ": length ", len, " runs past the end of the file (", size,
                " bytes)");
    offsets.push_back(off);
    off += 16 + len;
  }
  return offsets;
}

std::string read_tfrecord_at(const std::string& path, uint64_t offset, int64_t index, bool check_crc) {
  TFRecordReader r(path, check_crc);
  r.seek(offset, index);
  std::string data;
  CTDET_CHECK(r.next(&data), "TFRecord '", path, "': no record ", index, " at byte ", offset, " (end of file)");
  return data;
}

std::vector<std::string> read_tfrecord_file(const std::string& path, bool check_crc) {
  TFRecordReader r(path, check_crc);
  std::vector<std::string> out;
  std::string rec;
  while (r.next(&rec)) out.push_back(rec);
  return out;
}

// ---- tf.train.Example <-> ExampleImage -------------------------------------------------------------
namespace {
using FeatureMap = google::protobuf::Map<std::string, tfproto::Feature>;

void put_bytes(FeatureMap& m, const std::string& key, const std::vector<std::string>& v) {
  auto* l = m[key].mutable_bytes_list();
  for (auto& s : v) l->add_value(s);
}
void put_floats(FeatureMap& m, const std::string& key, const std::vector<float>& v) {
  auto* l = m[key].mutable_float_list();
  for (float x : v) l->add_value(x);
}
void put_ints(FeatureMap& m, const std::string& key, const std::vector<int64_t>& v) {
  auto* l = m[key].mutable_int64_list();
  for (int64_t x : v) l->add_value(x);
}

const tfproto::Feature* find(const FeatureMap& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}
// Typed getters: a missing key gives an empty list; a key of the wrong kind is an error.
std::vector<std::string> get_bytes(const FeatureMap& m, const std::string& key, const std::string& where) {
  const tfproto::Feature* f = find(m, key);
  if (!f || f->kind_case() == tfproto::Feature::KIND_NOT_SET) return {};
  CTDET_CHECK(f->has_bytes_list(), where, ": feature '", key, "' is not a bytes_list");
  return {f->bytes_list().value().begin(), f->bytes_list().value().end()};
}
std::vector<float> get_floats(const FeatureMap& m, const std::string& key, const std::string& where) {
  const tfproto::Feature* f = find(m, key);
  if (!f || f->kind_case() == tfproto::Feature::KIND_NOT_SET) return {};
  CTDET_CHECK(f->has_float_list(), where, ": feature '", key, "' is not a float_list");
  return {f->float_list().value().begin(), f->float_list().value().end()};
}
std::vector<int64_t> get_ints(const FeatureMap& m, const std::string& key, const std::string& where) {
  const tfproto::Feature* f = find(m, key);
  if (!f || f->kind_case() == tfproto::Feature::KIND_NOT_SET) return {};
  CTDET_CHECK(f->has_int64_list(), where, ": feature '", key, "' is not an int64_list");
  return {f->int64_list().value().begin(), f->int64_list().value().end()};
}
std::string get_one_bytes(const FeatureMap& m, const std::string& key, const std::string& where) {
  auto v = get_bytes(m, key, where);
  CTDET_CHECK(v.size() <= 1, where, ": feature '", key, "' has ", v.size(), " values, expected one");
  return v.empty() ? std::string() : v[0];
}
}  // namespace

std::string encode_example(const ExampleImage& ex, const std::vector<std::string>& class_names) {
  const ImageRecord& r = ex.record;
  CTDET_CHECK(r.width > 0 && r.height > 0, "encode_example: image '", r.id, "' has size ", r.width, "x",
              r.height, "; the size must be known");
  tfproto::Example e;
  FeatureMap& m = *e.mutable_features()->mutable_feature();
  put_ints(m, "image/height", {r.height});
  put_ints(m, "image/width", {r.width});
  put_bytes(m, "image/filename", {r.file});
  put_bytes(m, "image/source_id", {r.id.empty() ? r.file : r.id});
  put_bytes(m, "image/encoded", {ex.encoded});
  put_bytes(m, "image/format", {ex.format});
  std::vector<float> xmin, xmax, ymin, ymax;
  std::vector<std::string> text;
  std::vector<int64_t> label;
  for (size_t i = 0; i < r.boxes.size(); ++i) {
    const Box& b = r.boxes[i];
    CTDET_CHECK(b.label >= 1 && size_t(b.label) <= class_names.size(), "encode_example: image '", r.id,
                "' box ", i, " has label ", b.label, "; the label map has ", class_names.size(), " classes");
    xmin.push_back(b.x1 / float(r.width));
    xmax.push_back(b.x2 / float(r.width));
    ymin.push_back(b.y1 / float(r.height));
    ymax.push_back(b.y2 / float(r.height));
    text.push_back(class_names[size_t(b.label - 1)]);
    label.push_back(b.label);
  }
  // Negative images still carry the (empty) object keys, as TF OD's dataset tools write them.
  put_floats(m, "image/object/bbox/xmin", xmin);
  put_floats(m, "image/object/bbox/xmax", xmax);
  put_floats(m, "image/object/bbox/ymin", ymin);
  put_floats(m, "image/object/bbox/ymax", ymax);
  put_bytes(m, "image/object/class/text", text);
  put_ints(m, "image/object/class/label", label);
  if (!r.patient_id.empty()) put_bytes(m, "image/patient_id", {r.patient_id});
  if (!r.study_id.empty()) put_bytes(m, "image/study_id", {r.study_id});
  if (!r.series_id.empty()) put_bytes(m, "image/series_id", {r.series_id});
  if (r.slice_position != 0) put_floats(m, "image/slice_position", {float(r.slice_position)});
  // Deterministic serialisation sorts the map keys: the same record always gives the same bytes
  // (plain SerializeToString writes map entries in hash order, which may change between runs).
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    CTDET_CHECK(e.SerializeToCodedStream(&cos) && !cos.HadError(), "encode_example: serialising image '", r.id,
                "' failed");
  }
  return out;
}

ExampleImage decode_example(const std::string& bytes, const std::vector<std::string>& class_names,
                            const std::string& where) {
  tfproto::Example e;
  CTDET_CHECK(e.ParseFromString(bytes), where, ": not a valid tf.train.Example (", bytes.size(), " bytes)");
  const FeatureMap& m = e.features().feature();
  ExampleImage ex;
  ImageRecord& r = ex.record;
  auto h = get_ints(m, "image/height", where), w = get_ints(m, "image/width", where);
  CTDET_CHECK(h.size() == 1 && w.size() == 1, where, ": image/height and image/width must hold one value each (",
              h.size(), ", ", w.size(), ")");
  r.height = int(h[0]);
  r.width = int(w[0]);
  CTDET_CHECK(r.width > 0 && r.height > 0, where, ": bad image size ", r.width, "x", r.height);
  r.file = get_one_bytes(m, "image/filename", where);
  r.id = get_one_bytes(m, "image/source_id", where);
  if (r.id.empty()) r.id = r.file;
  ex.encoded = get_one_bytes(m, "image/encoded", where);
  ex.format = get_one_bytes(m, "image/format", where);
  r.patient_id = get_one_bytes(m, "image/patient_id", where);
  r.study_id = get_one_bytes(m, "image/study_id", where);
  r.series_id = get_one_bytes(m, "image/series_id", where);
  auto sp = get_floats(m, "image/slice_position", where);
  if (!sp.empty()) r.slice_position = sp[0];

  auto xmin = get_floats(m, "image/object/bbox/xmin", where), xmax = get_floats(m, "image/object/bbox/xmax", where);
  auto ymin = get_floats(m, "image/object/bbox/ymin", where), ymax = get_floats(m, "image/object/bbox/ymax", where);
  auto text = get_bytes(m, "image/object/class/text", where);
  auto label = get_ints(m, "image/object/class/label", where);
  size_t n = xmin.size();
  CTDET_CHECK(xmax.size() == n && ymin.size() == n && ymax.size() == n, where,
              ": bbox lists differ in length (xmin ", xmin.size(), ", xmax ", xmax.size(), ", ymin ", ymin.size(),
              ", ymax ", ymax.size(), ")");
  CTDET_CHECK(label.size() == n || (label.empty() && text.size() == n), where, ": ", n, " boxes but ",
              label.size(), " class labels and ", text.size(), " class texts");
  for (size_t i = 0; i < n; ++i) {
    Box b;
    b.x1 = xmin[i] * float(r.width);
    b.x2 = xmax[i] * float(r.width);
    b.y1 = ymin[i] * float(r.height);
    b.y2 = ymax[i] * float(r.height);
    if (!label.empty()) {
      b.label = int(label[i]);
    } else {
      for (size_t c = 0; c < class_names.size(); ++c)
        if (class_names[c] == text[i]) b.label = int(c) + 1;
      CTDET_CHECK(b.label > 0, where, ": box ", i, " has class text '", text[i], "' not in the label map");
    }
    CTDET_CHECK(b.label >= 1 && (class_names.empty() || size_t(b.label) <= class_names.size()), where, ": box ", i,
                " has class label ", b.label, " outside 1..", class_names.size());
    if (!class_names.empty() && text.size() == n)
      CTDET_CHECK(text[i] == class_names[size_t(b.label - 1)], where, ": box ", i, " has label ", b.label, " ('",
                  class_names[size_t(b.label - 1)], "' in the label map) but class text '", text[i], "'");
    r.boxes.push_back(b);
  }
  return ex;
}

// ---- shards ----------------------------------------------------------------------------------------
std::string shard_name(const std::string& prefix, int shard, int num_shards) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.tfrecord", shard, num_shards);
  return prefix + buf;
}

ShardedTFRecordWriter::ShardedTFRecordWriter(const std::string& prefix, int num_shards) {
  CTDET_CHECK(num_shards >= 1 && num_shards <= 99999, "ShardedTFRecordWriter: bad shard count ", num_shards);
  for (int i = 0; i < num_shards; ++i)
    shards_.push_back(std::make_unique<TFRecordWriter>(shard_name(prefix, i, num_shards)));
}

void ShardedTFRecordWriter::write(const std::string& data) {
  shards_[size_t(count_ % int64_t(shards_.size()))]->write(data);
  ++count_;
}

void ShardedTFRecordWriter::close() {
  for (auto& s : shards_) s->close();
}

std::vector<std::string> ShardedTFRecordWriter::paths() const {
  std::vector<std::string> p;
  for (auto& s : shards_) p.push_back(s->path());
  return p;
}

}  // namespace ctdet
