// safetensors: reading a file written by the reference Python package (tests/fixtures/
// make_safetensors_fixtures.py) against its independently written expectations, exact bytes of a tiny
// file built by hand from the format description, round trips, every validation error, and ParamStore
// save/load with all problems reported in one error.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/tfrecord.h"
#include "nn/error.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace ctdet;
namespace tu = ctdet::testing;

namespace {
std::string tmp_dir(const std::string& name) { return ctdet::testing::tmp_dir("st", name); }

using ctdet::testing::expect_error;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file from a header text and a data buffer, by hand.
std::string make_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST(SafeTensors, ReadsFileWrittenByPythonPackage) {
  const std::string path = tu::fixture_path("safetensors/small.safetensors");
  SafeTensors st = read_safetensors(path);
  nlohmann::json want = nlohmann::json::parse(read_file(tu::fixture_path("safetensors/small.json")));
  std::printf("fixture writer: %s\n", want["writer"].get<std::string>().c_str());
  EXPECT_EQ(st.metadata, (want["metadata"].get<std::map<std::string, std::string>>()));
  ASSERT_EQ(st.tensors.size(), want["tensors"].size());
  double worst = 0;
  for (auto it = want["tensors"].begin(); it != want["tensors"].end(); ++it) {
    SCOPED_TRACE(it.key());
    const StTensor& t = st.at(it.key());
    EXPECT_STREQ(st_dtype_name(t.dtype), it.value()["dtype"].get<std::string>().c_str());
    EXPECT_EQ(t.shape, it.value()["shape"].get<std::vector<int64_t>>());
    if (t.dtype == StDType::F32 || t.dtype == StDType::F64) {
      std::vector<double> ref = it.value()["values"].get<std::vector<double>>();
      std::vector<double> got = t.as<double>();
      ASSERT_EQ(got.size(), ref.size());
      auto e = tu::compare(got, ref);
      tu::print_err("safetensors python " + it.key(), e);
      worst = std::max(worst, e.max_abs);
    } else {
      std::vector<int64_t> ref = it.value()["values"].get<std::vector<int64_t>>();
      EXPECT_EQ(t.as<int64_t>(), ref);
    }
  }
  EXPECT_EQ(worst, 0.0);  // bit-exact
  EXPECT_EQ(st.at("scale").numel(), 1);
  EXPECT_TRUE(st.at("empty").data.empty());
}

TEST(SafeTensors, TinyFileBytesByHand) {
  // {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} is 54 bytes; 8 + 54 = 62 -> 2 spaces to 64.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(header.size(), 54u);
  header += "  ";
  const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};  // 1.0f, -2.0f
  std::string want = make_file(header, std::string(reinterpret_cast<const char*>(data), 8));
  std::string got = serialize_safetensors({StTensor::from<float>("a", {2}, {1.0f, -2.0f})});
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(got, want);
  // The reader accepts the hand-made file.
  SafeTensors st = parse_safetensors(want, "tiny");
  EXPECT_EQ(st.at("a").as<float>(), (std::vector<float>{1.0f, -2.0f}));
}

TEST(SafeTensors, RoundTripAlignedAndBitExact) {
  SafeTensors src = read_safetensors(tu::fixture_path("safetensors/small.safetensors"));
  std::string dir = tmp_dir("rt");
  std::string path = dir + "/out.safetensors";
  StWriteInfo info = write_safetensors(path, src.tensors, src.metadata);
  std::string bytes = read_file(path);
  EXPECT_EQ(info.bytes, bytes.size());
  EXPECT_EQ(info.crc32c, crc32c(bytes.data(), bytes.size()));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "header must be padded to 8";
  SafeTensors back = read_safetensors(path);
  EXPECT_EQ(back.metadata, src.metadata);
  ASSERT_EQ(back.tensors.size(), src.tensors.size());
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].name, src.tensors[i].name);
    EXPECT_EQ(back.tensors[i].shape, src.tensors[i].shape);
    EXPECT_EQ(back.tensors[i].data, src.tensors[i].data);  // bit-exact
  }
  // Nothing left behind by the atomic write.
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
  // A copy kept in the build tree so the Python package can be pointed at a ctdet-written file:
  //   python3 tests/fixtures/make_safetensors_fixtures.py --check <build>/test_out/ctdet_written.safetensors
  fs::create_directories(std::string(CTDET_BINARY_DIR) + "/test_out");
  write_safetensors(std::string(CTDET_BINARY_DIR) + "/test_out/ctdet_written.safetensors", src.tensors, src.metadata);
}

