#include "regions.h"

#include <algorithm>
#include <limits>

namespace scanner {

std::vector<Region> find_regions(const float* map, int64_t rows, int64_t cols, float threshold, int64_t height,
                                 int64_t width, int64_t max_regions) {
  if (max_regions <= 0 || rows <= 0 || cols <= 0) return {};
  const int64_t n = rows * cols;
  // 1. label the 8-connected components of the pixels above the threshold (a stack, no recursion)
  std::vector<int32_t> label(size_t(n), 0);
  std::vector<int64_t> stack;
  int32_t count = 0;
  for (int64_t start = 0; start < n; ++start) {
    if (label[start] || !(map[start] > threshold)) continue;
    label[start] = ++count;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t r = p / cols, c = p % cols;
      for (int64_t dr = -1; dr <= 1; ++dr)
        for (int64_t dc = -1; dc <= 1; ++dc) {
          const int64_t rr = r + dr, cc = c + dc;
          if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
          const int64_t q = rr * cols + cc;
          if (!label[q] && map[q] > threshold) {
            label[q] = count;
            stack.push_back(q);
          }
        }
    }
  }
  if (count == 0) return {};
  // 2. each component's numbers in one raster pass (the order skipgan/regions.py sums in)
  struct Acc {
    int64_t pixels = 0, first = -1, r0, r1 = -1, c0, c1 = -1;
    double sum = 0.0;
    float peak = -std::numeric_limits<float>::infinity();
  };
  std::vector<Acc> acc(size_t(count) + 1, Acc{0, -1, rows, -1, cols, -1, 0.0,
                                               -std::numeric_limits<float>::infinity()});
  for (int64_t p = 0; p < n; ++p) {
    if (!label[p]) continue;
    Acc& a = acc[label[p]];
    const int64_t r = p / cols, c = p % cols;
    if (a.first < 0) a.first = p;
    ++a.pixels;
    a.sum += double(map[p]);
    a.peak = std::max(a.peak, map[p]);
    a.r0 = std::min(a.r0, r), a.r1 = std::max(a.r1, r), a.c0 = std::min(a.c0, c), a.c1 = std::max(a.c1, c);
  }
  std::vector<int32_t> order(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) order[i] = i + 1;
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (acc[a].peak != acc[b].peak) return acc[a].peak > acc[b].peak;
    return acc[a].first < acc[b].first;
  });
  if (int64_t(order.size()) > max_regions) order.resize(size_t(max_regions));
  std::vector<Region> out;
  const int64_t cells = rows * cols;
  for (int32_t i : order) {
    const Acc& a = acc[i];
    const int64_t x0 = a.c0 * width / cols, y0 = a.r0 * height / rows;
    const int64_t x1 = ((a.c1 + 1) * width + cols - 1) / cols, y1 = ((a.r1 + 1) * height + rows - 1) / rows;
    const int64_t area = (2 * a.pixels * height * width + cells) / (2 * cells);
    out.push_back({x0, y0, x1 - x0, y1 - y0, area, a.peak, a.sum / double(a.pixels)});
  }
  return out;
}

nlohmann::json regions_json(const std::vector<Region>& regions) {
  nlohmann::json out = nlohmann::json::array();
  for (const Region& r : regions)
    out.push_back({{"bbox", {r.x, r.y, r.width, r.height}}, {"area", r.area}, {"peak", double(r.peak)},
                   {"mean", r.mean}});
  return out;
}

}  // namespace scanner
