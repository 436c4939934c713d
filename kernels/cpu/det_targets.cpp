#include "kernels/det_targets.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace ctdet {

namespace {

template <typename T> void window_of(const double* w, T* out) {
  for (int i = 0; i < 4; ++i) out[i] = T(w[i]);
}

}  // namespace

template <typename T>
int64_t rpn_targets_cpu(const RpnTargetParams& p, int64_t M, const T* anchors, int64_t gt_count, const T* gt,
                        uint64_t seed, int32_t* labels, T* targets, T* obj_w, T* loc_w, int32_t* matched_gt) {
  CTDET_CHECK(M >= 0 && gt_count >= 0, "rpn_targets: negative sizes (M ", M, ", gt_count ", gt_count, ")");
  CTDET_CHECK(p.batch_images > 0, "rpn_targets: batch_images must be positive");
  T window[4];
  window_of(p.window, window);
  std::vector<int32_t> match(size_t(M), -1), lab(size_t(M), -1);
  std::vector<uint8_t> inside(static_cast<size_t>(M));
  for (int64_t a = 0; a < M; ++a) inside[size_t(a)] = box_inside_window(anchors + 4 * a, window) ? 1 : 0;
  // Per anchor: best GT (first on ties); per GT: best anchor among inside ones (first on ties).
  std::vector<T> best_iou(size_t(M), T(-1));
  std::vector<int64_t> gt_best_anchor(size_t(gt_count), -1);
  std::vector<T> gt_best_iou(size_t(gt_count), T(-1));
  for (int64_t a = 0; a < M; ++a) {
    if (!inside[size_t(a)]) continue;
    for (int64_t j = 0; j < gt_count; ++j) {
      const T iou = box_iou(anchors + 4 * a, gt + 4 * j);
      if (iou > best_iou[size_t(a)]) {
        best_iou[size_t(a)] = iou;
        match[size_t(a)] = int32_t(j);
      }
      if (iou > gt_best_iou[size_t(j)]) {
        gt_best_iou[size_t(j)] = iou;
        gt_best_anchor[size_t(j)] = a;
      }
    }
  }
  for (int64_t a = 0; a < M; ++a) {
    if (!inside[size_t(a)]) continue;
    if (gt_count == 0) {
      lab[size_t(a)] = 0;
      continue;
    }
    const double iou = double(best_iou[size_t(a)]);
    if (iou >= p.positive_iou) lab[size_t(a)] = 1;
    else if (iou < p.negative_iou) {
      lab[size_t(a)] = 0;
      match[size_t(a)] = -1;
    } else {
      match[size_t(a)] = -1;  // ignored
    }
  }
  // Forced matches: each GT claims its argmax anchor (a later GT overrides an earlier one on the same anchor).
  for (int64_t j = 0; j < gt_count; ++j) {
    const int64_t a = gt_best_anchor[size_t(j)];
    if (a < 0) continue;
    lab[size_t(a)] = 1;
    match[size_t(a)] = int32_t(j);
  }
  SamplerParams sp = p.sampler;
  sp.seed = seed;
  std::vector<int32_t> selected(static_cast<size_t>(sp.batch_size));
  int64_t npos = 0, nneg = 0;
  balanced_sample_cpu(sp, M, lab.data(), selected.data(), &npos, &nneg);
  const int64_t ns = npos + nneg;
  const T w = ns > 0 ? T(1.0 / (double(ns) * double(p.batch_images))) : T(0);
  for (int64_t a = 0; a < M; ++a) {
    labels[a] = -1;
    obj_w[a] = loc_w[a] = T(0);
    for (int k = 0; k < 4; ++k) targets[4 * a + k] = T(0);
    if (matched_gt) matched_gt[a] = -1;
  }
  for (int64_t s = 0; s < ns; ++s) {
    const int64_t a = selected[size_t(s)];
    const bool pos = s < npos;
    labels[a] = pos ? 1 : 0;
    obj_w[a] = w;
    if (pos) {
      loc_w[a] = w;
      box_encode(p.coder, gt + 4 * match[size_t(a)], anchors + 4 * a, targets + 4 * a);
      if (matched_gt) matched_gt[a] = match[size_t(a)];
    }
  }
  return ns;
}

