// Device-independent half of skipgan::nearest_distances: the argument checks and the GEMM error bound the
// kernels' candidate window is built on.
#pragma once

#include <ATen/core/Tensor.h>

namespace skipgan {

// The GEMM value of a candidate row may be the true nearest's when it lies within
// kWindowUlps · C · u · (|q|² + max |m|²) of the block's smallest (u = 2^-24, the fp32 unit roundoff): a C-term fp32
// dot product errs by at most C·u·|q||m| in any summation order, the norms and the addition by a few u more.
// skipgan/model/patch_knn.py WINDOW_ULPS is the same number.
constexpr float kWindowUlps = 8.f;

// queries fp32 [Q, C], memory fp32 [M >= 1, C], memory_sq fp32 [M]; query_block, memory_block >= 1.
void nearest_distances_check(const char* op, const at::Tensor& queries, const at::Tensor& memory,
                             const at::Tensor& memory_sq, int64_t query_block, int64_t memory_block);

}  // namespace skipgan
