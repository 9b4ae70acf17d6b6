// CPU epilogue of skipgan::conv_bn_act_out, per instruction set (see isa.h): ONE pass over the conv output
// y that applies scale/shift and one or two activations in fp32 and writes both outputs (any strides).
#pragma once

#include <algorithm>

#include "../activation.h"
#include "vec_io.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {
namespace epilogue_detail {

// Elements staged in an fp32 scratch row (L1-resident) between the affine step and the activations:
// y is read from memory once, then each output is produced from the scratch.
constexpr int64_t kBlock = 512;

// tanh as a rational function of v (Eigen's fast float tanh: odd degree-13 / even degree-6 polynomials on
// [-7.9, 7.9], clamped outside, v itself below 4e-4): within 2.2 ulp / 1.1e-7 of tanh (measured over +-12 and
// 1e-10..16), where at::vec's v.tanh() (Sleef_tanhf16_u10, 1 ulp) cost 5x as much here: 3.1 ms per 1M values on
// one AVX-512 core against 0.6 ms (torch.tanh: 0.44 ms). The last layer applies it K times per pixel in probe
// mode. NaN stays NaN (clamp keeps it, the final blend does not select it away).
inline Vec tanh_fast(const Vec& v) {
  const Vec x = at::vec::clamp(v, Vec(-7.90531110763549805f), Vec(7.90531110763549805f));
  const Vec x2 = x * x;
  Vec p = at::vec::fmadd(x2, Vec(-2.76076847742355e-16f), Vec(2.00018790482477e-13f));
  p = at::vec::fmadd(p, x2, Vec(-8.60467152213735e-11f));
  p = at::vec::fmadd(p, x2, Vec(5.12229709037114e-08f));
  p = at::vec::fmadd(p, x2, Vec(1.48572235717979e-05f));
  p = at::vec::fmadd(p, x2, Vec(6.37261928875436e-04f));
  p = at::vec::fmadd(p, x2, Vec(4.89352455891786e-03f));
  p = p * x;
  Vec q = at::vec::fmadd(x2, Vec(1.19825839466702e-06f), Vec(1.18534705686654e-04f));
  q = at::vec::fmadd(q, x2, Vec(2.26843463243900e-03f));
  q = at::vec::fmadd(q, x2, Vec(4.89352518554385e-03f));
  return Vec::blendv(p / q, v, v.abs() < Vec(0.0004f));
}

template <int ACT>
inline Vec act_vec(const Vec& v, const Vec& slope) {
  const Vec zero(0.f);
  if constexpr (ACT == kActReLU) {
    return Vec::blendv(zero, v, v > zero);
  } else if constexpr (ACT == kActLeakyReLU) {
    return Vec::blendv(v * slope, v, v > zero);
  } else if constexpr (ACT == kActTanh) {
    return tanh_fast(v);
  } else if constexpr (ACT == kActSigmoid) {
    const Vec one(1.f);
    return one / (one + v.neg().exp());
  } else {
    return v;
  }
}

// buf[i] = y[i] * scale + shift: per element (scale/shift arrays, channels_last rows) or one value for the
// whole run (s0, b0: an NCHW plane); absent arrays mean 1 and 0.
template <typename T>
inline void affine(const T* y, int64_t n, const float* scale, const float* shift, float s0, float b0, float* buf) {
  int64_t i = 0;
  Vec a, b;
  const int64_t h = Vec::size();
  if (scale == nullptr && shift == nullptr) {
    const Vec vs(s0), vb(b0);
    for (; i + kStep <= n; i += kStep) {
      load2(y + i, a, b);
      at::vec::fmadd(a, vs, vb).store(buf + i);
      at::vec::fmadd(b, vs, vb).store(buf + i + h);
    }
    for (; i < n; ++i) buf[i] = static_cast<float>(y[i]) * s0 + b0;
    return;
  }
  const Vec one(1.f), zero(0.f);
  for (; i + kStep <= n; i += kStep) {
    load2(y + i, a, b);
    const Vec sa = scale ? Vec::loadu(scale + i) : one, sb = scale ? Vec::loadu(scale + i + h) : one;
    const Vec ba = shift ? Vec::loadu(shift + i) : zero, bb = shift ? Vec::loadu(shift + i + h) : zero;
    at::vec::fmadd(a, sa, ba).store(buf + i);
    at::vec::fmadd(b, sb, bb).store(buf + i + h);
  }
  for (; i < n; ++i) buf[i] = static_cast<float>(y[i]) * (scale ? scale[i] : 1.f) + (shift ? shift[i] : 0.f);
}

template <typename T, int ACT>
inline void store_act_impl(const float* buf, int64_t n, float slope, T* out, int64_t stride) {
  const Vec vslope(slope);
  if (stride != 1) {
    // Strided output: activation vectorised into a scratch first (a scalar tanhf costs ~20 ns), then the
    // strided copy.
    alignas(64) float act[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
      const int64_t m = std::min(kBlock, n - i0);
      store_act_impl<float, ACT>(buf + i0, m, slope, act, 1);
      for (int64_t i = 0; i < m; ++i) out[(i0 + i) * stride] = static_cast<T>(act[i]);
    }
    return;
  }
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    store2(out + i, act_vec<ACT>(Vec::loadu(buf + i), vslope), act_vec<ACT>(Vec::loadu(buf + i + Vec::size()), vslope));
  }
  for (; i < n; ++i) out[i] = static_cast<T>(apply_act(ACT, buf[i], slope));
}