template <typename T>
int64_t proposals_cpu(const ProposalParams& p, int64_t M, const T* logits, const T* codes, const T* anchors, T* rois,
                      T* scores) {
  CTDET_CHECK(p.max_proposals > 0, "proposals: max_proposals must be positive");
  T window[4];
  window_of(p.window, window);
  std::vector<T> boxes;
  std::vector<T> sc;
  boxes.reserve(size_t(M) * 4);
  const bool use_thr = p.score_threshold > 0;
  const double min_dl = proposal_min_dlogit(p.score_threshold);
  for (int64_t a = 0; a < M; ++a) {
    const double l0 = double(logits[2 * a]), l1 = double(logits[2 * a + 1]);
    CTDET_CHECK(std::isfinite(l0) && std::isfinite(l1), "proposals: objectness logits of anchor ", a,
                " are not finite (", l0, ", ", l1, ")");
    T box[4], score;
    if (!proposal_candidate(p.coder, window, p.prune_anchors, use_thr, min_dl, anchors + 4 * a, codes + 4 * a,
                            logits[2 * a], logits[2 * a + 1], box, &score))
      continue;
    for (int k = 0; k < 4; ++k) boxes.push_back(box[k]);
    sc.push_back(score);
  }
  const int64_t n = int64_t(sc.size());
  NmsParams np;
  np.iou_threshold = float(p.nms_iou);
  np.max_output = p.max_proposals;
  std::vector<int32_t> keep(size_t(p.max_proposals), -1);
  const int64_t kept = n > 0 ? nms_cpu(np, n, boxes.data(), sc.data(), keep.data()) : 0;
  for (int64_t i = 0; i < p.max_proposals; ++i) {
    const bool ok = i < kept;
    for (int k = 0; k < 4; ++k) rois[4 * i + k] = ok ? boxes[size_t(4 * keep[size_t(i)] + k)] : T(0);
    if (scores) scores[i] = ok ? T(1.0 / (1.0 + std::exp(-double(sc[size_t(keep[size_t(i)])])))) : T(0);
  }
  return kept;
}

template <typename T>
int64_t box_targets_cpu(const BoxTargetParams& p, int64_t roi_count, const T* rois, int64_t gt_count, const T* gt,
                        const int32_t* gt_labels, uint64_t seed, T* out_rois, int32_t* labels, T* cls_w, T* targets,
                        T* loc_w) {
  CTDET_CHECK(roi_count >= 0 && gt_count >= 0, "box_targets: negative counts");
  for (int64_t j = 0; j < gt_count; ++j)
    CTDET_CHECK(gt_labels[j] >= 1 && gt_labels[j] <= p.num_classes, "box_targets: ground-truth box ", j, " has class ",
                gt_labels[j], ", expected 1..", p.num_classes);
  std::vector<int32_t> lab(size_t(roi_count), 0), match(size_t(roi_count), -1);
  for (int64_t r = 0; r < roi_count; ++r) {
    T best = T(-1);
    for (int64_t j = 0; j < gt_count; ++j) {
      const T iou = box_iou(rois + 4 * r, gt + 4 * j);
      if (iou > best) {
        best = iou;
        match[size_t(r)] = int32_t(j);
      }
    }
    if (gt_count > 0 && double(best) >= p.positive_iou) lab[size_t(r)] = 1;
    else match[size_t(r)] = -1;
  }
  SamplerParams sp = p.sampler;
  sp.seed = seed;
  const int64_t B = sp.batch_size;
  std::vector<int32_t> selected(static_cast<size_t>(B));
  int64_t npos = 0, nneg = 0;
  balanced_sample_cpu(sp, roi_count, lab.data(), selected.data(), &npos, &nneg);
  const int64_t ns = npos + nneg;
  const T w = ns > 0 ? T(1.0 / (double(ns) * double(p.batch_images))) : T(0);
  for (int64_t s = 0; s < B; ++s) {
    T* t = targets + 4 * s;
    for (int k = 0; k < 4; ++k) t[k] = T(0);
    if (s >= ns) {
      for (int k = 0; k < 4; ++k) out_rois[4 * s + k] = T(0);
      labels[s] = -1;
      cls_w[s] = loc_w[s] = T(0);
      continue;
    }
    const int64_t r = selected[size_t(s)];
    for (int k = 0; k < 4; ++k) out_rois[4 * s + k] = rois[4 * r + k];
    cls_w[s] = w;
    const int32_t m = match[size_t(r)];
    if (s < npos && m >= 0) {
      labels[s] = gt_labels[m];
      loc_w[s] = w;
      box_encode(p.coder, gt + 4 * m, rois + 4 * r, t);
    } else {
      labels[s] = 0;
      loc_w[s] = T(0);
    }
  }
  return ns;
}

