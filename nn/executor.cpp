#include "nn/executor.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include "nn/op_registry.h"
#if CTDET_WITH_CUDA
#include "kernels/common/cuda_check.cuh"
#include "nn/cuda_context.h"
#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define CTDET_HAVE_NVTX 1
#endif
#endif

namespace ctdet {

Executor::Executor(const Graph& g, const MemoryPlan& plan, ParamStore& params, Device device, CudaContext* cuda)
    : g_(g), plan_(plan), params_(params), device_(device), cuda_(cuda) {
  CTDET_CHECK(plan.value_offset.size() == size_t(g.num_values()) && plan.node_ws_offset.size() == size_t(g.num_nodes()),
              "executor: the memory plan was made for a different graph (", plan.value_offset.size(), " values, ",
              plan.node_ws_offset.size(), " nodes; graph has ", g.num_values(), " and ", g.num_nodes(), ")");
  if (device == Device::CUDA) {
    CTDET_CHECK(cuda_built(), "executor: CUDA requested but ctdet was built without CUDA");
    CTDET_CHECK(cuda != nullptr, "executor: Device::CUDA needs a CudaContext");
  }
  CTDET_CHECK(params.device() == device, "executor: parameters live on ", device_name(params.device()),
              " but the graph runs on ", device_name(device));
  CTDET_CHECK(params.allocated() || g.param_bytes() == 0, "executor: the parameter store is not allocated");
  arena_.allocate(device, plan.arena_bytes);
  views_.resize(size_t(g.num_values()));
  for (ValueId v = 0; v < g.num_values(); ++v) {
    const Value& x = g.value(v);
    Tensor t;
    t.shape = x.shape;
    t.dtype = x.dtype;
    t.device = device;
    if (x.kind == ValueKind::Param || x.kind == ValueKind::ParamGradient) {
      std::string pname = x.kind == ValueKind::Param ? x.name : x.name.substr(5);  // strip "grad/"
      CTDET_CHECK(params.has(pname), "executor: parameter '", pname, "' is not in the parameter store");
      Tensor p = x.kind == ValueKind::Param ? params.param(pname) : params.grad(pname);
      CTDET_CHECK(p.shape == x.shape && p.dtype == x.dtype, "executor: parameter '", pname, "' is ", p.shape.str(),
                  " ", dtype_name(p.dtype), " in the store but ", x.shape.str(), " ", dtype_name(x.dtype), " in the graph");
      t.data = p.data;
    } else if (plan.value_offset[size_t(v)] >= 0) {
      t.data = static_cast<char*>(arena_.data()) + plan.value_offset[size_t(v)];
    }
    views_[size_t(v)] = t;
  }
}

Tensor Executor::value(ValueId v) const {
  CTDET_CHECK(v >= 0 && v < g_.num_values(), "executor: no value with id ", v);
  CTDET_CHECK(views_[size_t(v)].data != nullptr || g_.value(v).bytes() == 0, "executor: value ", g_.describe(v),
              " has no memory (it is never used by the graph)");
  return views_[size_t(v)];
}

Tensor Executor::value(const std::string& name) const {
  ValueId v = g_.find(name);
  CTDET_CHECK(v != kNoValue, "executor: no value named '", name, "'");
  return value(v);
}

void Executor::set(ValueId v, const void* host, size_t bytes) {
  Tensor t = value(v);
  CTDET_CHECK(bytes == t.bytes(), "executor: setting ", g_.describe(v), " (", t.bytes(), " bytes) from ", bytes,
              " bytes");
  copy_to_device(device_, t.data, host, bytes);
}

Executor::~Executor() {
#if CTDET_WITH_CUDA
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

std::string Executor::profile_table(int top) const {
  if (profiled_runs == 0 || node_ms.empty()) return "(no profiled run)\n";
  const double runs = profiled_runs;
  double total = 0;
  for (double v : node_ms) total += v;
  std::vector<int> order(node_ms.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return node_ms[size_t(a)] > node_ms[size_t(b)]; });
  // FLOP of the matrix-product nodes (OpDef::flops: conv2d, linear and their gradients), for the achieved rate.
  std::vector<double> flop(node_ms.size(), 0.0);
  for (size_t i = 0; i < node_ms.size(); ++i) flop[i] = graph_flops(g_, int(i), int(i) + 1);
  auto rate = [](double f, double ms) -> std::string {
    if (f <= 0 || ms <= 0) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", f / (ms * 1e-3) * 1e-9);
    return b;
  };
  std::map<std::string, std::pair<double, int>> by_op;
  std::map<std::string, double> op_flop;
  for (size_t i = 0; i < node_ms.size(); ++i) {
    auto& e = by_op[g_.node(int(i)).op];
    e.first += node_ms[i];
    e.second++;
    op_flop[g_.node(int(i)).op] += flop[i];
  }
  std::ostringstream o;
  o << str("per-node time, mean of ", profiled_runs, " run(s), ", device_ == Device::CPU ? "CPU wall clock" : "CUDA events",
           ": total ", total / runs, " ms\n");
  o << "  rank  ms/run   share  GFLOP/s  node (op)\n";
  for (int k = 0; k < std::min<int>(top, int(order.size())); ++k) {
    const int i = order[size_t(k)];
    char line[512];
    std::snprintf(line, sizeof(line), "  %4d %8.3f  %5.1f%%  %7s  %s (%s)\n", k + 1, node_ms[size_t(i)] / runs,
                  100.0 * node_ms[size_t(i)] / std::max(total, 1e-12),
                  rate(flop[size_t(i)], node_ms[size_t(i)] / runs).c_str(), g_.node(i).name.c_str(),
                  g_.node(i).op.c_str());
    o << line;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> ops_sorted(by_op.begin(), by_op.end());
  std::stable_sort(ops_sorted.begin(), ops_sorted.end(),
                   [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  o << "  by op kind: ms/run  share  nodes  GFLOP/s\n";
  for (const auto& [op, v] : ops_sorted) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-28s %8.3f  %5.1f%%  %d  %s\n", op.c_str(), v.first / runs,
                  100.0 * v.first / std::max(total, 1e-12), v.second, rate(op_flop[op], v.first / runs).c_str());
    o << line;
  }
  return o.str();
}

void Executor::run_nodes(int begin, int end) {
  const OpRegistry& reg = ops();
  OpContext c;
  c.graph = &g_;
  c.device = device_;
  c.cuda = cuda_;
  if (profile && node_ms.size() != size_t(g_.num_nodes())) node_ms.assign(size_t(g_.num_nodes()), 0.0);
#if CTDET_WITH_CUDA
  if (profile && device_ == Device::CUDA && events_.size() != size_t(g_.num_nodes()) + 1) {
    for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
    events_.assign(size_t(g_.num_nodes()) + 1, nullptr);
    for (auto& e : events_) {
      cudaEvent_t ev;
      CTDET_CUDA_CHECK(cudaEventCreate(&ev));
      e = ev;
    }
  }
#endif
  for (int i = begin; i < end; ++i) {
    const Node& n = g_.node(i);
    const auto t0 = std::chrono::steady_clock::now();
#if CTDET_WITH_CUDA
    if (profile && device_ == Device::CUDA)
      CTDET_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[size_t(i)]), cuda_->stream));
#endif
    const OpDef& def = reg.get(n.op);
    c.node = &n;
    c.in.clear();
    c.out.clear();
    for (ValueId v : n.inputs) c.in.push_back(views_[size_t(v)]);
    for (ValueId v : n.outputs) c.out.push_back(views_[size_t(v)]);
    c.workspace_bytes = plan_.node_ws_bytes[size_t(i)];
    c.workspace = plan_.node_ws_offset[size_t(i)] >= 0
                      ? static_cast<char*>(arena_.data()) + plan_.node_ws_offset[size_t(i)]
                      : nullptr;
    try {
      if (device_ == Device::CPU) {
        CTDET_CHECK(def.cpu != nullptr, "op '", n.op, "' has no CPU implementation");
        def.cpu(c);
      } else {
#if CTDET_WITH_CUDA
        CTDET_CHECK(def.cuda != nullptr, "op '", n.op, "' has no CUDA implementation");
#ifdef CTDET_HAVE_NVTX
        nvtxRangePushA(n.name.c_str());
#endif
        cuda_->workspace = c.workspace;
        cuda_->workspace_bytes = c.workspace_bytes;
        def.cuda(c);
#ifdef CTDET_HAVE_NVTX
        nvtxRangePop();
#endif
        if (debug) {
          CTDET_CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
          CTDET_CUDA_CHECK(cudaGetLastError());
        }
#else
        CTDET_FAIL("CUDA requested but ctdet was built without CUDA");
#endif
      }
    } catch (const Error& e) {
      throw Error(str("while running node ", i, " '", n.name, "' (", n.op, "): ", e.what()));
    }
    if (profile && device_ == Device::CPU)
      node_ms[size_t(i)] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (debug && device_ == Device::CPU) {
      // Poison every planned buffer whose life ends here (NaN in f32 and f64).
      for (size_t b = 0; b < plan_.buffers.size(); ++b)
        if (plan_.buffers[b].last == i && plan_.buffers[b].bytes && plan_.buffers[b].last < g_.num_nodes() - 1)
          arena_.fill_bytes(plan_.buffer_offset[b], plan_.buffers[b].bytes, 0xFF);
    }
  }
#if CTDET_WITH_CUDA
  if (profile && device_ == Device::CUDA && end > begin) {
    CTDET_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[size_t(end)]), cuda_->stream));
    CTDET_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[size_t(end)])));
    for (int i = begin; i < end; ++i) {
      float ms = 0;
      CTDET_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(events_[size_t(i)]),
                                            static_cast<cudaEvent_t>(events_[size_t(i) + 1])));
      node_ms[size_t(i)] += ms;
    }
  }
#endif
  if (profile && begin == 0 && end == g_.num_nodes()) ++profiled_runs;
}

}  // namespace ctdet
