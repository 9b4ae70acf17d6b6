// CPU kernel of skipgan::col2im_bias_act_out, per instruction set (see isa.h): the column fold of a transposed
// convolution computed as a GEMM, then the conv_bn_act epilogue (conv_bn_act_kernel.h's affine / store_act),
// one output row (n, oy) at a time. Each cols element is read once, each output element written once.
//
// Layout: cols is [N, H, W, kH, kW, C]: every tap is a contiguous run of C values, and so is every output
// pixel of a row kept pixel-major (acc[ox * C + c]). The fold sums, per output pixel, the C-vectors of the taps
// landing on it (vectorised over C, masked loads for the few-channel layers), and the finished row is in the
// order of a channels_last pixel row, which is what the epilogue's per-pixel scale / shift and the stores expect.
#pragma once

#include "conv_bn_act_kernel.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {
namespace col2im_detail {

using epilogue_detail::affine;
using epilogue_detail::kBlock;
using epilogue_detail::store_act;

// Channels [c0, c0 + m) of one tap added to the fp32 accumulators (a: the first Vec::size(), b: the rest);
// m <= kStep. Partial chunks (few channels) use masked / counted loads, never reading past the tap.
template <typename T>
inline void add_tap(const T* src, int64_t m, Vec& a, Vec& b) {
  constexpr int64_t h = Vec::size();
  if (m == kStep) {
    Vec x, y;
    load2(src, x, y);
    a = a + x;
    b = b + y;
  } else if constexpr (std::is_same_v<T, float>) {
    a = a + Vec::loadu(src, m < h ? m : h);
    if (m > h) b = b + Vec::loadu(src + h, m - h);
  } else {
    const auto [x, y] = at::vec::convert_to_float<T>(at::vec::Vectorized<T>::loadu(src, m));
    a = a + x;
    b = b + y;
  }
}

// n <= Vec::size() values as fp32, the other lanes 0.
template <typename T>
inline Vec load_part(const T* src, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return Vec::loadu(src, n);
  } else {
    const auto [x, y] = at::vec::convert_to_float<T>(at::vec::Vectorized<T>::loadu(src, n));
    (void)y;
    return x;
  }
}

inline void store_chunk(float* dst, int64_t m, const Vec& a, const Vec& b) {
  constexpr int64_t h = Vec::size();
  if (m == kStep) {
    a.store(dst);
    b.store(dst + h);
  } else {
    a.store(dst, m < h ? m : h);
    if (m > h) b.store(dst + h, m - h);
  }
}

// Taps of an interior block listed once per row (fold_row); more than this and every block takes the general
// path (kernels far larger than stride, which the generator does not have).
constexpr int64_t kMaxTaps = 64;