template <typename T>
int64_t postprocess_cpu(const PostprocessParams& p, int64_t roi_count, const T* logits, const T* codes, const T* rois,
                        T* boxes, T* scores, int32_t* classes) {
  const int K = p.num_classes;
  CTDET_CHECK(K >= 1 && p.max_total > 0 && p.max_per_class > 0, "postprocess: bad parameters");
  T window[4];
  window_of(p.window, window);
  // softmax per roi (in double)
  std::vector<double> prob(size_t(roi_count) * size_t(K + 1));
  for (int64_t r = 0; r < roi_count; ++r) {
    const T* l = logits + r * (K + 1);
    double mx = double(l[0]);
    for (int c = 0; c <= K; ++c) {
      CTDET_CHECK(std::isfinite(double(l[c])), "postprocess: class logit ", c, " of roi ", r, " is not finite");
      mx = std::max(mx, double(l[c]));
    }
    double s = 0;
    for (int c = 0; c <= K; ++c) s += std::exp(double(l[c]) - mx);
    for (int c = 0; c <= K; ++c) prob[size_t(r * (K + 1) + c)] = std::exp(double(l[c]) - mx) / s;
  }
  struct Det {
    T box[4];
    T score;
    int32_t cls;
    int64_t order;  // class-major insertion order: stable tie-break
  };
  std::vector<Det> all;
  NmsParams np;
  np.iou_threshold = float(p.nms_iou);
  np.max_output = p.max_per_class;
  std::vector<int32_t> keep(static_cast<size_t>(p.max_per_class));
  for (int c = 1; c <= K; ++c) {
    std::vector<T> cb;
    std::vector<T> cs;
    for (int64_t r = 0; r < roi_count; ++r) {
      const double s = prob[size_t(r * (K + 1) + c)];
      if (!(s > p.score_threshold)) continue;
      T box[4], clipped[4];
      box_decode(p.coder, codes + r * K * 4 + (c - 1) * 4, rois + 4 * r, box);
      if (!clip_box(box, window, clipped)) continue;
      for (int k = 0; k < 4; ++k) cb.push_back(clipped[k]);
      cs.push_back(T(s));
    }
    const int64_t n = int64_t(cs.size());
    if (n == 0) continue;
    const int64_t kept = nms_cpu(np, n, cb.data(), cs.data(), keep.data());
    for (int64_t i = 0; i < kept; ++i) {
      Det d;
      for (int k = 0; k < 4; ++k) d.box[k] = cb[size_t(4 * keep[size_t(i)] + k)];
      d.score = cs[size_t(keep[size_t(i)])];
      d.cls = c;
      d.order = int64_t(all.size());
      all.push_back(d);
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const Det& a, const Det& b) { return a.score > b.score; });
  const int64_t count = std::min<int64_t>(int64_t(all.size()), p.max_total);
  for (int64_t i = 0; i < p.max_total; ++i) {
    const bool ok = i < count;
    for (int k = 0; k < 4; ++k) boxes[4 * i + k] = ok ? all[size_t(i)].box[k] : T(0);
    scores[i] = ok ? all[size_t(i)].score : T(0);
    classes[i] = ok ? all[size_t(i)].cls : 0;
  }
  return count;
}

template <typename T>
void to_crop_boxes_cpu(int64_t n, const T* rois, double height, double width, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const T* b = rois + 4 * i;
    const T x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
    out[4 * i + 0] = T(double(y1) / height);
    out[4 * i + 1] = T(double(x1) / width);
    out[4 * i + 2] = T(double(y2) / height);
    out[4 * i + 3] = T(double(x2) / width);
  }
}

#define CTDET_INSTANTIATE_DET_TARGETS(T)                                                                          \
  template int64_t rpn_targets_cpu<T>(const RpnTargetParams&, int64_t, const T*, int64_t, const T*, uint64_t,      \
                                      int32_t*, T*, T*, T*, int32_t*);                                            \
  template int64_t proposals_cpu<T>(const ProposalParams&, int64_t, const T*, const T*, const T*, T*, T*);         \
  template int64_t box_targets_cpu<T>(const BoxTargetParams&, int64_t, const T*, int64_t, const T*, const int32_t*, \
                                      uint64_t, T*, int32_t*, T*, T*, T*);                                        \
  template int64_t postprocess_cpu<T>(const PostprocessParams&, int64_t, const T*, const T*, const T*, T*, T*,     \
                                      int32_t*);                                                                  \
  template void to_crop_boxes_cpu<T>(int64_t, const T*, double, double, T*);
CTDET_INSTANTIATE_DET_TARGETS(float)
CTDET_INSTANTIATE_DET_TARGETS(double)

}  // namespace ctdet
