// CPU kernel of skipgan::quantize_u8_out, per instruction set (see isa.h): out = clamp(round(x / scale) + zero, 0,
// 255) as uint8 over elements [begin, end), round half to even (the default rounding mode, as torch.round), the
// division a true division as in skipgan.quant.int8.quantize_input (x * (1 / scale) would round differently).
#pragma once

#include <algorithm>
#include <cmath>

#include "isa.h"
#include "vec_io.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {

template <typename T>
inline void quantize_u8_typed(const T* x, int64_t begin, int64_t end, float scale, float zero, uint8_t* out) {
  const Vec vs(scale), vz(zero), lo(0.f), hi(255.f);
  alignas(64) float tmp[kStep];
  int64_t i = begin;
  for (; i + kStep <= end; i += kStep) {
    Vec a, b;
    load2(x + i, a, b);
    a = at::vec::clamp((a / vs).round() + vz, lo, hi);
    b = at::vec::clamp((b / vs).round() + vz, lo, hi);
    a.store(tmp);
    b.store(tmp + Vec::size());
    for (int64_t k = 0; k < kStep; ++k) out[i + k] = static_cast<uint8_t>(tmp[k]);  // exact: integral, in range
  }
  for (; i < end; ++i) {
    const float v = std::nearbyint(static_cast<float>(x[i]) / scale) + zero;
    out[i] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, v)));
  }
}

inline void quantize_u8(const void* x, DType t, int64_t begin, int64_t end, float scale, int32_t zero,
                        uint8_t* out) {
  dispatch_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    quantize_u8_typed(static_cast<const T*>(x), begin, end, scale, static_cast<float>(zero), out);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
