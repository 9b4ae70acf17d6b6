// The CPU epilogue pass shared by conv_bn_act_out and bias_act_out: the kernel copy for this CPU
// (conv_bn_act_kernel.h via isa.h) over rows of a dense y, split over threads.
#pragma once

#include <algorithm>

#include <ATen/Parallel.h>

#include "../params.h"
#include "isa.h"

namespace skipgan::cpu {

inline void run_epilogue(const EpilogueParams& p) {
  // Rows: (n, c) planes of H*W elements for NCHW y, pixels of C elements for channels_last y.
  const int64_t rows = p.channels_last ? p.N * p.H * p.W : p.N * p.C;
  const int64_t row_len = p.channels_last ? p.C : p.H * p.W;
  if (rows * row_len == 0) return;
  const auto fn = kernels().epilogue_rows;
  const int64_t grain = std::max<int64_t>(1, 32768 / row_len);  // ~32K elements per task
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { fn(p, begin, end); });
}

}  // namespace skipgan::cpu
