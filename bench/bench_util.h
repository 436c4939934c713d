// Helpers shared by the op benchmarks: option parsing, timing statistics, the CSV row, and the peaks that
// "share_of_peak" divides by. CPU only; the CUDA timer lives in bench_ops.cpp under CTDET_WITH_CUDA.
//
// CSV (stdout, one row per case, header first):
//   op,device,shape,time_ms_median,time_ms_min,gflops_or_gbs,unit,share_of_peak
// gflops_or_gbs is computed from the MEDIAN time. unit is GFLOP/s (compute-bound ops, 1 MAC = 2 FLOP),
// GB/s (bandwidth-bound ops: the minimum bytes the op must read and write once) or Mbox/s (NMS, no peak).
// share_of_peak is gflops_or_gbs / peak (empty when no peak applies). Notes go to stderr so stdout stays CSV.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nn/error.h"
#if CTDET_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.cuh"
#endif

namespace ctdet::bench {

// ---- options -----------------------------------------------------------------------------------------
struct Options {
  std::string device = "cpu";  // cpu | cuda
  std::string filter;          // substring of "op shape"; empty runs everything
  int reps = 0;                // 0: the default for the device and mode
  int warmup = -1;             // -1: the default
  bool quick = false;
  int threads = 0;             // OpenBLAS threads on CPU; 0 leaves OpenBLAS's default
  bool list = false;           // print the case names and exit
};

inline const char* usage() {
  return "usage: bench_ops [--device cpu|cuda] [--filter SUBSTR] [--reps N] [--warmup N] [--quick] [--threads N] "
         "[--list]\n"
         "  CSV rows on stdout: op,device,shape,time_ms_median,time_ms_min,gflops_or_gbs,unit,share_of_peak\n"
         "  notes (peaks and how they were obtained, thread counts) on stderr\n";
}

// Throws ctdet::Error naming the offending argument.
inline Options parse_options(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, const std::string& flag) -> std::string {
    CTDET_CHECK(i + 1 < argc, "bench_ops: ", flag, " needs a value");
    return argv[++i];
  };
  auto as_int = [](const std::string& flag, const std::string& v, int lo) {
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    CTDET_CHECK(!v.empty() && *end == '\0' && x >= lo && x <= 1000000, "bench_ops: ", flag,
                " expects an integer >= ", lo, ", got '", v, "'");
    return int(x);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device") {
      o.device = value(i, a);
      CTDET_CHECK(o.device == "cpu" || o.device == "cuda", "bench_ops: --device expects cpu or cuda, got '",
                  o.device, "'");
    } else if (a == "--filter") {
      o.filter = value(i, a);
    } else if (a == "--reps") {
      o.reps = as_int(a, value(i, a), 1);
    } else if (a == "--warmup") {
      o.warmup = as_int(a, value(i, a), 0);
    } else if (a == "--threads") {
      o.threads = as_int(a, value(i, a), 1);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(usage(), stdout);
      std::exit(0);
    } else {
      CTDET_FAIL("bench_ops: unknown argument '", a, "'\n", usage());
    }
  }
  return o;
}

// ---- statistics --------------------------------------------------------------------------------------
struct Stats {
  double median_ms = 0, min_ms = 0;
  int reps = 0;
};

inline Stats stats_of(std::vector<double> ms) {
  CTDET_CHECK(!ms.empty(), "bench: no timings");
  std::sort(ms.begin(), ms.end());
  Stats s;
  const size_t n = ms.size();
  s.median_ms = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  s.min_ms = ms.front();
  s.reps = int(n);
  return s;
}

// Bytes to write between reps so the next rep starts with cold caches: max(64 MiB, 2 x the last-level cache
// size from sysfs). The torch peer flushes the same way.
inline size_t cpu_flush_bytes() {
  size_t llc = 0;
  for (int idx = 3; idx >= 2 && llc == 0; --idx) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/size");
    std::string v;
    if (f >> v && !v.empty()) {
      llc = size_t(std::atoll(v.c_str()));
      if (v.back() == 'K') llc <<= 10;
      if (v.back() == 'M') llc <<= 20;
    }
  }
  return std::max(size_t(64) << 20, 2 * llc);
}

// warm-up calls, then reps timed calls with a steady clock (host-synchronous work only). flush (untimed, may be
// null) runs before every timed rep.
inline Stats time_host(const std::function<void()>& fn, int warmup, int reps,
                       const std::function<void()>& flush = nullptr) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  ms.reserve(reps);
  for (int i = 0; i < reps; ++i) {
    if (flush) flush();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return stats_of(std::move(ms));
}

