#include "io/masks.h"

#include <algorithm>

#include "nn/error.h"

namespace ctdet {

std::vector<MaskComponent> mask_components(const uint8_t* mask, int w, int h, const MaskRule& rule,
                                           MaskStats* stats) {
  CTDET_CHECK(w > 0 && h > 0 && mask != nullptr, "mask_components: bad mask ", w, "x", h);
  CTDET_CHECK(rule.ggo_value != 0 && rule.cd_value != 0 && rule.ggo_value != rule.cd_value,
              "mask_components: GGO and CD values must be distinct and non-zero (", int(rule.ggo_value), ", ",
              int(rule.cd_value), ")");
  const size_t n = size_t(w) * size_t(h);
  std::vector<uint8_t> seen(n, 0);
  std::vector<int> stack;
  std::vector<MaskComponent> out;
  long other = 0;
  auto is_lesion = [&](uint8_t v) { return v == rule.ggo_value || v == rule.cd_value; };
  for (size_t start = 0; start < n; ++start) {
    if (seen[start]) continue;
    if (!is_lesion(mask[start])) {
      other += mask[start] != 0;
      continue;
    }
    MaskComponent c;
    c.x1 = w, c.y1 = h, c.x2 = 0, c.y2 = 0;
    seen[start] = 1;
    stack.assign(1, int(start));
    while (!stack.empty()) {
      int p = stack.back();
      stack.pop_back();
      int x = p % w, y = p / w;
      c.x1 = std::min(c.x1, x), c.x2 = std::max(c.x2, x + 1);
      c.y1 = std::min(c.y1, y), c.y2 = std::max(c.y2, y + 1);
      ++c.area;
      c.ggo_pixels += mask[p] == rule.ggo_value;
      c.cd_pixels += mask[p] == rule.cd_value;
      for (int dy = -1; dy <= 1; ++dy) {
        int yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (int dx = -1; dx <= 1; ++dx) {
          int xx = x + dx;
          if (xx < 0 || xx >= w || (dx == 0 && dy == 0)) continue;
          int q = yy * w + xx;
          if (!seen[q] && is_lesion(mask[q])) {
            seen[q] = 1;
            stack.push_back(q);
          }
        }
      }
    }
    out.push_back(c);
  }
  if (stats) {
    stats->components += int(out.size());
    stats->other_pixels += other;
  }
  return out;
}

std::vector<Box> mask_to_boxes(const uint8_t* mask, int w, int h, const MaskRule& rule, MaskStats* stats) {
  std::vector<Box> boxes;
  for (const MaskComponent& c : mask_components(mask, w, h, rule, stats)) {
    if (c.area < rule.min_area) {
      if (stats) ++stats->small_dropped;
      continue;
    }
    Box b;
    b.x1 = float(c.x1), b.y1 = float(c.y1), b.x2 = float(c.x2), b.y2 = float(c.y2);
    b.label = c.ggo_pixels && c.cd_pixels ? rule.label_both : c.cd_pixels ? rule.label_cd : rule.label_ggo;
    boxes.push_back(b);
  }
  return boxes;
}

}  // namespace ctdet
