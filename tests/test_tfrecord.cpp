// TFRecord framing, CRC-32C, tf.train.Example encode/decode: against known CRC vectors, a file written by
// Python (tests/fixtures/make_tfrecord_fixtures.py: python3-protobuf + its own framing), C++ round trips,
// and corrupted / truncated files.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/tfrecord.h"
#include "nn/error.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ctdet;
namespace tu = ctdet::testing;

namespace {
// Bitwise CRC-32C written independently of the table-driven one.
uint32_t crc_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0u);
  }
  return ~c;
}

std::string tmp_dir(const std::string& name) { return ctdet::testing::tmp_dir("tfrecord", name); }

using ctdet::testing::expect_error;
}  // namespace

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) B.4 test vectors and the standard check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff'), inc(32, 0), dec(32, 0);
  for (int i = 0; i < 32; ++i) inc[i] = char(i), dec[i] = char(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c(dec.data(), 32), 0x113FDB5Cu);
  // incremental == one shot, table == bitwise on random data
  auto r = tu::random_vec<float>(1000, 7);
  std::string blob(reinterpret_cast<const char*>(r.data()), r.size() * sizeof(float));
  uint32_t part = crc32c(blob.data(), 1234);
  EXPECT_EQ(crc32c(blob.data() + 1234, blob.size() - 1234, part), crc32c(blob.data(), blob.size()));
  EXPECT_EQ(crc32c(blob.data(), blob.size()), crc_bitwise(blob));
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu}) EXPECT_EQ(crc32c_unmask(crc32c_mask(c)), c);
  // mask by hand for the check value: rot = (c >> 15) | (c << 17); + 0xa282ead8
  uint32_t c = 0xE3069283u, rot = (c >> 15) | (c << 17);
  EXPECT_EQ(crc32c_mask(c), uint32_t(rot + 0xa282ead8u));
}

TEST(TFRecord, FramingMatchesPython) {
  std::string payload(32, 0);
  for (int i = 0; i < 32; ++i) payload[i] = char(i);
  std::string framed = frame_tfrecord(payload);
  std::string py = read_file(tu::fixture_path("tfrecord/frame32.bin"));
  ASSERT_EQ(framed.size(), 48u);
  EXPECT_EQ(framed, py);
}

TEST(TFRecord, ReadsPythonWrittenExamples) {
  auto want = nlohmann::json::parse(read_file(tu::fixture_path("tfrecord/python_examples.json")));
  std::vector<std::string> names = want["class_names"].get<std::vector<std::string>>();
  auto recs = read_tfrecord_file(tu::fixture_path("tfrecord/python_examples.tfrecord"));
  ASSERT_EQ(recs.size(), want["records"].size());
  double max_err = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto& w = want["records"][i];
    ExampleImage ex = decode_example(recs[i], names, str("record ", i));
    EXPECT_EQ(ex.record.file, w["filename"].get<std::string>());
    EXPECT_EQ(ex.record.id, w["source_id"].get<std::string>());
    EXPECT_EQ(ex.record.width, w["width"].get<int>());
    EXPECT_EQ(ex.record.height, w["height"].get<int>());
    EXPECT_EQ(ex.format, w["format"].get<std::string>());
    std::vector<int> enc = w["encoded"].get<std::vector<int>>();
    ASSERT_EQ(ex.encoded.size(), enc.size());
    for (size_t k = 0; k < enc.size(); ++k) EXPECT_EQ((unsigned char)ex.encoded[k], enc[k]);
    EXPECT_EQ(ex.record.patient_id, w["patient_id"].get<std::string>());
    ASSERT_EQ(ex.record.boxes.size(), w["boxes"].size());
    for (size_t b = 0; b < ex.record.boxes.size(); ++b) {
      const Box& got = ex.record.boxes[b];
      float g[4] = {got.x1, got.y1, got.x2, got.y2};
      for (int k = 0; k < 4; ++k) max_err = std::max(max_err, std::abs(double(g[k]) - w["boxes"][b][k].get<double>()));
      EXPECT_EQ(got.label, w["label"][b].get<int>());
      EXPECT_EQ(names[got.label - 1], w["text"][b].get<std::string>());
    }
  }
  std::printf("[err] python records: max box error %.3e px over %zu records\n", max_err, recs.size());
  EXPECT_LT(max_err, 1e-3);  // float32 normalised coordinates times <= 512 px
}

