// The per-thread sums of the anomaly_score CUDA kernel (anomaly_score_kernel.cu): which elements thread `tid` of
// the block adds, in which order. Host-compilable (no CUDA header, no torch header), so that
// tests/test_ops_anomaly_score.py runs this very code on the CPU and checks that the order depends on the sizes
// alone, never on where a sample lies in memory (its place in the batch decides its alignment).
//
// The rule, for a span of n elements (features) or npix pixels (planar image part): the groups of V consecutive
// elements (V = 16 bytes of the element type) g = tid, tid + kScoreThreads, ..., each added element by element
// in order, then the tail elements (n / V) * V + tid, ... . A group is loaded with one 128-bit load when both
// pointers are 16-byte aligned and with V scalar loads otherwise: the same values added in the same order.
//
// The includer declares skipgan::cuda::to_float(T) for each element type first (device_utils.cuh on the device).
#pragma once

#include <cstdint>
#include <cstring>

#include "../params.h"

#ifdef __CUDACC__
#define SKIPGAN_SCORE_FN __device__ __forceinline__
#else
#define SKIPGAN_SCORE_FN inline
#endif

namespace skipgan::cuda {

constexpr int kScoreThreads = 512;  // threads per block of the score kernel: one block per sample

// 16 bytes of T: the unit of a 128-bit load.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

SKIPGAN_SCORE_FN bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The V values at p: one 128-bit load where `vec` (p 16-byte aligned), else V scalar loads.
template <typename T>
SKIPGAN_SCORE_FN Pack<T> load_pack(const T* p, bool vec) {
  Pack<T> r;
  if (vec) {
#ifdef __CUDACC__
    static_assert(sizeof(Pack<T>) == sizeof(uint4), "pack size");
    *reinterpret_cast<uint4*>(&r) = __ldg(reinterpret_cast<const uint4*>(p));
#else
    std::memcpy(&r, p, sizeof(r));
#endif
  } else {
#pragma unroll
    for (int k = 0; k < Pack<T>::kN; ++k) r.v[k] = p[k];
  }
  return r;
}

template <typename T>
SKIPGAN_SCORE_FN float sqdiff(T a, T b) {
  const float d = to_float(a) - to_float(b);
  return d * d;
}

// Image part with a border (p.margin > 0): this thread's pixels q = tid + k * kScoreThreads, all written to the
// map, only the interior ones (h in [m, H - m), w in [m, W - m)) added to the sum. (h, w) of q is advanced by the
// fixed step (kScoreThreads / W rows, kScoreThreads % W columns) instead of dividing per pixel.
template <typename T>
SKIPGAN_SCORE_FN float image_part_margin(const ScoreParams& p, const T* x, const T* xh, float* map, int tid) {
  const int64_t C = p.C, npix = p.npix, W = p.W, m = p.margin;
  const int64_t h_end = p.H - m, w_end = W - m;
  const int64_t dh = kScoreThreads / W, dw = kScoreThreads % W;
  const float inv_c = 1.f / static_cast<float>(C);
  // Element strides of channel c and of pixel q: planar (NCHW) or interleaved (NHWC).
  const int64_t c_stride = p.planar ? npix : 1, q_stride = p.planar ? 1 : C;
  float s = 0.f;
  int64_t h = tid / W, w = tid % W;
  for (int64_t q = tid; q < npix; q += kScoreThreads) {
    float acc = 0.f;
    for (int64_t c = 0; c < C; ++c) acc += sqdiff(x[c * c_stride + q * q_stride], xh[c * c_stride + q * q_stride]);
    if (map) map[q] = acc * inv_c;
    if (h >= m && h < h_end && w >= m && w < w_end) s += acc;
    h += dh;
    w += dw;
    if (w >= W) {
      w -= W;
      ++h;
    }
  }
  return s;
}

// Image part of one sample: this thread's share of sum (x - x_hat)^2, writing the per-pixel channel mean to `map`
// (nullable). Always the per-pixel path, with or without a map, so the scores do not depend on whether a map was
// asked for.
template <typename T>
SKIPGAN_SCORE_FN float image_part(const ScoreParams& p, const T* x, const T* xh, float* map, int tid) {
  if (p.margin > 0) return image_part_margin(p, x, xh, map, tid);
  const int64_t C = p.C, npix = p.npix;
  const float inv_c = 1.f / static_cast<float>(C);
  float s = 0.f;
  if (p.planar) {
    constexpr int V = Pack<T>::kN;
    // 128-bit loads where every channel plane starts 16-byte aligned (npix % V == 0 and aligned bases)
    const bool vec = npix % V == 0 && aligned16(x) && aligned16(xh);
    const int64_t groups = npix / V;
    for (int64_t g = tid; g < groups; g += kScoreThreads) {
      float acc[V];
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = 0.f;
      for (int64_t c = 0; c < C; ++c) {
        const Pack<T> a = load_pack(x + c * npix + g * V, vec);
        const Pack<T> b = load_pack(xh + c * npix + g * V, vec);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += sqdiff(a.v[k], b.v[k]);
      }
#pragma unroll
      for (int k = 0; k < V; ++k) {
        s += acc[k];
        if (map) map[g * V + k] = acc[k] * inv_c;
      }
    }
    for (int64_t q = groups * V + tid; q < npix; q += kScoreThreads) {
      float acc = 0.f;
      for (int64_t c = 0; c < C; ++c) acc += sqdiff(x[c * npix + q], xh[c * npix + q]);
      s += acc;
      if (map) map[q] = acc * inv_c;
    }
    return s;
  }
  // Interleaved (channels_last): a pixel's C values are adjacent; a warp still covers one contiguous range.
  for (int64_t q = tid; q < npix; q += kScoreThreads) {
    float acc = 0.f;
    for (int64_t c = 0; c < C; ++c) acc += sqdiff(x[q * C + c], xh[q * C + c]);
    s += acc;
    if (map) map[q] = acc * inv_c;
  }
  return s;
}

// Feature part: this thread's share of sum (f - f_hat)^2 over a flat span of n elements, in the order the header
// comment states (a sample's alignment only decides whether a group is one load or V).
template <typename T>
SKIPGAN_SCORE_FN float feature_part(const T* a, const T* b, int64_t n, int tid) {
  constexpr int V = Pack<T>::kN;
  const bool vec = aligned16(a) && aligned16(b);
  const int64_t groups = n / V;
  float s = 0.f;
  for (int64_t g = tid; g < groups; g += kScoreThreads) {
    const Pack<T> pa = load_pack(a + g * V, vec);
    const Pack<T> pb = load_pack(b + g * V, vec);
#pragma unroll
    for (int k = 0; k < V; ++k) s += sqdiff(pa.v[k], pb.v[k]);
  }
  for (int64_t i = groups * V + tid; i < n; i += kScoreThreads) s += sqdiff(a[i], b[i]);
  return s;
}

}  // namespace skipgan::cuda
