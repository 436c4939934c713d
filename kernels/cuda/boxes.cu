// CUDA versions of the detection bookkeeping ops (kernels/boxes.h). Per-box math from box_math.h; sorting
// with CUB's stable radix sort so ties resolve like the CPU's std::stable_sort.
#include <cub/cub.cuh>

#include <algorithm>

#include "kernels/boxes.h"
#include "kernels/common/cuda_check.cuh"
#include "kernels/common/launch.cuh"

namespace ctdet {
namespace {

struct Window {
  float v[4];
};

// Carves a workspace into 256-byte aligned pieces; with base == nullptr it only measures.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename U>
  U* take(size_t count) {
    off_ = (off_ + 255) & ~size_t(255);
    U* p = base_ ? reinterpret_cast<U*>(base_ + off_) : nullptr;
    off_ += count * sizeof(U);
    return p;
  }
  size_t bytes() const { return (off_ + 255) & ~size_t(255); }

 private:
  char* base_;
  size_t off_ = 0;
};

constexpr int kNmsBlock = 64;  // boxes per mask word

__global__ void anchors_kernel(AnchorParams p, int64_t Wf, int64_t n, float* anchors) {
  CTDET_GRID_STRIDE(k, n) anchor_box(p, Wf, k, anchors + k * 4);
}

__global__ void encode_kernel(BoxCoderParams p, int64_t n, const float* boxes, const float* anchors, float* codes) {
  CTDET_GRID_STRIDE(i, n) box_encode(p, boxes + i * 4, anchors + i * 4, codes + i * 4);
}

__global__ void decode_kernel(BoxCoderParams p, int64_t n, int64_t k, const float* codes, const float* anchors,
                              float* boxes) {
  CTDET_GRID_STRIDE(t, n * k) box_decode(p, codes + t * 4, anchors + (t / k) * 4, boxes + t * 4);
}

__global__ void clip_kernel(int64_t n, const float* boxes, Window w, float* out, uint8_t* nonempty) {
  CTDET_GRID_STRIDE(i, n) {
    float tmp[4];
    const bool ok = clip_box(boxes + i * 4, w.v, tmp);
    for (int c = 0; c < 4; ++c) out[i * 4 + c] = tmp[c];
    if (nonempty) nonempty[i] = ok ? 1 : 0;
  }
}

__global__ void prune_kernel(int64_t n, const float* boxes, Window w, uint8_t* inside) {
  CTDET_GRID_STRIDE(i, n) inside[i] = box_inside_window(boxes + i * 4, w.v) ? 1 : 0;
}

__global__ void iou_kernel(int64_t n, int64_t m, const float* a, const float* b, float* iou) {
  CTDET_GRID_STRIDE(t, n * m) iou[t] = box_iou(a + (t / m) * 4, b + (t % m) * 4);
}

// keys = scores with -0.0 folded into +0.0 (radix order would put -0.0 below +0.0); vals = 0..n-1.
__global__ void sort_prep_kernel(int64_t n, const float* scores, float* keys, int32_t* vals) {
  CTDET_GRID_STRIDE(i, n) {
    const float s = scores[i];
    keys[i] = s == 0.f ? 0.f : s;
    vals[i] = int32_t(i);
  }
}

__global__ void topk_copy_kernel(int64_t n, int64_t k, const float* sorted_keys, const int32_t* sorted_vals,
                                 const float* scores, int32_t* indices, float* values) {
  CTDET_GRID_STRIDE(i, k) {
    const bool valid = i < n;
    const int32_t idx = valid ? sorted_vals[i] : -1;
    indices[i] = idx;
    if (values) values[i] = valid ? scores[idx] : 0.f;
  }
}

__global__ void gather_boxes_kernel(int64_t n, const float* boxes, const int32_t* order, float* sorted) {
  CTDET_GRID_STRIDE(t, n * 4) sorted[t] = boxes[int64_t(order[t / 4]) * 4 + t % 4];
}

// Tile (row block by, column block bx): bit k of mask[i][bx] says sorted box i suppresses sorted box
// bx*64 + k (which comes later in score order).
__global__ void nms_mask_kernel(int64_t n, int64_t col_blocks, float thr, const float* __restrict__ sorted,
                                unsigned long long* __restrict__ mask) {
  const int64_t by = blockIdx.y, bx = blockIdx.x;
  if (bx < by) return;
  __shared__ float tile[kNmsBlock * 4];
  const int64_t col0 = bx * kNmsBlock;
  const int64_t ncols = min(int64_t(kNmsBlock), n - col0);
  if (threadIdx.x < ncols)
    for (int c = 0; c < 4; ++c) tile[threadIdx.x * 4 + c] = sorted[(col0 + threadIdx.x) * 4 + c];
  __syncthreads();
  const int64_t i = by * kNmsBlock + threadIdx.x;
  if (i >= n) return;
  float me[4];
  for (int c = 0; c < 4; ++c) me[c] = sorted[i * 4 + c];
  unsigned long long bits = 0;
  const int64_t start = (bx == by) ? int64_t(threadIdx.x) + 1 : 0;
  for (int64_t k = start; k < ncols; ++k)
    if (box_iou(me, tile + k * 4) > thr) bits |= 1ull << k;
  mask[i * col_blocks + bx] = bits;
}

// Greedy pass in one block: every thread walks the sorted boxes in lockstep (uniform control flow);
// a kept box's mask row is ORed into `removed` by all threads, then the block synchronises.
__global__ void nms_reduce_kernel(int64_t n, int64_t col_blocks, int64_t max_output,
                                  const unsigned long long* __restrict__ mask, const int32_t* __restrict__ order,
                                  unsigned long long* removed, int32_t* keep, int32_t* count_out) {
  volatile unsigned long long* rem = removed;
  int64_t count = 0;
  for (int64_t i = 0; i < n && count < max_output; ++i) {
    const unsigned long long word = rem[i / kNmsBlock];
    if ((word >> (i % kNmsBlock)) & 1ull) continue;
    if (threadIdx.x == 0) keep[count] = order[i];
    ++count;
    for (int64_t w = i / kNmsBlock + threadIdx.x; w < col_blocks; w += blockDim.x) rem[w] = rem[w] | mask[i * col_blocks + w];
    __syncthreads();
  }
  for (int64_t c = count + threadIdx.x; c < max_output; c += blockDim.x) keep[c] = -1;
  if (threadIdx.x == 0) *count_out = int32_t(count);
}

constexpr unsigned long long kNotCandidate = ~0ull;

__global__ void sampler_prep_kernel(int64_t n, uint64_t seed, const int32_t* labels, unsigned long long* keys_pos,
                                    unsigned long long* keys_neg, int32_t* vals, int32_t* cand_counts) {
  CTDET_GRID_STRIDE(i, n) {
    const int32_t l = labels[i];
    const unsigned long long key = sample_key(seed, uint64_t(i));
    keys_pos[i] = l == 1 ? key : kNotCandidate;
    keys_neg[i] = l == 0 ? key : kNotCandidate;
    vals[i] = int32_t(i);
    if (l == 1) atomicAdd(cand_counts + 0, 1);
    if (l == 0) atomicAdd(cand_counts + 1, 1);
  }
}

__global__ void sampler_finish_kernel(int64_t batch, int64_t max_pos, const int32_t* cand_counts,
                                      const int32_t* sorted_pos, const int32_t* sorted_neg, int32_t* selected,
                                      int32_t* counts) {
  const int64_t np = min(int64_t(cand_counts[0]), max_pos);
  const int64_t nn = min(int64_t(cand_counts[1]), batch - np);
  for (int64_t t = threadIdx.x; t < batch; t += blockDim.x)
    selected[t] = t < np ? sorted_pos[t] : (t < np + nn ? sorted_neg[t - np] : -1);
  if (threadIdx.x == 0) {
    counts[0] = int32_t(np);
    counts[1] = int32_t(nn);
  }
}

// Pieces of the sort workspace (shared by sort, top-k and NMS).
struct SortPieces {
  float* keys_in;
  float* keys_out;
  int32_t* vals_in;
  void* cub_temp;
  size_t cub_bytes;
};

size_t cub_sort_float_bytes(int64_t n) {
  size_t bytes = 0;
  CTDET_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                             static_cast<float*>(nullptr),
                                                             static_cast<const int32_t*>(nullptr),
                                                             static_cast<int32_t*>(nullptr), int(n)));
  return bytes;
}

