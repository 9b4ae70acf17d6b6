// Test hook for the CUDA kernels' grid-stride loops: a cap on the blocks one launch starts, so that a test can
// make a batch (or a tensor) larger than the grid and run the loop's later iterations. Plain C++ (no torch
// headers): the .cu files include it. Set from Python with torch.ops.skipgan._set_cuda_grid_cap(n).
#pragma once

#include <cstdint>

namespace skipgan {

// The current cap; 0 (the default): none beyond each kernel's own grid size.
int grid_cap();
// Sets the cap (negative: 0) and returns the previous one. A process-wide setting, for tests only (the op
// skipgan::_set_cuda_grid_cap checks its argument).
int set_grid_cap(int cap);

// The grid of a launch: `needed` blocks, at most `limit` (the kernel's own bound), at most the cap, at least 1.
inline int capped_grid(int64_t needed, int64_t limit) {
  int64_t g = needed < limit ? needed : limit;
  const int cap = grid_cap();
  if (cap > 0 && g > cap) g = cap;
  return static_cast<int>(g < 1 ? 1 : g);
}

}  // namespace skipgan
