// Regions of an anomaly map above its calibrated contour threshold: the definition of skipgan/regions.py (its
// docstring is the specification), computed the same way so that `skipgan score` and the scanner print the same
// `regions` (tests/test_scanner.py compares them). No libtorch: a plain float map in, plain numbers out.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace scanner {

struct Region {
  int64_t x, y, width, height;  // bounding box in the input image's own pixels
  int64_t area;                 // map pixels x (H·W)/S², rounded half up
  float peak;                   // largest map value (σ units)
  double mean;                  // mean map value, summed in double in raster order
};

// map: rows x cols floats (row-major) for an image of height x width pixels. Pixels strictly above `threshold`,
// 8-connected; ordered by peak (largest first; ties by the first pixel in raster order); at most max_regions.
std::vector<Region> find_regions(const float* map, int64_t rows, int64_t cols, float threshold, int64_t height,
                                 int64_t width, int64_t max_regions);

// [{"bbox": [x, y, w, h], "area", "peak", "mean"}, ...] as `skipgan score` writes them.
nlohmann::json regions_json(const std::vector<Region>& regions);

}  // namespace scanner