TEST(TFRecord, ShardedRoundTrip) {
  std::string dir = tmp_dir("roundtrip");
  std::vector<std::string> names = default_class_names();
  std::vector<ExampleImage> in;
  auto rnd = tu::random_vec<float>(400, 11, 0.0, 1.0);
  size_t ri = 0;
  for (int i = 0; i < 7; ++i) {
    ExampleImage ex;
    ex.record.file = str("img_", i, ".png");
    ex.record.id = str("id", i);
    ex.record.width = 100 + 37 * i;
    ex.record.height = 90 + 11 * i;
    ex.record.patient_id = i % 2 ? str("P", i / 2) : "";
    ex.record.series_id = i == 3 ? "1.2.840.1" : "";
    ex.record.slice_position = i == 3 ? -42.5 : 0;
    ex.encoded = std::string(size_t(10 + i * 5), char('a' + i));
    ex.format = "png";
    for (int b = 0; b < i % 4; ++b) {
      Box box;
      box.x1 = rnd[ri++] * ex.record.width * 0.5f;
      box.y1 = rnd[ri++] * ex.record.height * 0.5f;
      box.x2 = box.x1 + 1 + rnd[ri++] * ex.record.width * 0.4f;
      box.y2 = box.y1 + 1 + rnd[ri++] * ex.record.height * 0.4f;
      box.label = 1 + (b + i) % 3;
      ex.record.boxes.push_back(box);
    }
    in.push_back(ex);
  }
  ShardedTFRecordWriter w(dir + "/train", 3);
  for (auto& ex : in) w.write(encode_example(ex, names));
  // nothing visible under the final names before close()
  for (auto& p : w.paths()) EXPECT_FALSE(fs::exists(p)) << p;
  w.close();
  EXPECT_EQ(fs::path(w.paths()[1]).filename().string(), "train-00001-of-00003.tfrecord");
  double max_err = 0;
  size_t n = 0;
  for (int s = 0; s < 3; ++s) {
    auto recs = read_tfrecord_file(w.paths()[size_t(s)]);
    for (size_t k = 0; k < recs.size(); ++k) {
      const ExampleImage& e = in[size_t(s) + 3 * k];  // round robin
      ExampleImage g = decode_example(recs[k], names);
      EXPECT_EQ(g.record.file, e.record.file);
      EXPECT_EQ(g.record.id, e.record.id);
      EXPECT_EQ(g.record.width, e.record.width);
      EXPECT_EQ(g.record.height, e.record.height);
      EXPECT_EQ(g.record.patient_id, e.record.patient_id);
      EXPECT_EQ(g.record.series_id, e.record.series_id);
      EXPECT_FLOAT_EQ(float(g.record.slice_position), float(e.record.slice_position));
      EXPECT_EQ(g.encoded, e.encoded);
      EXPECT_EQ(g.format, e.format);
      ASSERT_EQ(g.record.boxes.size(), e.record.boxes.size());
      for (size_t b = 0; b < e.record.boxes.size(); ++b) {
        const Box &x = g.record.boxes[b], &y = e.record.boxes[b];
        EXPECT_EQ(x.label, y.label);
        for (auto d : {x.x1 - y.x1, x.y1 - y.y1, x.x2 - y.x2, x.y2 - y.y2}) max_err = std::max(max_err, double(std::abs(d)));
      }
      ++n;
    }
  }
  EXPECT_EQ(n, in.size());
  std::printf("[err] C++ round trip: max box error %.3e px over %zu records\n", max_err, n);
  EXPECT_LT(max_err, 1e-3);
  fs::remove_all(dir);
}

