// Parallel loops for the CPU kernels that are not GEMMs (OpenBLAS threads those itself): crop_and_resize and the
// pools (the memory-bound elementwise passes gained nothing and stay serial).
//
// Fork-join on plain std::threads: the caller runs the first range, T-1 fresh threads run the others, all joined
// before returning. No pool and no spinning: OpenBLAS's own (pthread) workers spin for a while after each GEMM, and a
// runtime that also spins between regions (OpenMP's default wait policy) was measured to slow both down on a 2-core
// machine (Inception-v2 CPU inference 1.09 s with passive OpenMP waiting, 1.5-1.7 s with the default or active one).
// Starting and joining a thread costs ~35 us (2-core EPYC), so loops split only when each thread gets a few hundred
// microseconds of work (min_iterations_for).
//
// Thread count: set_cpu_kernel_threads(n) on the calling thread; otherwise CTDET_NUM_THREADS, else OMP_NUM_THREADS,
// else the machine's hardware threads. Inside a worker every nested call runs serially.
//
// Rule for callers: only split loops whose iterations write disjoint outputs and read what no other iteration
// writes, and keep every sum inside one iteration in its serial order. The result is then bit-identical to the
// serial loop for any thread count (tests/test_cpu_parallel.cpp compares the bits). An exception thrown in any range
// is rethrown on the calling thread after all ranges have finished.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace ctdet {

namespace detail {
inline int& cpu_threads_override() {
  thread_local int n = 0;  // 0: the default below; -1: inside a worker (serial)
  return n;
}
// Regions this thread has split over more than one thread (tests check that the loops they compare did split).
inline int64_t& split_regions() {
  thread_local int64_t n = 0;
  return n;
}
inline int cpu_threads_default() {
  for (const char* var : {"CTDET_NUM_THREADS", "OMP_NUM_THREADS"})
    if (const char* v = std::getenv(var)) {
      const int n = std::atoi(v);
      if (n >= 1) return n;
    }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw >= 1 ? int(hw) : 1;
}
}  // namespace detail

// Sets the thread count of the parallel_ranges calls made from this thread (n >= 1; 0 restores the default).
inline void set_cpu_kernel_threads(int n) { detail::cpu_threads_override() = n < 0 ? 0 : n; }

// Threads parallel_ranges may use from here (1 inside a worker).
inline int cpu_kernel_threads() {
  const int o = detail::cpu_threads_override();
  if (o < 0) return 1;
  return o > 0 ? o : detail::cpu_threads_default();
}

// min_per_thread for a loop whose iterations each cost about `work` elementary steps (a load, a multiply-add): enough
// iterations per thread that starting a thread (tens of microseconds) stays small against the work.
inline int64_t min_iterations_for(int64_t work) {
  constexpr int64_t kMinWorkPerThread = 1 << 18;  // ~0.2-0.3 ms; a thread start + join is ~35 us here
  return work >= kMinWorkPerThread ? 1 : kMinWorkPerThread / (work > 0 ? work : 1);
}

// Calls f(begin, end) on contiguous, disjoint ranges covering [0, n), one per thread; serially as f(0, n) when n is
// below 2 * min_per_thread or only one thread is available.
template <typename F>
void parallel_ranges(int64_t n, int64_t min_per_thread, F&& f) {
  if (n <= 0) return;
  int64_t T = cpu_kernel_threads();
  const int64_t per = min_per_thread > 0 ? min_per_thread : 1;
  if (T > n / per) T = n / per;
  if (T <= 1) {
    f(int64_t(0), n);
    return;
  }
  ++detail::split_regions();
  std::exception_ptr error;
  std::mutex error_mu;
  auto run = [&](int64_t t) {
    try {
      const int64_t b = n * t / T, e = n * (t + 1) / T;
      if (b < e) f(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(size_t(T - 1));
  int64_t started = 1;  // ranges 1..started-1 have a thread
  try {
    for (int64_t t = 1; t < T; ++t, ++started)
      workers.emplace_back([&run, t] {
        detail::cpu_threads_override() = -1;
        run(t);
      });
  } catch (const std::system_error&) {
    // No more threads to be had (resource limits): the caller runs the ranges left without one.
  }
  run(0);
  for (int64_t t = started; t < T; ++t) run(t);
  for (std::thread& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace ctdet
