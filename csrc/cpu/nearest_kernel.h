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

// The exact squared distance of q [c] to memory row `row` (rows of c floats from `mem`), summed in a fixed order.
inline float exact_sq(const float* q, const float* mem, int64_t row, int64_t c) {
  const float* m = mem + row * c;
  float s = 0.f;
  for (int64_t k = 0; k < c; ++k) {
    const float d = q[k] - m[k];
    s += d * d;
  }
  return s;
}

// Two passes: the row's minimum, then the exact sum of every row within `tau` of it (the fallback of the one-pass
// scan below when a row has more candidates than it keeps).
inline float nearest_in_row_two_pass(const float* g, int64_t n, float tau, const float* q, const float* mem,
                                     int64_t c) {
  float low = std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) low = std::min(low, g[j]);
  float best = std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j)
    if (g[j] <= low + tau) best = std::min(best, exact_sq(q, mem, j, c));
  return best;
}

constexpr int kMaxCandidates = 64;

// g[0..n): the GEMM's |m_j|² − 2 q·m_j of one query q [c] against rows mem[j·c .. j·c + c). Every row whose value
// lies within `tau` (the GEMM's error bound) of the smallest may be the true nearest: those (usually one) get the
// exact Σ (q − m_j)². Returns the smallest exact value (+inf for n = 0). One vectorised pass: a block of lanes is
// looked at in scalar code only when one of its values lies within tau of the running minimum, and such rows are
// kept as candidates; every row within tau of the final minimum was within tau of the running one when it was seen
// (the minimum only falls), so filtering the candidates at the end loses none. The running minimum's new values
// are the usual candidates (about ln n of them); more than kMaxCandidates falls back to two passes.
inline float nearest_in_row(const float* g, int64_t n, float tau, const float* q, const float* mem, int64_t c) {
  float low = std::numeric_limits<float>::infinity();
  int64_t cand[kMaxCandidates];
  int count = 0;
  bool overflow = false;
  auto visit = [&](int64_t i) {
    const float v = g[i];
    if (!(v <= low + tau)) return;
    low = std::min(low, v);
    if (count < kMaxCandidates)
      cand[count++] = i;
    else
      overflow = true;
  };
  const int all_false = (1 << Vec::size()) - 1;  // zero_mask: a bit per lane whose compare was false (zero)
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) {
    if ((Vec::loadu(g + j) <= Vec(low + tau)).zero_mask() == all_false) continue;
    for (int64_t i = j; i < j + Vec::size(); ++i) visit(i);
  }
  for (; j < n; ++j) visit(j);
  if (overflow) return nearest_in_row_two_pass(g, n, tau, q, mem, c);
  float best = std::numeric_limits<float>::infinity();
  for (int k = 0; k < count; ++k)
    if (g[cand[k]] <= low + tau) best = std::min(best, exact_sq(q, mem, cand[k], c));
  return best;
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