TEST(TFRecord, UnclosedWriterLeavesNothing) {
  std::string dir = tmp_dir("unclosed");
  {
    TFRecordWriter w(dir + "/a.tfrecord");
    w.write("hello");
  }
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST(TFRecord, CorruptedAndTruncatedFilesAreErrors) {
  std::string dir = tmp_dir("corrupt");
  std::string good = read_file(tu::fixture_path("tfrecord/python_examples.tfrecord"));
  auto recs = read_tfrecord_file(tu::fixture_path("tfrecord/python_examples.tfrecord"));
  ASSERT_EQ(recs.size(), 3u);
  const size_t off1 = 16 + recs[0].size(), off2 = off1 + 16 + recs[1].size();

  std::string bad = good;
  bad[off1 + 12 + 5] ^= 0x01;  // a data byte of record 1
  write_file_atomic(dir + "/data.tfrecord", bad);
  std::string e = expect_error([&] { read_tfrecord_file(dir + "/data.tfrecord"); });
  EXPECT_NE(e.find("record 1"), std::string::npos);
  EXPECT_NE(e.find(str("byte ", off1)), std::string::npos);
  EXPECT_NE(e.find("data CRC"), std::string::npos);
  EXPECT_NE(e.find("data.tfrecord"), std::string::npos);
  EXPECT_EQ(read_tfrecord_file(dir + "/data.tfrecord", /*check_crc=*/false).size(), 3u);

  bad = good;
  bad[off2 + 2] ^= 0x40;  // length of record 2
  write_file_atomic(dir + "/len.tfrecord", bad);
  e = expect_error([&] { read_tfrecord_file(dir + "/len.tfrecord"); });
  EXPECT_NE(e.find("record 2"), std::string::npos);
  EXPECT_NE(e.find("length CRC"), std::string::npos);

  write_file_atomic(dir + "/trunc.tfrecord", good.substr(0, off2 + 12 + 3));
  e = expect_error([&] { read_tfrecord_file(dir + "/trunc.tfrecord"); });
  EXPECT_NE(e.find("record 2"), std::string::npos);
  EXPECT_NE(e.find("truncated data"), std::string::npos);

  write_file_atomic(dir + "/trunc_head.tfrecord", good.substr(0, off1 + 5));
  e = expect_error([&] { read_tfrecord_file(dir + "/trunc_head.tfrecord"); });
  EXPECT_NE(e.find("record 1"), std::string::npos);
  EXPECT_NE(e.find("truncated header"), std::string::npos);

  write_file_atomic(dir + "/trunc_foot.tfrecord", good.substr(0, off1 - 2));
  e = expect_error([&] { read_tfrecord_file(dir + "/trunc_foot.tfrecord"); });
  EXPECT_NE(e.find("record 0"), std::string::npos);
  fs::remove_all(dir);
}

TEST(TFRecord, ExampleErrors) {
  std::vector<std::string> names = default_class_names();
  ExampleImage ex;
  ex.record.id = "x";
  ex.record.width = 10;
  ex.record.height = 10;
  Box b;
  b.x2 = b.y2 = 5;
  b.label = 4;
  ex.record.boxes.push_back(b);
  std::string e = expect_error([&] { encode_example(ex, names); });
  EXPECT_NE(e.find("label 4"), std::string::npos);
  ex.record.boxes[0].label = 2;
  std::string bytes = encode_example(ex, names);
  // a label map in which class 2 has another name: text/label disagreement is reported
  e = expect_error([&] { decode_example(bytes, {"GGO", "XX", "GGO+CD"}, "rec 9"); });
  EXPECT_NE(e.find("rec 9"), std::string::npos);
  e = expect_error([&] { decode_example("\xff\xff\xff", names, "rec 3"); });
  EXPECT_NE(e.find("rec 3"), std::string::npos);
  ex.record.width = 0;
  expect_error([&] { encode_example(ex, names); });
}
