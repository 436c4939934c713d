// CPU reference of the detection bookkeeping ops (kernels/boxes.h).
#include "kernels/boxes.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

namespace ctdet {

void validate_anchor_params(const AnchorParams& p) {
  CTDET_CHECK(p.num_scales > 0 && p.num_scales <= kMaxAnchorParams, "anchors: num_scales must be in [1, ",
              kMaxAnchorParams, "], got ", p.num_scales);
  CTDET_CHECK(p.num_ratios > 0 && p.num_ratios <= kMaxAnchorParams, "anchors: num_ratios must be in [1, ",
              kMaxAnchorParams, "], got ", p.num_ratios);
  for (int i = 0; i < p.num_scales; ++i)
    CTDET_CHECK(p.scales[i] > 0 && std::isfinite(p.scales[i]), "anchors: scale ", i, " must be > 0, got ",
                p.scales[i]);
  for (int i = 0; i < p.num_ratios; ++i)
    CTDET_CHECK(p.aspect_ratios[i] > 0 && std::isfinite(p.aspect_ratios[i]), "anchors: aspect ratio ", i,
                " must be > 0, got ", p.aspect_ratios[i]);
  CTDET_CHECK(p.base_h > 0 && p.base_w > 0, "anchors: base size must be > 0, got ", p.base_h, "x", p.base_w);
  CTDET_CHECK(p.stride_y > 0 && p.stride_x > 0, "anchors: stride must be > 0, got ", p.stride_y, ",", p.stride_x);
}

template <typename T>
void generate_anchors_cpu(const AnchorParams& p, int64_t Hf, int64_t Wf, T* anchors) {
  validate_anchor_params(p);
  CTDET_CHECK(Hf >= 0 && Wf >= 0, "anchors: feature map size must be >= 0, got ", Hf, "x", Wf);
  const int64_t n = anchor_count(p, Hf, Wf);
  for (int64_t k = 0; k < n; ++k) anchor_box(p, Wf, k, anchors + k * 4);
}

void validate_box_coder(const BoxCoderParams& p) {
  CTDET_CHECK(p.wy > 0 && p.wx > 0 && p.wh > 0 && p.ww > 0, "box_coder: scale factors must be > 0, got (", p.wy, ",",
              p.wx, ",", p.wh, ",", p.ww, ")");
  CTDET_CHECK(p.clamp >= 0 && std::isfinite(p.clamp), "box_coder: clamp must be >= 0 (0 = none), got ", p.clamp);
}

template <typename T>
void box_encode_cpu(const BoxCoderParams& p, int64_t n, const T* boxes, const T* anchors, T* codes) {
  validate_box_coder(p);
  for (int64_t i = 0; i < n; ++i) box_encode(p, boxes + i * 4, anchors + i * 4, codes + i * 4);
}

template <typename T>
void box_decode_cpu(const BoxCoderParams& p, int64_t n, int64_t k, const T* codes, const T* anchors, T* boxes) {
  validate_box_coder(p);
  CTDET_CHECK(k > 0, "box_decode: codes per anchor k must be > 0, got ", k);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < k; ++c) box_decode(p, codes + (i * k + c) * 4, anchors + i * 4, boxes + (i * k + c) * 4);
}

template <typename T>
void clip_boxes_cpu(int64_t n, const T* boxes, const T* window, T* out, uint8_t* nonempty) {
  CTDET_CHECK(window[2] >= window[0] && window[3] >= window[1], "clip_boxes: window (", window[0], ",", window[1],
              ",", window[2], ",", window[3], ") has x2 < x1 or y2 < y1");
  for (int64_t i = 0; i < n; ++i) {
    T tmp[4];
    const bool ok = clip_box(boxes + i * 4, window, tmp);
    std::copy(tmp, tmp + 4, out + i * 4);
    if (nonempty) nonempty[i] = ok ? 1 : 0;
  }
}

template <typename T>
void prune_outside_window_cpu(int64_t n, const T* boxes, const T* window, uint8_t* inside) {
  for (int64_t i = 0; i < n; ++i) inside[i] = box_inside_window(boxes + i * 4, window) ? 1 : 0;
}

template <typename T>
void box_iou_cpu(int64_t n, int64_t m, const T* a, const T* b, T* iou) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) iou[i * m + j] = box_iou(a + i * 4, b + j * 4);
}

template <typename T>
void sort_by_score_cpu(int64_t n, const T* scores, int32_t* order) {
  CTDET_CHECK(n >= 0 && n < int64_t(INT32_MAX), "sort_by_score: n must be in [0, 2^31), got ", n);
  for (int64_t i = 0; i < n; ++i)
    CTDET_CHECK(!std::isnan(double(scores[i])), "sort_by_score: score ", i, " is NaN");
  std::iota(order, order + n, 0);
  // -0.0 == +0.0 under operator>, so both orders treat signed zeros as ties.
  std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
}

template <typename T>
void topk_cpu(int64_t n, const T* scores, int64_t k, int32_t* indices, T* values) {
  CTDET_CHECK(k >= 0, "topk: k must be >= 0, got ", k);
  std::vector<int32_t> order(size_t(std::max<int64_t>(n, 0)));
  sort_by_score_cpu(n, scores, order.data());
  for (int64_t i = 0; i < k; ++i) {
    const bool valid = i < n;
    indices[i] = valid ? order[size_t(i)] : -1;
    if (values) values[i] = valid ? scores[order[size_t(i)]] : T(0);
  }
}

