// CUDA kernel of skipgan::anomaly_score{,_out}: ONE launch, one block per sample (grid-stride over the
// batch), so no workspace, no atomics and no second pass are needed, and the result is deterministic:
// each thread sums a fixed set of elements in a fixed order, then a fixed shuffle tree and the warp sums in
// warp order reduce the block. Loads are 128-bit when both pointers allow it, scalar otherwise. With a
// margin the image part takes a plain per-pixel path (scalar loads) that leaves border pixels out of the sum
// but still writes them to the map; the thread -> pixel assignment stays fixed, so it is deterministic too.
//
// Known limit: with fewer samples than SMs and large images, some SMs idle (a sample is never split across
// blocks, which is what keeps it to one launch without atomics).
#include <algorithm>
#include <cstdint>

#include "device_utils.cuh"
#include "launch.h"

namespace skipgan::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

// 16 bytes of T: the unit of a 128-bit load.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {  // p is 16-byte aligned
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  Pack<T> r;
  static_assert(sizeof(Pack<T>) == sizeof(uint4), "pack size");
  *reinterpret_cast<uint4*>(&r) = raw;
  return r;
}

template <typename T>
__device__ __forceinline__ float sqdiff(T a, T b) {
  const float d = to_float(a) - to_float(b);
  return d * d;
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Sum over the block of two values (image part, feature part). Deterministic: fixed shuffle tree inside a
// warp, then warp 0 adds the warp results in warp order. The result is valid in thread 0.
__device__ __forceinline__ float2 block_sum2(float2 v) {
  __shared__ float2 warp_sums[kWarps];
  for (int o = 16; o > 0; o >>= 1) {
    v.x += __shfl_down_sync(0xffffffffu, v.x, o);
    v.y += __shfl_down_sync(0xffffffffu, v.y, o);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  float2 r = make_float2(0.f, 0.f);
  if (warp == 0) {
    r = lane < kWarps ? warp_sums[lane] : make_float2(0.f, 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      r.x += __shfl_down_sync(0xffffffffu, r.x, o);
      r.y += __shfl_down_sync(0xffffffffu, r.y, o);
    }
  }
  __syncthreads();  // warp_sums is reused by the next sample of this block
  return r;
}

// Image part with a border (p.margin > 0): this thread's pixels q = threadIdx.x + k * kThreads, all written
// to the map, only the interior ones (h in [m, H - m), w in [m, W - m)) added to the sum. (h, w) of q is
// advanced by the fixed step (kThreads / W rows, kThreads % W columns) instead of dividing per pixel.
template <typename T>
__device__ float image_part_margin(const ScoreParams& p, const T* x, const T* xh, float* map) {
  const int64_t C = p.C, npix = p.npix, W = p.W, m = p.margin;
  const int64_t h_end = p.H - m, w_end = W - m;
  const int64_t dh = kThreads / W, dw = kThreads % W;
  const float inv_c = 1.f / static_cast<float>(C);
  // Element strides of channel c and of pixel q: planar (NCHW) or interleaved (NHWC).
  const int64_t c_stride = p.planar ? npix : 1, q_stride = p.planar ? 1 : C;
  float s = 0.f;
  int64_t h = threadIdx.x / W, w = threadIdx.x % W;
  for (int64_t q = threadIdx.x; q < npix; q += kThreads) {
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

// Image part of one sample: this thread's share of sum (x - x_hat)^2, writing the per-pixel channel mean
// to `map` (nullable). Always the per-pixel path, with or without a map, so the scores do not depend on
// whether a map was asked for.
template <typename T>
__device__ float image_part(const ScoreParams& p, const T* x, const T* xh, float* map) {
  if (p.margin > 0) return image_part_margin(p, x, xh, map);
  const int64_t C = p.C, npix = p.npix;
  const float inv_c = 1.f / static_cast<float>(C);
  float s = 0.f;
  if (p.planar) {
    constexpr int V = Pack<T>::kN;
    // 128-bit path: every channel plane starts 16-byte aligned (npix % V == 0 and aligned bases).
    if (npix % V == 0 && aligned16(x) && aligned16(xh)) {
      const int64_t groups = npix / V;
      for (int64_t g = threadIdx.x; g < groups; g += kThreads) {
        float acc[V];
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] = 0.f;
        for (int64_t c = 0; c < C; ++c) {
          const Pack<T> a = load_pack(x + c * npix + g * V);
          const Pack<T> b = load_pack(xh + c * npix + g * V);
#pragma unroll
          for (int k = 0; k < V; ++k) acc[k] += sqdiff(a.v[k], b.v[k]);
        }
#pragma unroll
        for (int k = 0; k < V; ++k) {
          s += acc[k];
          if (map) map[g * V + k] = acc[k] * inv_c;
        }
      }
      return s;
    }
    for (int64_t q = threadIdx.x; q < npix; q += kThreads) {
      float acc = 0.f;
      for (int64_t c = 0; c < C; ++c) acc += sqdiff(x[c * npix + q], xh[c * npix + q]);
      s += acc;
      if (map) map[q] = acc * inv_c;
    }
    return s;
  }
  // Interleaved (channels_last): a pixel's C values are adjacent; a warp still covers one contiguous range.
  for (int64_t q = threadIdx.x; q < npix; q += kThreads) {
    float acc = 0.f;
    for (int64_t c = 0; c < C; ++c) acc += sqdiff(x[q * C + c], xh[q * C + c]);
    s += acc;
    if (map) map[q] = acc * inv_c;
  }
  return s;
}

// Feature part: this thread's share of sum (f - f_hat)^2 over a flat span of n elements. 128-bit loads
// when both pointers have the same offset inside 16 bytes (the scalar head brings them to alignment).
template <typename T>
__device__ float feature_part(const T* a, const T* b, int64_t n) {
  constexpr int V = Pack<T>::kN;
  float s = 0.f;
  const uintptr_t ma = reinterpret_cast<uintptr_t>(a) & 15, mb = reinterpret_cast<uintptr_t>(b) & 15;
  int64_t done = 0;
  if (ma == mb && ma % sizeof(T) == 0) {
    const int64_t head = min(n, static_cast<int64_t>(ma ? (16 - ma) / sizeof(T) : 0));
    for (int64_t i = threadIdx.x; i < head; i += kThreads) s += sqdiff(a[i], b[i]);
    const int64_t groups = (n - head) / V;
    for (int64_t g = threadIdx.x; g < groups; g += kThreads) {
      const Pack<T> pa = load_pack(a + head + g * V);
      const Pack<T> pb = load_pack(b + head + g * V);
#pragma unroll
      for (int k = 0; k < V; ++k) s += sqdiff(pa.v[k], pb.v[k]);
    }
    done = head + groups * V;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += kThreads) s += sqdiff(a[i], b[i]);
  return s;
}

template <typename XT, typename FT>
__global__ void __launch_bounds__(kThreads) anomaly_score_kernel(ScoreParams p) {
  // R averages over the interior pixels only (all of them without a margin).
  const float inv_x = 1.f / static_cast<float>(p.C * (p.H - 2 * p.margin) * (p.W - 2 * p.margin));
  const float inv_f = 1.f / static_cast<float>(p.nf);
  for (int64_t b = blockIdx.x; b < p.B; b += gridDim.x) {  // block-uniform loop: __syncthreads is safe
    const XT* x = static_cast<const XT*>(p.x) + b * p.x_bstride;
    const XT* xh = static_cast<const XT*>(p.x_hat) + b * p.x_hat_bstride;
    const FT* f = static_cast<const FT*>(p.f) + b * p.f_bstride;
    const FT* fh = static_cast<const FT*>(p.f_hat) + b * p.f_hat_bstride;
    float* map = p.error_map ? p.error_map + b * p.npix : nullptr;
    float2 s;
    s.x = image_part(p, x, xh, map);
    s.y = feature_part(f, fh, p.nf);
    s = block_sum2(s);
    if (threadIdx.x == 0) {
      const float r = s.x * inv_x, l = s.y * inv_f;
      p.scores[b * p.scores_stride] = p.lam * r + (1.f - p.lam) * l;
      if (p.parts) {
        p.parts[2 * b] = r;
        p.parts[2 * b + 1] = l;
      }
    }
  }
}

}  // namespace

cudaError_t launch_anomaly_score(const ScoreParams& p, cudaStream_t stream) {
  if (p.B == 0) return cudaSuccess;
  const int grid = static_cast<int>(std::min<int64_t>(p.B, int64_t{current_sm_count()} * 16));
  return dispatch_dtype(p.x_dtype, [&](auto xtag) {
    return dispatch_dtype(p.f_dtype, [&](auto ftag) {
      anomaly_score_kernel<decltype(xtag), decltype(ftag)><<<grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  });
}

}  // namespace skipgan::cuda
