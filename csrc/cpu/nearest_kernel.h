// CPU scan of skipgan::nearest_distances, per instruction set (see isa.h): one query's row of GEMM values against
// one memory block -> the exact squared distance to the nearest row. The caller (nearest.cpp) computes the rows
// with a GEMM (at::addmm) and runs this on every row of a block in parallel.
#pragma once

#include <algorithm>
#include <limits>

#include "isa.h"
#include "vec_io.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {

// g[0..n): the GEMM's |m_j|² − 2 q·m_j of one query q [c] against rows mem[j·c .. j·c + c). Every row whose value
// lies within `tau` (the GEMM's error bound) of the smallest may be the true nearest: those (usually one) get the
// exact Σ (q − m_j)². Returns the smallest exact value (+inf for n = 0). Two passes over g, both vectorised: the
// minimum, then a compare that drops to scalar code only in a block of lanes holding a candidate.
inline float nearest_in_row(const float* g, int64_t n, float tau, const float* q, const float* mem, int64_t c) {
  float low = std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if (n >= Vec::size()) {
    Vec m = Vec::loadu(g);
    for (j = Vec::size(); j + Vec::size() <= n; j += Vec::size()) m = at::vec::minimum(m, Vec::loadu(g + j));
    low = at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return at::vec::minimum(a, b); }, m);
  }
  for (; j < n; ++j) low = std::min(low, g[j]);
  const float bound = low + tau;
  const Vec vbound(bound);
  float best = std::numeric_limits<float>::infinity();
  auto exact = [&](int64_t row) {
    const float* m = mem + row * c;
    float s = 0.f;
    for (int64_t k = 0; k < c; ++k) {
      const float d = q[k] - m[k];
      s += d * d;
    }
    best = std::min(best, s);
  };
  const int all_false = (1 << Vec::size()) - 1;  // zero_mask: a bit per lane whose compare was false (zero)
  for (j = 0; j + Vec::size() <= n; j += Vec::size()) {
    if ((Vec::loadu(g + j) <= vbound).zero_mask() == all_false) continue;
    for (int64_t i = j; i < j + Vec::size(); ++i)
      if (g[i] <= bound) exact(i);
  }
  for (; j < n; ++j)
    if (g[j] <= bound) exact(j);
  return best;
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