// ---- work and the CSV row ----------------------------------------------------------------------------
enum class Work { Flops, Bytes, Boxes };

inline const char* unit_of(Work w) {
  return w == Work::Flops ? "GFLOP/s" : w == Work::Bytes ? "GB/s" : "Mbox/s";
}

inline void print_header() {
  std::printf("op,device,shape,time_ms_median,time_ms_min,gflops_or_gbs,unit,share_of_peak\n");
  std::fflush(stdout);
}

// rate = amount / median time in G (FLOP or byte) per second, or M boxes per second. peak <= 0: no share.
inline void print_row(const std::string& op, const std::string& device, const std::string& shape, const Stats& s,
                      Work w, double amount, double peak) {
  CTDET_CHECK(shape.find(',') == std::string::npos, "bench: shape string has a comma: ", shape);
  const double sec = s.median_ms * 1e-3;
  const double rate = sec > 0 ? amount / sec / (w == Work::Boxes ? 1e6 : 1e9) : 0.0;
  char share[32] = "";
  if (peak > 0 && w != Work::Boxes) std::snprintf(share, sizeof share, "%.3f", rate / peak);
  std::printf("%s,%s,%s,%.4f,%.4f,%.2f,%s,%s\n", op.c_str(), device.c_str(), shape.c_str(), s.median_ms, s.min_ms,
              rate, unit_of(w), share);
  std::fflush(stdout);
}

// ---- CPU peaks ---------------------------------------------------------------------------------------
struct Peak {
  double value = 0;  // GFLOP/s or GB/s; 0 = unknown
  std::string how;   // one line saying where the number comes from
};

// Nominal FP32 peak: cores x flop/cycle x clock, cores = min(threads, hardware threads) (threads <= 0: all). flop/cycle = 32 when the CPU has AVX2 and FMA (two 256-bit
// FMA pipes x 8 lanes x 2 FLOP; Zen 4's AVX-512 also runs as 2 x 256-bit, so the same 32), else 0 (unknown).
// The clock is the first "cpu MHz" in /proc/cpuinfo (the nominal or current clock under a VM: no turbo).
inline Peak cpu_fp32_peak(int threads) {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown";
  double mhz = 0;
  bool avx2 = false, fma = false;
  while (std::getline(f, line)) {
    auto val = [&]() { return line.substr(line.find(':') + 1); };
    if (mhz == 0 && line.rfind("cpu MHz", 0) == 0) mhz = std::atof(val().c_str());
    if (model == "unknown" && line.rfind("model name", 0) == 0) model = val();
    if (line.rfind("flags", 0) == 0) {
      avx2 = avx2 || line.find(" avx2") != std::string::npos;
      fma = fma || line.find(" fma") != std::string::npos;
    }
  }
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (threads > 0) cores = std::min(cores, unsigned(threads));
  Peak p;
  const double fpc = (avx2 && fma) ? 32.0 : 0.0;
  p.value = cores * fpc * mhz * 1e-3;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "CPU FP32 nominal peak %.1f GFLOP/s = %u cores x %.0f FLOP/cycle (AVX2 FMA: 2 pipes x 8 lanes x 2) x "
                "%.0f MHz (/proc/cpuinfo, model%s)",
                p.value, cores, fpc, mhz, model.c_str());
  p.how = buf;
  return p;
}

#if CTDET_WITH_CUDA
// FP32 lanes per SM by compute capability (CUDA C Programming Guide, "arithmetic instructions" throughput
// table: FP32 results per clock per SM). 0 = unknown architecture (no share of peak printed).
inline int fp32_lanes_per_sm(int major, int minor) {
  if (major == 5) return 128;
  if (major == 6) return minor == 0 ? 64 : 128;
  if (major == 7) return 64;
  if (major == 8) return minor == 0 ? 64 : 128;
  if (major == 9 || major == 10 || major == 11 || major == 12) return 128;
  return 0;
}