// The activation is chosen once per block, not per element, so the inner loops stay branch-free.
template <typename T>
inline void store_act(const float* buf, int64_t n, int act, float slope, T* out, int64_t stride) {
  switch (act) {
    case kActReLU:
      return store_act_impl<T, kActReLU>(buf, n, slope, out, stride);
    case kActLeakyReLU:
      return store_act_impl<T, kActLeakyReLU>(buf, n, slope, out, stride);
    case kActTanh:
      return store_act_impl<T, kActTanh>(buf, n, slope, out, stride);
    case kActSigmoid:
      return store_act_impl<T, kActSigmoid>(buf, n, slope, out, stride);
    default:
      return store_act_impl<T, kActNone>(buf, n, slope, out, stride);
  }
}

// g pixels (C values each, pre-activation in buf) starting at pixel r, stored through arbitrary output
// strides o: the activation runs vectorised over all g * C values, then each pixel is copied out. No division
// per pixel: the n, h, w counters advance.
template <typename T>
inline void store_pixels(const float* buf, int64_t g, const EpilogueParams& p, int64_t r, int act, T* out,
                         const int64_t* o) {
  const int64_t C = p.C, H = p.H, W = p.W;
  alignas(64) float v[kBlock];
  store_act<float>(buf, g * C, act, p.slope, v, 1);
  int64_t n = r / (H * W), h = (r % (H * W)) / W, w = r % W;
  for (int64_t j = 0; j < g; ++j) {
    T* dst = out + n * o[0] + h * o[2] + w * o[3];
    for (int64_t c = 0; c < C; ++c) dst[c * o[1]] = static_cast<T>(v[j * C + c]);
    if (++w == W) {
      w = 0;
      if (++h == H) {
        h = 0;
        ++n;
      }
    }
  }
}

// One run of n consecutive conv-output elements, written to out / out2 from the given offsets with
// element strides s1 / s2.
template <typename T>
inline void run_segment(const EpilogueParams& p, const T* y, int64_t n, const float* scale, const float* shift,
                        float s0, float b0, int64_t off1, int64_t s1, int64_t off2, int64_t s2, float* buf) {
  T* out = static_cast<T*>(p.out);
  T* out2 = static_cast<T*>(p.out2);
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    affine(y + i, m, scale ? scale + i : nullptr, shift ? shift + i : nullptr, s0, b0, buf);
    store_act(buf, m, p.act, p.slope, out + off1 + i * s1, s1);
    if (out2) store_act(buf, m, p.act2, p.slope, out2 + off2 + i * s2, s2);
  }
}