SortPieces carve_sort(Carver& cv, int64_t n, size_t cub_bytes) {
  SortPieces s;
  s.keys_in = cv.take<float>(size_t(n));
  s.keys_out = cv.take<float>(size_t(n));
  s.vals_in = cv.take<int32_t>(size_t(n));
  s.cub_temp = cv.take<char>(cub_bytes);
  s.cub_bytes = cub_bytes;
  return s;
}

// order (n) and optionally sorted keys; keys_out is always written in the workspace.
void run_sort(CudaContext& ctx, int64_t n, const float* scores, const SortPieces& s, int32_t* order) {
  if (n == 0) return;
  sort_prep_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(n, scores, s.keys_in, s.vals_in);
  CTDET_CUDA_LAUNCH_CHECK("sort_prep_kernel");
  size_t bytes = s.cub_bytes;
  CTDET_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(s.cub_temp, bytes, s.keys_in, s.keys_out, s.vals_in,
                                                             order, int(n), 0, int(sizeof(float) * 8), ctx.stream));
}

void check_n(const char* op, int64_t n) {
  CTDET_CHECK(n >= 0 && n < int64_t(INT32_MAX), op, ": n must be in [0, 2^31), got ", n);
}

void check_workspace(const char* op, void* ws, size_t have, size_t need) {
  CTDET_CHECK(have >= need, op, ": workspace of ", have, " bytes is smaller than the ", need, " bytes needed");
  CTDET_CHECK(need == 0 || ws != nullptr, op, ": workspace pointer is null");
}

}  // namespace