// Nominal FP32 (non-tensor-core) peak of a device: SMs x FP32 lanes per SM x 2 FLOP per FMA x boost clock.
inline Peak gpu_fp32_peak(int device) {
  cudaDeviceProp prop{};
  CTDET_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int sms = 0, clock_khz = 0;
  CTDET_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  CTDET_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  const int lanes = fp32_lanes_per_sm(prop.major, prop.minor);
  Peak p;
  p.value = double(sms) * lanes * 2.0 * clock_khz * 1e-6;  // GFLOP/s
  p.how = str("GPU FP32 peak ", p.value, " GFLOP/s = ", sms, " SMs x ", lanes, " FP32 lanes/SM (sm_", prop.major,
              prop.minor, ") x 2 FLOP/FMA x ", clock_khz / 1000, " MHz (cudaDevAttrClockRate, boost) on ", prop.name);
  return p;
}
#endif

// Measured single-thread bandwidth ceiling on 64 MiB arrays (read + write counted), best of 5 after one untimed
// pass: the larger of std::memcpy and a STREAM-"scale"-like loop b[i] = s * a[i]. The element-wise ops and pooling
// run on one thread, so this is what they can reach from DRAM. Ops whose data stays in cache can exceed it.
inline Peak cpu_copy_ceiling() {
  const size_t n = size_t(16) << 20;  // floats
  std::vector<float> a(n, 1.f), b(n, 0.f);
  double best = 1e30;
  for (int i = 0; i < 12; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (i % 2 == 0) {
      std::memcpy(b.data(), a.data(), n * sizeof(float));
    } else {
      const float s = 1.0001f;
      float* __restrict bp = b.data();
      const float* __restrict ap = a.data();
      for (size_t k = 0; k < n; ++k) bp[k] = s * ap[k];
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 2) best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    a[size_t(i)] = b[n - 1 - size_t(i)];  // keep the copies observable
  }
  Peak p;
  p.value = 2.0 * double(n) * sizeof(float) / best * 1e-9;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "CPU bandwidth ceiling %.1f GB/s = MEASURED single thread, best of memcpy / scale loop over 64 MiB "
                "(read+write)",
                p.value);
  p.how = buf;
  return p;
}

// ---- data ----------------------------------------------------------------------------------------------
inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// A counter-based hash in uint32 arithmetic, written the same way in bench/peers/torch_ops.py (numpy uint32),
// so both sides benchmark NMS on the SAME boxes and scores. Returns a value in [0, 1).
inline float hash_unit(uint32_t i, uint32_t stream) {
  uint32_t h = i * 2654435761u + stream * 40503u + 1u;
  h ^= h >> 16;
  h *= 2246822519u;
  h ^= h >> 13;
  h *= 3266489917u;
  h ^= h >> 16;
  return float(h >> 8) * (1.0f / 16777216.0f);
}

// n boxes x1,y1,x2,y2 on a 1000 x 600 image: centre uniform, sides 16..256 px; scores uniform [0,1).
inline void nms_inputs(int64_t n, std::vector<float>* boxes, std::vector<float>* scores) {
  boxes->resize(size_t(n) * 4);
  scores->resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = uint32_t(i);
    const float cx = 1000.f * hash_unit(u, 1), cy = 600.f * hash_unit(u, 2);
    const float w = 16.f + 240.f * hash_unit(u, 3), h = 16.f + 240.f * hash_unit(u, 4);
    float* b = boxes->data() + 4 * i;
    b[0] = cx - 0.5f * w;
    b[1] = cy - 0.5f * h;
    b[2] = cx + 0.5f * w;
    b[3] = cy + 0.5f * h;
    (*scores)[size_t(i)] = hash_unit(u, 5);
  }
}

// R normalised crop boxes [y1, x1, y2, x2] (TF crop_and_resize order), sides 0.05..0.25 of the map, all inside
// [0,1]; the same hash as nms_inputs, so the torch peer crops the same regions (converted to pixel x1,y1,x2,y2).
inline std::vector<float> crop_boxes(int64_t R) {
  std::vector<float> b(size_t(R) * 4);
  for (int64_t i = 0; i < R; ++i) {
    const uint32_t u = uint32_t(i);
    const float h = 0.05f + 0.2f * hash_unit(u, 6), w = 0.05f + 0.2f * hash_unit(u, 7);
    const float y1 = (1.f - h) * hash_unit(u, 8), x1 = (1.f - w) * hash_unit(u, 9);
    b[4 * i + 0] = y1;
    b[4 * i + 1] = x1;
    b[4 * i + 2] = y1 + h;
    b[4 * i + 3] = x1 + w;
  }
  return b;
}

}  // namespace ctdet::bench