// z row (n, oy) into acc[Wo * C], pixel-major, a block of sW output pixels at a time: each chunk of the block is
// summed over its taps in registers and stored once. Block beta holds the pixels ox with ox + pW in
// [beta * sW, beta * sW + sW); tap j (kernel columns kx = j * sW + e for the block's pixel e) comes from input
// column ix = beta - j, and those kx are ONE contiguous run of cols (kx-major, C innermost) laid out exactly
// like the block (pixel-major), so a tap is one vector load per chunk, whatever C is (6 values for RGB with
// stride 2). Summing per output block, not scattering each input pixel's kW taps into the row, means no add
// re-reads a value just stored: with few channels the scattered runs overlap at misaligned offsets and every
// add waited for a failed store-to-load forward (2-4x slower for C = 3). Each cols value is still read once.
// Taps in a fixed order (ky, then kx ascending), so the sums do not depend on the thread count.
template <typename T>
inline void fold_row(const Col2imParams& q, const T* cols, int64_t n, int64_t oy, float* acc) {
  const int64_t C = q.e.C, Wo = q.e.W, s = q.sW;
  const int64_t run = q.kW * C;    // one (input pixel, ky) run of taps: kx-major, C innermost
  const int64_t pix = q.kH * run;  // cols values per input pixel
  const int64_t J = (q.kW + s - 1) / s;  // taps per kernel row of a block
  // Kernel rows hitting oy: ky = oy + pH - iy * sH, i.e. ky = (oy + pH) mod sH, then every sH-th, with iy
  // stepping down by one. Skip those whose iy is past the input; one division per row, none per element.
  int64_t ky0 = (oy + q.pH) % q.sH, iy0 = (oy + q.pH) / q.sH;
  for (; ky0 < q.kH && iy0 >= q.H; ky0 += q.sH) --iy0;
  const T* img = cols + n * q.H * q.W * pix;

  // Interior blocks (every tap's ix inside the input, the whole block inside the output row) read their taps
  // at fixed offsets from img + beta * pix: list them once, so the per-block loop is loads and adds only.
  int64_t tap_off[kMaxTaps], tap_len[kMaxTaps];
  int64_t ntaps = 0;
  for (int64_t ky = ky0, iy = iy0; ky < q.kH && iy >= 0; ky += q.sH, --iy) {
    for (int64_t j = 0; j < J; ++j) {
      if (ntaps < kMaxTaps) {
        tap_off[ntaps] = iy * q.W * pix + ky * run - j * pix + j * s * C;
        tap_len[ntaps] = ((q.kW - j * s) < s ? q.kW - j * s : s) * C;  // the last tap may cover fewer pixels
      }
      ++ntaps;
    }
  }
  const int64_t u_end = q.pW + Wo;  // ox + pW < u_end
  // beta >= J - 1 (ix = beta - j >= 0), beta < W, beta * s >= pW, beta * s + s <= u_end
  int64_t fast_lo = J - 1 > (q.pW + s - 1) / s ? J - 1 : (q.pW + s - 1) / s;
  int64_t fast_hi = q.W < u_end / s ? q.W : u_end / s;
  if (ntaps > kMaxTaps) fast_lo = fast_hi = 0;
  const int64_t bw = s * C;  // values per block

  for (int64_t beta = q.pW / s; beta * s < u_end; ++beta) {
    const int64_t u0 = beta * s;
    if (beta >= fast_lo && beta < fast_hi && bw <= Vec::size()) {
      // The few-channel layers (a block of at most one vector, e.g. 6 values for RGB with stride 2): one
      // masked load per tap, one masked store, nothing else (the general chunk loop costs 4x more here).
      const T* base = img + beta * pix;
      Vec a(0.f);
      for (int64_t t = 0; t < ntaps; ++t) a = a + load_part(base + tap_off[t], tap_len[t]);
      a.store(acc + (u0 - q.pW) * C, bw);
      continue;
    }
    if (beta >= fast_lo && beta < fast_hi) {
      const T* base = img + beta * pix;
      float* dst = acc + (u0 - q.pW) * C;
      for (int64_t c0 = 0; c0 < bw; c0 += kStep) {
        const int64_t m = bw - c0 < kStep ? bw - c0 : kStep;
        Vec a(0.f), b(0.f);
        for (int64_t t = 0; t < ntaps; ++t) {
          const int64_t have = tap_len[t] - c0;
          if (have > 0) add_tap(base + tap_off[t] + c0, have < m ? have : m, a, b);
        }
        store_chunk(dst + c0, m, a, b);
      }
      continue;
    }
    // General block: clipped to the output row, taps whose ix falls outside the input skipped.
    const int64_t e_lo = q.pW > u0 ? q.pW - u0 : 0;       // first block pixel inside the output
    const int64_t e_hi = u_end < u0 + s ? u_end - u0 : s;  // one past the last
    const int64_t len = (e_hi - e_lo) * C;
    float* dst = acc + (u0 + e_lo - q.pW) * C;
    for (int64_t c0 = 0; c0 < len; c0 += kStep) {
      const int64_t m = len - c0 < kStep ? len - c0 : kStep;
      Vec a(0.f), b(0.f);
      for (int64_t ky = ky0, iy = iy0; ky < q.kH && iy >= 0; ky += q.sH, --iy) {
        const T* row = img + iy * q.W * pix + ky * run + e_lo * C + c0;
        for (int64_t j = 0, ix = beta; ix >= 0; ++j, --ix) {
          const int64_t kx_end = q.kW - j * s;  // block pixels e < kx_end have this tap
          if (kx_end <= e_lo) break;
          if (ix >= q.W) continue;
          // A last tap that covers only the first pixels of the block (kW not a multiple of sW): load just
          // those; the masked / counted loads leave the other lanes 0.
          const int64_t have = ((kx_end < e_hi ? kx_end : e_hi) - e_lo) * C - c0;
          if (have > 0) add_tap(row + ix * pix + j * s * C, have < m ? have : m, a, b);
        }
      }
      store_chunk(dst + c0, m, a, b);
    }
  }
}

// acc = acc * scale + shift over a row of Wo pixels, in place. `group` pixels per affine() call with the
// scale / shift pattern repeated (pat_*) when C is small, so the few-channel rows stay vectorised.
inline void affine_row(const EpilogueParams& p, float* acc, int64_t group, const float* pat_s, const float* pat_b) {
  if (p.scale == nullptr && p.shift == nullptr) return;
  const int64_t C = p.C, Wo = p.W;
  for (int64_t j = 0; j < Wo; j += group) {
    const int64_t g = Wo - j < group ? Wo - j : group;
    affine(acc + j * C, g * C, pat_s, pat_b, 1.f, 0.f, acc + j * C);
  }
}

