// The executor walks the schedule, resolves each value to arena + offset (parameters and their gradients
// from the ParamStore), wraps each node in an NVTX range named after it, and calls the op for the device.
// Debug mode synchronises and checks after every node so an asynchronous fault names its node; on CPU it
// also fills dead buffers with NaN so a lifetime bug in the plan shows up as NaN, not as a quiet error.
#pragma once
#include <string>
#include <vector>

#include "nn/graph.h"
#include "nn/memory.h"
#include "nn/param_store.h"
#include "nn/planner.h"

namespace ctdet {

class Executor {
 public:
  // The plan must have been made for this graph. `cuda` is required for Device::CUDA.
  Executor(const Graph& g, const MemoryPlan& plan, ParamStore& params, Device device, CudaContext* cuda = nullptr);

  Tensor value(ValueId v) const;
  Tensor value(const std::string& name) const;

  // Host -> value (any planned value, typically an Input) and value -> host.
  void set(ValueId v, const void* host, size_t bytes);
  template <typename T> void set(ValueId v, const std::vector<T>& host) {
    CTDET_CHECK(dtype_of<T>() == g_.value(v).dtype, "set ", g_.describe(v), " from ", dtype_name(dtype_of<T>()), " data");
    set(v, host.data(), host.size() * sizeof(T));
  }
  template <typename T> std::vector<T> get(ValueId v) const {
    Tensor t = value(v);
    CTDET_CHECK(t.dtype == dtype_of<T>(), "get ", g_.describe(v), " as ", dtype_name(dtype_of<T>()));
    std::vector<T> out(size_t(t.numel()));
    copy_to_host(device_, out.data(), t.data, t.bytes());
    return out;
  }

  void run() { run_nodes(0, g_.num_nodes()); }
  void run_nodes(int begin, int end);

  bool debug = false;  // synchronise + check after each node; on CPU poison dead buffers with NaN

  // Per-node timing: while `profile` is set, each run adds every node's time to node_ms (CPU: wall clock around the
  // node; CUDA: events recorded on the stream before and after each node, so the GPU time between them, read after
  // the run). profile_table() lists the top nodes and the time per op kind, averaged over profiled_runs.
  bool profile = false;
  std::vector<double> node_ms;
  int profiled_runs = 0;
  std::string profile_table(int top = 20) const;

  size_t arena_bytes() const { return arena_.size(); }
  const Graph& graph() const { return g_; }

 private:
  const Graph& g_;
  const MemoryPlan& plan_;
  ParamStore& params_;
  Device device_;
  CudaContext* cuda_;
  DeviceBuffer arena_;
  std::vector<Tensor> views_;  // per value
  std::vector<void*> events_;  // CUDA events for profiling (cudaEvent_t), created on first use
 public:
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
};

}  // namespace ctdet