void generate_anchors_cuda(CudaContext& ctx, const AnchorParams& p, int64_t Hf, int64_t Wf, float* anchors) {
  validate_anchor_params(p);
  CTDET_CHECK(Hf >= 0 && Wf >= 0, "anchors: feature map size must be >= 0, got ", Hf, "x", Wf);
  const int64_t n = anchor_count(p, Hf, Wf);
  if (n == 0) return;
  anchors_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(p, Wf, n, anchors);
  CTDET_CUDA_LAUNCH_CHECK("anchors_kernel");
}

void box_encode_cuda(CudaContext& ctx, const BoxCoderParams& p, int64_t n, const float* boxes, const float* anchors,
                     float* codes) {
  validate_box_coder(p);
  if (n == 0) return;
  encode_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(p, n, boxes, anchors, codes);
  CTDET_CUDA_LAUNCH_CHECK("encode_kernel");
}

void box_decode_cuda(CudaContext& ctx, const BoxCoderParams& p, int64_t n, int64_t k, const float* codes,
                     const float* anchors, float* boxes) {
  validate_box_coder(p);
  CTDET_CHECK(k > 0, "box_decode: codes per anchor k must be > 0, got ", k);
  if (n == 0) return;
  decode_kernel<<<cuda::grid_for(n * k), cuda::kBlock, 0, ctx.stream>>>(p, n, k, codes, anchors, boxes);
  CTDET_CUDA_LAUNCH_CHECK("decode_kernel");
}

void clip_boxes_cuda(CudaContext& ctx, int64_t n, const float* boxes, const float* window_host, float* out,
                     uint8_t* nonempty) {
  Window w;
  for (int c = 0; c < 4; ++c) w.v[c] = window_host[c];
  CTDET_CHECK(w.v[2] >= w.v[0] && w.v[3] >= w.v[1], "clip_boxes: window (", w.v[0], ",", w.v[1], ",", w.v[2], ",",
              w.v[3], ") has x2 < x1 or y2 < y1");
  if (n == 0) return;
  clip_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(n, boxes, w, out, nonempty);
  CTDET_CUDA_LAUNCH_CHECK("clip_kernel");
}

void prune_outside_window_cuda(CudaContext& ctx, int64_t n, const float* boxes, const float* window_host,
                               uint8_t* inside) {
  Window w;
  for (int c = 0; c < 4; ++c) w.v[c] = window_host[c];
  if (n == 0) return;
  prune_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(n, boxes, w, inside);
  CTDET_CUDA_LAUNCH_CHECK("prune_kernel");
}

void box_iou_cuda(CudaContext& ctx, int64_t n, int64_t m, const float* a, const float* b, float* iou) {
  if (n == 0 || m == 0) return;
  iou_kernel<<<cuda::grid_for(n * m), cuda::kBlock, 0, ctx.stream>>>(n, m, a, b, iou);
  CTDET_CUDA_LAUNCH_CHECK("iou_kernel");
}