// Row (n, oy) of out = act(z) for z pixel-major in `z`: one vectorised store when out holds the row pixel-major
// too (channels_last, dense within the row), else the activation into the fp32 scratch `v` and a strided copy
// ordered along the smaller output stride (the planes of an NCHW output are written contiguously).
template <typename T>
inline void store_row(const EpilogueParams& p, const float* z, int act, T* out, const int64_t* o, int64_t n,
                      int64_t oy, float* v) {
  const int64_t C = p.C, Wo = p.W;
  T* dst = out + n * o[0] + oy * o[2];
  if ((C == 1 || o[1] == 1) && (Wo == 1 || o[3] == C)) {
    store_act<T>(z, Wo * C, act, p.slope, dst, 1);
    return;
  }
  store_act<float>(z, Wo * C, act, p.slope, v, 1);
  if (o[3] <= o[1]) {
    for (int64_t c = 0; c < C; ++c) {
      T* d = dst + c * o[1];
      for (int64_t x = 0; x < Wo; ++x) d[x * o[3]] = static_cast<T>(v[x * C + c]);
    }
  } else {
    for (int64_t x = 0; x < Wo; ++x) {
      T* d = dst + x * o[3];
      for (int64_t c = 0; c < C; ++c) d[c * o[1]] = static_cast<T>(v[x * C + c]);
    }
  }
}

// wsum += w * a over a row, w the probe weights of (k, oy) expanded to pixel-major order in `w`.
inline void probe_accumulate(const Col2imParams& q, int64_t k, int64_t oy, const float* a, float* w, float* wsum) {
  const int64_t C = q.e.C, Wo = q.e.W, L = Wo * C;
  const int64_t* s = q.pw_stride;
  const float* pw = q.probe_weight + k * s[0] + oy * s[2];
  if (s[1] == 0) {
    for (int64_t x = 0; x < Wo; ++x) {
      const float wx = pw[x * s[3]];
      for (int64_t c = 0; c < C; ++c) w[x * C + c] = wx;
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t x = 0; x < Wo; ++x) w[x * C + c] = pw[c * s[1] + x * s[3]];
    }
  }
  int64_t i = 0;
  for (; i + Vec::size() <= L; i += Vec::size()) {
    at::vec::fmadd(Vec::loadu(w + i), Vec::loadu(a + i), Vec::loadu(wsum + i)).store(wsum + i);
  }
  for (; i < L; ++i) wsum[i] += w[i] * a[i];
}

template <typename T>
void rows(const Col2imParams& q, int64_t begin, int64_t end, float* scratch) {
  const EpilogueParams& p = q.e;
  const T* cols = static_cast<const T*>(q.cols);
  T* out = static_cast<T*>(p.out);
  T* out2 = static_cast<T*>(p.out2);
  const int64_t C = p.C, Ho = p.H, L = p.W * C;
  float* acc = scratch;    // z of one row, then act(z * scale + shift) in probe mode
  float* v = acc + L;      // activation scratch of the strided stores
  float* w = v + L;        // probe mode: the row's weights
  float* wsum = w + L;     // probe mode: the weighted sum over probes

  // Few channels: whole pixels per affine() call with scale / shift repeated (as in conv_bn_act_kernel.h's
  // channels_last rows); otherwise one pixel per call with the [C] arrays themselves.
  alignas(64) float pat_s[kBlock], pat_b[kBlock];
  int64_t group = 1;
  const float* ps = p.scale;
  const float* pb = p.shift;
  if (C <= kBlock / 2) {
    group = kBlock / C;
    for (int64_t i = 0; i < group * C; ++i) {
      const int64_t c = i % C;  // once per task, not per element of the fold
      pat_s[i] = p.scale ? p.scale[c] : 1.f;
      pat_b[i] = p.shift ? p.shift[c] : 0.f;
    }
    ps = pat_s;
    pb = pat_b;
  }

  int64_t n = begin / Ho, oy = begin % Ho;
  for (int64_t r = begin; r < end; ++r) {
    if (q.probe_weight == nullptr) {
      fold_row(q, cols, n, oy, acc);
      affine_row(p, acc, group, ps, pb);
      store_row(p, acc, p.act, out, p.out_stride, n, oy, v);
      if (out2) store_row(p, acc, p.act2, out2, p.out2_stride, n, oy, v);
    } else {
      // n is the output sample b; probe k's reconstruction of it is cols row k * B + b.
      for (int64_t i = 0; i < L; ++i) wsum[i] = 0.f;
      for (int64_t k = 0; k < q.K; ++k) {
        fold_row(q, cols, k * p.N + n, oy, acc);
        affine_row(p, acc, group, ps, pb);
        store_act<float>(acc, L, p.act, p.slope, acc, 1);  // in place: each block is read before written
        probe_accumulate(q, k, oy, acc, w, wsum);
      }
      store_row(p, wsum, kActNone, out, p.out_stride, n, oy, v);
    }
    if (++oy == Ho) {
      oy = 0;
      ++n;
    }
  }
}

}  // namespace col2im_detail

// Output rows [begin, end) (r = n * Ho + oy). scratch: at least col2im_scratch_floats(q) floats.
inline void col2im_rows(const Col2imParams& q, int64_t begin, int64_t end, float* scratch) {
  dispatch_dtype(q.e.dtype, [&](auto tag) { col2im_detail::rows<decltype(tag)>(q, begin, end, scratch); });
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