template <typename T>
void rows(const EpilogueParams& p, int64_t begin, int64_t end) {
  alignas(64) float buf[kBlock];
  const T* y = static_cast<const T*>(p.y);
  const int64_t C = p.C, H = p.H, W = p.W, HW = H * W;
  const int64_t* o1 = p.out_stride;
  const int64_t* o2 = p.out2 ? p.out2_stride : p.out_stride;
  if (!p.channels_last) {
    // Row r = (n, c) plane, one scale/shift. A plane is one segment when every output holds it contiguously
    // (true for channel slices of an NCHW buffer), else one segment per image row.
    auto plane_dense = [&](const int64_t* s) { return (W == 1 || s[3] == 1) && (H == 1 || s[2] == W); };
    const bool whole = plane_dense(o1) && plane_dense(o2);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / C, c = r % C;
      const float s0 = p.scale ? p.scale[c] : 1.f, b0 = p.shift ? p.shift[c] : 0.f;
      const int64_t base1 = n * o1[0] + c * o1[1], base2 = n * o2[0] + c * o2[1];
      if (whole) {
        run_segment<T>(p, y + r * HW, HW, nullptr, nullptr, s0, b0, base1, 1, base2, 1, buf);
      } else {
        for (int64_t h = 0; h < H; ++h) {
          run_segment<T>(p, y + r * HW + h * W, W, nullptr, nullptr, s0, b0, base1 + h * o1[2], o1[3],
                         base2 + h * o2[2], o2[3], buf);
        }
      }
    }
  } else {
    // Row r = pixel holding C channels; scale/shift vary along the row. Channel slices of a channels_last
    // buffer have channel stride 1, so these stores are contiguous.
    auto nhwc_dense = [&](const int64_t* s) {
      return (C == 1 || s[1] == 1) && (W == 1 || s[3] == C) && (H == 1 || s[2] == W * C) &&
             (p.N == 1 || s[0] == HW * C);
    };
    const int64_t group = kBlock / C;
    if (group >= 2) {
      // Few channels (e.g. the 3-channel last layer): per-pixel segments would be all overhead. Take `group`
      // whole pixels at a time: one vectorised affine pass over group * C contiguous y values with scale /
      // shift repeated, then the stores -- one run when the outputs are laid out exactly like y, else per pixel.
      alignas(64) float pat_s[kBlock], pat_b[kBlock];
      for (int64_t i = 0; i < group * C; ++i) {
        pat_s[i] = p.scale ? p.scale[i % C] : 1.f;
        pat_b[i] = p.shift ? p.shift[i % C] : 0.f;
      }
      const bool dense = nhwc_dense(o1) && nhwc_dense(o2);
      T* out = static_cast<T*>(p.out);
      T* out2 = static_cast<T*>(p.out2);
      for (int64_t r = begin; r < end; r += group) {
        const int64_t g = std::min(group, end - r);
        affine(y + r * C, g * C, pat_s, pat_b, 1.f, 0.f, buf);
        if (dense) {
          store_act(buf, g * C, p.act, p.slope, out + r * C, 1);
          if (out2) store_act(buf, g * C, p.act2, p.slope, out2 + r * C, 1);
          continue;
        }
        store_pixels(buf, g, p, r, p.act, out, o1);
        if (out2) store_pixels(buf, g, p, r, p.act2, out2, o2);
      }
      return;
    }
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / HW, h = (r % HW) / W, w = r % W;
      run_segment<T>(p, y + r * C, C, p.scale, p.shift, 1.f, 0.f, n * o1[0] + h * o1[2] + w * o1[3], o1[1],
                     n * o2[0] + h * o2[2] + w * o2[3], o2[1], buf);
    }
  }
}

}  // namespace epilogue_detail

inline void epilogue_rows(const EpilogueParams& p, int64_t begin, int64_t end) {
  dispatch_dtype(p.dtype, [&](auto tag) { epilogue_detail::rows<decltype(tag)>(p, begin, end); });
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