size_t sort_by_score_cuda_workspace_bytes(int64_t n) {
  check_n("sort_by_score_cuda", n);
  Carver cv(nullptr);
  carve_sort(cv, n, cub_sort_float_bytes(n));
  return cv.bytes();
}

void sort_by_score_cuda(CudaContext& ctx, int64_t n, const float* scores, int32_t* order, float* sorted_scores,
                        void* workspace, size_t workspace_bytes) {
  check_n("sort_by_score_cuda", n);
  const size_t cub_bytes = cub_sort_float_bytes(n);
  Carver cv(workspace);
  const SortPieces s = carve_sort(cv, n, cub_bytes);
  check_workspace("sort_by_score_cuda", workspace, workspace_bytes, cv.bytes());
  run_sort(ctx, n, scores, s, order);
  if (sorted_scores && n > 0)
    CTDET_CUDA_CHECK(cudaMemcpyAsync(sorted_scores, s.keys_out, sizeof(float) * size_t(n), cudaMemcpyDeviceToDevice,
                                     ctx.stream));
}

namespace {
struct TopkPieces {
  SortPieces sort;
  int32_t* order;
};
TopkPieces carve_topk(Carver& cv, int64_t n, size_t cub_bytes) {
  TopkPieces t;
  t.sort = carve_sort(cv, n, cub_bytes);
  t.order = cv.take<int32_t>(size_t(n));
  return t;
}
}  // namespace

size_t topk_cuda_workspace_bytes(int64_t n) {
  check_n("topk_cuda", n);
  Carver cv(nullptr);
  carve_topk(cv, n, cub_sort_float_bytes(n));
  return cv.bytes();
}

void topk_cuda(CudaContext& ctx, int64_t n, const float* scores, int64_t k, int32_t* indices, float* values,
               void* workspace, size_t workspace_bytes) {
  check_n("topk_cuda", n);
  CTDET_CHECK(k >= 0, "topk_cuda: k must be >= 0, got ", k);
  Carver cv(workspace);
  const TopkPieces t = carve_topk(cv, n, cub_sort_float_bytes(n));
  check_workspace("topk_cuda", workspace, workspace_bytes, cv.bytes());
  run_sort(ctx, n, scores, t.sort, t.order);
  if (k == 0) return;
  topk_copy_kernel<<<cuda::grid_for(k), cuda::kBlock, 0, ctx.stream>>>(n, k, t.sort.keys_out, t.order, scores,
                                                                       indices, values);
  CTDET_CUDA_LAUNCH_CHECK("topk_copy_kernel");
}

namespace {
struct NmsPieces {
  SortPieces sort;
  int32_t* order;
  float* sorted_boxes;
  unsigned long long* mask;
  unsigned long long* removed;
};
NmsPieces carve_nms(Carver& cv, int64_t n, size_t cub_bytes) {
  const int64_t cb = (n + kNmsBlock - 1) / kNmsBlock;
  NmsPieces t;
  t.sort = carve_sort(cv, n, cub_bytes);
  t.order = cv.take<int32_t>(size_t(n));
  t.sorted_boxes = cv.take<float>(size_t(n) * 4);
  t.mask = cv.take<unsigned long long>(size_t(n) * size_t(cb));
  t.removed = cv.take<unsigned long long>(size_t(std::max<int64_t>(cb, 1)));
  return t;
}
}  // namespace

size_t nms_cuda_workspace_bytes(int64_t n) {
  check_n("nms_cuda", n);
  Carver cv(nullptr);
  carve_nms(cv, n, cub_sort_float_bytes(n));
  return cv.bytes();
}