TEST(SafeTensors, ValidationErrorsNameFileAndTensor) {
  const std::string ok_h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  const std::string data(12, '\x01');
  parse_safetensors(make_file(ok_h, data), "ok.st");  // the baseline parses

  std::string e;
  e = expect_error([] { parse_safetensors("abc", "short.st"); });
  EXPECT_TRUE(contains(e, "short.st"));
  e = expect_error([&] { parse_safetensors(le64(1000) + ok_h + data, "hl.st"); });
  EXPECT_TRUE(contains(e, "hl.st") && contains(e, "header length 1000"));
  e = expect_error([&] { parse_safetensors(make_file(ok_h, data.substr(0, 10)), "trunc.st"); });
  EXPECT_TRUE(contains(e, "trunc.st") && contains(e, "'b'") && contains(e, "truncated"));
  e = expect_error([&] { parse_safetensors(make_file(ok_h, data + "xx"), "trail.st"); });
  EXPECT_TRUE(contains(e, "trail.st") && contains(e, "trailing"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                std::string(8, '\0')), "ovl.st");
  });
  EXPECT_TRUE(contains(e, "ovl.st") && contains(e, "overlaps") && contains(e, "'w'") && contains(e, "'b'"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')), "gap.st");
  });
  EXPECT_TRUE(contains(e, "gap.st") && contains(e, "gap") && contains(e, "'w'"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')), "f16.st");
  });
  EXPECT_TRUE(contains(e, "f16.st") && contains(e, "'h'") && contains(e, "F16"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"m":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')), "mis.st");
  });
  EXPECT_TRUE(contains(e, "mis.st") && contains(e, "'m'") && contains(e, "needs 12 bytes"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"d":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"d":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                std::string(8, '\0')), "dup.st");
  });
  EXPECT_TRUE(contains(e, "dup.st") && contains(e, "duplicate") && contains(e, "'d'"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"r":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", std::string(4, '\0')), "rev.st");
  });
  EXPECT_TRUE(contains(e, "rev.st") && contains(e, "'r'"));
  e = expect_error([&] {
    parse_safetensors(make_file(R"({"n":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')), "neg.st");
  });
  EXPECT_TRUE(contains(e, "neg.st") && contains(e, "'n'"));
  e = expect_error([&] { parse_safetensors(make_file(R"({"x": )", ""), "json.st"); });
  EXPECT_TRUE(contains(e, "json.st") && contains(e, "JSON"));
  e = expect_error([] { read_safetensors("/nonexistent/dir/w.safetensors"); });
  EXPECT_TRUE(contains(e, "/nonexistent/dir/w.safetensors"));
  // A real file truncated on disk.
  std::string dir = tmp_dir("trunc");
  std::string full = read_file(tu::fixture_path("safetensors/small.safetensors"));
  write_file_atomic(dir + "/cut.safetensors", full.substr(0, full.size() - 3));
  e = expect_error([&] { read_safetensors(dir + "/cut.safetensors"); });
  EXPECT_TRUE(contains(e, dir + "/cut.safetensors"));
  // Writer-side checks.
  e = expect_error([] { serialize_safetensors({StTensor::from<float>("a", {1}, {1}), StTensor::from<float>("a", {1}, {2})}); });
  EXPECT_TRUE(contains(e, "duplicate"));
  e = expect_error([] { StTensor::from<float>("a", {2, 2}, {1, 2, 3}); });
  fs::remove_all(dir);
}

namespace {
void make_store(ParamStore& ps) {
  ps.declare("conv.w", Shape{2, 3});
  ps.declare("conv.b", Shape{2});
  ps.declare("fc.w", Shape{4, 5});
  ps.allocate();
  int k = 1;
  for (const auto& n : ps.names()) {
    ps.set<float>(n, tu::random_vec<float>(size_t(ps.shape(n).numel()), uint64_t(k)), 0);
    ps.set<float>(n, tu::random_vec<float>(size_t(ps.shape(n).numel()), uint64_t(100 + k)), 2);
    ++k;
  }
}
}  // namespace

TEST(SafeTensors, ParamStoreRoundTripBitExact) {
  ParamStore a;
  make_store(a);
  std::vector<StTensor> ts = save_from(a, StoreSlot::Params);
  std::vector<StTensor> mom = save_from(a, StoreSlot::Momentum, "momentum/");
  ts.insert(ts.end(), mom.begin(), mom.end());
  SafeTensors file = parse_safetensors(serialize_safetensors(ts, {{"format", "test"}}), "mem");

  ParamStore b;
  b.declare("conv.w", Shape{2, 3});
  b.declare("conv.b", Shape{2});
  b.declare("fc.w", Shape{4, 5});
  b.allocate();
  LoadOptions p;
  p.ignore_prefixes = {"momentum/"};
  EXPECT_EQ(load_into(b, file, p).loaded, 3);
  LoadOptions m;
  m.which = StoreSlot::Momentum;
  m.prefix = "momentum/";
  EXPECT_EQ(load_into(b, file, m).loaded, 3);
  for (const auto& n : a.names()) {
    auto e0 = tu::compare(b.get<float>(n, 0), a.get<float>(n, 0));
    auto e2 = tu::compare(b.get<float>(n, 2), a.get<float>(n, 2));
    tu::print_err("param store round trip " + n, e0);
    EXPECT_EQ(e0.max_abs, 0.0);
    EXPECT_EQ(e2.max_abs, 0.0);
  }
  // F32 file into an F64 store converts exactly.
  ParamStore d(Device::CPU, DType::F64);
  d.declare("conv.w", Shape{2, 3});
  d.declare("conv.b", Shape{2});
  d.declare("fc.w", Shape{4, 5});
  d.allocate();
  load_into(d, file, p);
  EXPECT_EQ(tu::compare(d.get<double>("fc.w"), a.get<double>("fc.w")).max_abs, 0.0);
}

TEST(SafeTensors, LoadIntoCollectsAllProblemsAndWritesNothing) {
  ParamStore ps;
  make_store(ps);
  const std::vector<float> before = ps.get<float>("conv.w");
  std::vector<StTensor> ts = {
      StTensor::from<float>("conv.w", {2, 3}, std::vector<float>(6, 9.f)),      // fine
      StTensor::from<float>("conv.b", {3}, std::vector<float>(3, 9.f)),         // misshaped
      StTensor::from<float>("head.w", {1}, {9.f}),                              // unexpected
      StTensor::from<int32_t>("fc.w", {4, 5}, std::vector<int32_t>(20, 9)),    // wrong dtype
  };
  SafeTensors file = parse_safetensors(serialize_safetensors(ts), "bad.safetensors");
  std::string e = expect_error([&] { load_into(ps, file); });
  EXPECT_TRUE(contains(e, "bad.safetensors"));
  EXPECT_TRUE(contains(e, "3 problems"));
  EXPECT_TRUE(contains(e, "shape: 'conv.b' is (3)"));
  EXPECT_TRUE(contains(e, "unexpected: 'head.w'"));
  EXPECT_TRUE(contains(e, "dtype: 'fc.w' is I32"));
  EXPECT_EQ(ps.get<float>("conv.w"), before) << "a failed load must not write";
  EXPECT_EQ(check_load(ps, file), e);

  // Missing entries, and name_map / allow_* options.
  std::vector<StTensor> tv = {StTensor::from<float>("body.conv.weight", {2, 3}, std::vector<float>(6, 4.f)),
                              StTensor::from<float>("extra", {1}, {1.f}),
                              StTensor::from<float>("dropme", {7}, std::vector<float>(7, 0.f))};
  SafeTensors tvf = parse_safetensors(serialize_safetensors(tv), "tv.safetensors");
  LoadOptions o;
  o.name_map = {{"body.conv.weight", "conv.w"}, {"dropme", ""}};
  e = expect_error([&] { load_into(ps, tvf, o); });
  EXPECT_TRUE(contains(e, "missing: store entry 'conv.b'") && contains(e, "missing: store entry 'fc.w'") &&
              contains(e, "unexpected: 'extra'") && !contains(e, "dropme"));
  o.allow_missing = o.allow_unexpected = true;
  LoadReport r = load_into(ps, tvf, o);
  EXPECT_EQ(r.loaded, 1);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"conv.b", "fc.w"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"extra"}));
  EXPECT_EQ(ps.get<float>("conv.w"), std::vector<float>(6, 4.f));
}
