// Helpers shared by the tests: GPU skipping, error measures that are printed, seeded random fills.
#pragma once
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "nn/device.h"
#include "nn/error.h"

// Skips the current test with a clear reason when no CUDA device can be used.
#define CTDET_REQUIRE_GPU()                                                       \
  do {                                                                            \
    if (!::ctdet::cuda_device_available())                                        \
      GTEST_SKIP() << "no CUDA device: " << ::ctdet::cuda_unavailable_reason(); \
  } while (0)

namespace ctdet::testing {

struct ErrStats {
  double max_abs = 0, max_rel = 0;
  size_t worst = 0;
};

// max |a-b| and max |a-b| / max(|b|, floor) over two arrays; b is the reference.
template <typename A, typename B>
ErrStats compare(const A* a, const B* b, size_t n, double floor = 1e-6) {
  ErrStats s;
  for (size_t i = 0; i < n; ++i) {
    double d = std::abs(double(a[i]) - double(b[i]));
    double r = d / std::max(std::abs(double(b[i])), floor);
    if (!(d <= s.max_abs)) { s.max_abs = d; s.worst = i; }
    if (!(r <= s.max_rel)) s.max_rel = r;
  }
  return s;
}

template <typename A, typename B>
ErrStats compare(const std::vector<A>& a, const std::vector<B>& b, double floor = 1e-6) {
  EXPECT_EQ(a.size(), b.size());
  return compare(a.data(), b.data(), std::min(a.size(), b.size()), floor);
}

inline void print_err(const std::string& what, const ErrStats& s) {
  std::printf("[err] %-48s max_abs=%.3e max_rel=%.3e (at %zu)\n", what.c_str(), s.max_abs, s.max_rel, s.worst);
}

template <typename T>
std::vector<T> random_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

// A fresh, empty directory <system temp>/ctdet_<prefix>_<name>_<pid> (removed first if a crashed run left it).
inline std::string tmp_dir(const std::string& prefix, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path p = fs::temp_directory_path() / ("ctdet_" + prefix + "_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Runs fn, which must throw ctdet::Error: prints the message (so the log shows what users would read) and returns
// it; records a test failure and returns "" when nothing is thrown.
inline std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    std::printf("[expected error] %s\n", e.what());
    return e.what();
  }
  ADD_FAILURE() << "no ctdet::Error thrown";
  return "";
}

inline std::string source_dir() { return CTDET_SOURCE_DIR; }
inline std::string fixture_path(const std::string& name) { return source_dir() + "/tests/fixtures/" + name; }

}  // namespace ctdet::testing