void nms_cuda(CudaContext& ctx, const NmsParams& p, int64_t n, const float* boxes, const float* scores, int32_t* keep,
              int32_t* count, void* workspace, size_t workspace_bytes) {
  validate_nms(p, n);
  Carver cv(workspace);
  const NmsPieces t = carve_nms(cv, n, cub_sort_float_bytes(n));
  check_workspace("nms_cuda", workspace, workspace_bytes, cv.bytes());
  const int64_t cb = (n + kNmsBlock - 1) / kNmsBlock;
  if (n > 0) {
    CTDET_CHECK(cb <= 65535, "nms_cuda: ", n, " boxes need ", cb, " mask blocks, more than a grid's 65535 rows");
    run_sort(ctx, n, scores, t.sort, t.order);
    gather_boxes_kernel<<<cuda::grid_for(n * 4), cuda::kBlock, 0, ctx.stream>>>(n, boxes, t.order, t.sorted_boxes);
    CTDET_CUDA_LAUNCH_CHECK("gather_boxes_kernel");
    const dim3 grid(static_cast<unsigned>(cb), static_cast<unsigned>(cb));
    nms_mask_kernel<<<grid, kNmsBlock, 0, ctx.stream>>>(n, cb, p.iou_threshold, t.sorted_boxes, t.mask);
    CTDET_CUDA_LAUNCH_CHECK("nms_mask_kernel");
    CTDET_CUDA_CHECK(cudaMemsetAsync(t.removed, 0, sizeof(unsigned long long) * size_t(cb), ctx.stream));
  }
  nms_reduce_kernel<<<1, 256, 0, ctx.stream>>>(n, cb, p.max_output, t.mask, t.order, t.removed, keep, count);
  CTDET_CUDA_LAUNCH_CHECK("nms_reduce_kernel");
}

namespace {
struct SamplerPieces {
  unsigned long long* keys_pos;
  unsigned long long* keys_neg;
  unsigned long long* keys_out;
  int32_t* vals;
  int32_t* sorted_pos;
  int32_t* sorted_neg;
  int32_t* cand_counts;
  void* cub_temp;
  size_t cub_bytes;
};
size_t cub_sort_u64_bytes(int64_t n) {
  size_t bytes = 0;
  CTDET_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const unsigned long long*>(nullptr),
                                                   static_cast<unsigned long long*>(nullptr),
                                                   static_cast<const int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), int(n)));
  return bytes;
}
SamplerPieces carve_sampler(Carver& cv, int64_t n, size_t cub_bytes) {
  SamplerPieces s;
  s.keys_pos = cv.take<unsigned long long>(size_t(n));
  s.keys_neg = cv.take<unsigned long long>(size_t(n));
  s.keys_out = cv.take<unsigned long long>(size_t(n));
  s.vals = cv.take<int32_t>(size_t(n));
  s.sorted_pos = cv.take<int32_t>(size_t(n));
  s.sorted_neg = cv.take<int32_t>(size_t(n));
  s.cand_counts = cv.take<int32_t>(2);
  s.cub_temp = cv.take<char>(cub_bytes);
  s.cub_bytes = cub_bytes;
  return s;
}
}  // namespace

size_t balanced_sample_cuda_workspace_bytes(int64_t n) {
  check_n("balanced_sample_cuda", n);
  Carver cv(nullptr);
  carve_sampler(cv, n, cub_sort_u64_bytes(n));
  return cv.bytes();
}

void balanced_sample_cuda(CudaContext& ctx, const SamplerParams& p, int64_t n, const int32_t* labels,
                          int32_t* selected, int32_t* counts, void* workspace, size_t workspace_bytes) {
  validate_sampler(p);
  check_n("balanced_sample_cuda", n);
  Carver cv(workspace);
  const SamplerPieces s = carve_sampler(cv, n, cub_sort_u64_bytes(n));
  check_workspace("balanced_sample_cuda", workspace, workspace_bytes, cv.bytes());
  CTDET_CUDA_CHECK(cudaMemsetAsync(s.cand_counts, 0, 2 * sizeof(int32_t), ctx.stream));
  if (n > 0) {
    sampler_prep_kernel<<<cuda::grid_for(n), cuda::kBlock, 0, ctx.stream>>>(n, p.seed, labels, s.keys_pos, s.keys_neg,
                                                                            s.vals, s.cand_counts);
    CTDET_CUDA_LAUNCH_CHECK("sampler_prep_kernel");
    size_t bytes = s.cub_bytes;
    CTDET_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.cub_temp, bytes, s.keys_pos, s.keys_out, s.vals, s.sorted_pos,
                                                     int(n), 0, 64, ctx.stream));
    bytes = s.cub_bytes;
    CTDET_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.cub_temp, bytes, s.keys_neg, s.keys_out, s.vals, s.sorted_neg,
                                                     int(n), 0, 64, ctx.stream));
  }
  sampler_finish_kernel<<<1, 256, 0, ctx.stream>>>(p.batch_size, sampler_max_positives(p), s.cand_counts,
                                                   s.sorted_pos, s.sorted_neg, selected, counts);
  CTDET_CUDA_LAUNCH_CHECK("sampler_finish_kernel");
}

}  // namespace ctdet
