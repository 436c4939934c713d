#include <cstdio>
#include <fstream>

#include "io/npy.h"
#include "nn/error.h"
#include "test_util.h"

using namespace ctdet;

TEST(Npy, RoundTripF32) {
  std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  std::string p = std::string(CTDET_BINARY_DIR) + "/npy_rt.npy";
  write_npy(p, make_npy_f32({2, 3}, v.data()));
  NpyArray a = read_npy(p);
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.as<float>(), v);
}

TEST(Npy, TruncatedFileNamesThePath) {
  std::vector<float> v(100, 1.f);
  std::string p = std::string(CTDET_BINARY_DIR) + "/npy_trunc.npy";
  write_npy(p, make_npy_f32({100}, v.data()));
  std::string data;
  { std::ifstream f(p, std::ios::binary); data.assign(std::istreambuf_iterator<char>(f), {}); }
  { std::ofstream f(p, std::ios::binary | std::ios::trunc); f.write(data.data(), data.size() - 10); }
  try {
    read_npy(p);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("npy_trunc.npy"), std::string::npos) << m;
    EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  }
}

TEST(Npy, BadMagic) {
  std::string p = std::string(CTDET_BINARY_DIR) + "/npy_bad.npy";
  { std::ofstream f(p); f << "hello world, not numpy"; }
  EXPECT_THROW(read_npy(p), Error);
}