void validate_nms(const NmsParams& p, int64_t n) {
  CTDET_CHECK(p.max_output > 0, "nms: max_output must be > 0, got ", p.max_output);
  CTDET_CHECK(std::isfinite(p.iou_threshold) && p.iou_threshold >= 0.f && p.iou_threshold <= 1.f,
              "nms: iou_threshold must be in [0,1], got ", p.iou_threshold);
  CTDET_CHECK(n >= 0 && n < int64_t(INT32_MAX), "nms: number of boxes must be in [0, 2^31), got ", n);
}

template <typename T>
int64_t nms_cpu(const NmsParams& p, int64_t n, const T* boxes, const T* scores, int32_t* keep) {
  validate_nms(p, n);
  std::vector<int32_t> order(static_cast<size_t>(n));
  sort_by_score_cpu(n, scores, order.data());
  // Greedy NMS: in score order, a box is kept when no box kept before it overlaps it by more than the threshold.
  // Asked of each candidate against the kept list (at most max_output boxes), stopping at the first overlap and at
  // max_output kept, instead of each kept box suppressing every later one: the same decisions from the same
  // box_iou(kept, candidate) values, but only the candidates up to the last kept one are visited (proposals: a few
  // thousand of ~17,000 anchors instead of 300 passes over all of them).
  const T thr = T(p.iou_threshold);
  int64_t count = 0;
  for (int64_t a = 0; a < n && count < p.max_output; ++a) {
    const int32_t cand = order[size_t(a)];
    const T* cb = boxes + int64_t(cand) * 4;
    bool suppressed = false;
    for (int64_t k = 0; k < count && !suppressed; ++k) suppressed = box_iou(boxes + int64_t(keep[k]) * 4, cb) > thr;
    if (!suppressed) keep[count++] = cand;
  }
  for (int64_t c = count; c < p.max_output; ++c) keep[c] = -1;
  return count;
}

int64_t sample_indices_cpu(int64_t n, const uint8_t* candidate, int64_t k, uint64_t seed, int32_t* out) {
  CTDET_CHECK(k >= 0 && n >= 0, "sample_indices: n and k must be >= 0, got n=", n, " k=", k);
  std::vector<std::pair<uint64_t, int32_t>> keyed;
  for (int64_t i = 0; i < n; ++i)
    if (candidate[i]) keyed.emplace_back(sample_key(seed, uint64_t(i)), int32_t(i));
  const int64_t take = std::min<int64_t>(k, int64_t(keyed.size()));
  std::partial_sort(keyed.begin(), keyed.begin() + take, keyed.end());
  for (int64_t i = 0; i < k; ++i) out[i] = i < take ? keyed[size_t(i)].second : -1;
  return take;
}

void validate_sampler(const SamplerParams& p) {
  CTDET_CHECK(p.batch_size > 0, "sampler: batch_size must be > 0, got ", p.batch_size);
  CTDET_CHECK(p.positive_fraction >= 0 && p.positive_fraction <= 1, "sampler: positive_fraction must be in [0,1], got ",
              p.positive_fraction);
}

void balanced_sample_cpu(const SamplerParams& p, int64_t n, const int32_t* labels, int32_t* selected,
                         int64_t* num_pos, int64_t* num_neg) {
  validate_sampler(p);
  CTDET_CHECK(n >= 0 && n < int64_t(INT32_MAX), "sampler: n must be in [0, 2^31), got ", n);
  std::vector<uint8_t> pos(static_cast<size_t>(n)), neg(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    CTDET_CHECK(labels[i] >= -1 && labels[i] <= 1, "sampler: label ", i, " is ", labels[i],
                " (expected 1 positive, 0 negative, -1 ignore)");
    pos[size_t(i)] = labels[i] == 1;
    neg[size_t(i)] = labels[i] == 0;
  }
  const int64_t np = sample_indices_cpu(n, pos.data(), sampler_max_positives(p), p.seed, selected);
  const int64_t nn = sample_indices_cpu(n, neg.data(), p.batch_size - np, p.seed, selected + np);
  *num_pos = np;
  *num_neg = nn;
}

#define CTDET_INSTANTIATE(T)                                                                           \
  template void generate_anchors_cpu<T>(const AnchorParams&, int64_t, int64_t, T*);                    \
  template void box_encode_cpu<T>(const BoxCoderParams&, int64_t, const T*, const T*, T*);             \
  template void box_decode_cpu<T>(const BoxCoderParams&, int64_t, int64_t, const T*, const T*, T*);    \
  template void clip_boxes_cpu<T>(int64_t, const T*, const T*, T*, uint8_t*);                          \
  template void prune_outside_window_cpu<T>(int64_t, const T*, const T*, uint8_t*);                    \
  template void box_iou_cpu<T>(int64_t, int64_t, const T*, const T*, T*);                              \
  template void sort_by_score_cpu<T>(int64_t, const T*, int32_t*);                                     \
  template void topk_cpu<T>(int64_t, const T*, int64_t, int32_t*, T*);                                 \
  template int64_t nms_cpu<T>(const NmsParams&, int64_t, const T*, const T*, int32_t*);
CTDET_INSTANTIATE(float)
CTDET_INSTANTIATE(double)
#undef CTDET_INSTANTIATE

}  // namespace ctdet
