// CUDA kernel of skipgan::anomaly_score{,_out}: ONE launch, one block per sample (grid-stride over the
// batch), so no workspace, no atomics and no second pass are needed, and the result is deterministic:
// each thread sums a fixed set of elements in a fixed order (score_sums.h: set by the sizes alone, not by a
// sample's alignment, so a score does not depend on the sample's place in the batch), then a fixed shuffle tree
// and the warp sums in warp order reduce the block. Loads are 128-bit when both pointers allow it, scalar
// otherwise, over the same elements in the same order. With a margin the image part takes a plain per-pixel path
// (scalar loads) that leaves border pixels out of the sum but still writes them to the map.
//
// Known limit: with fewer samples than SMs and large images, some SMs idle (a sample is never split across
// blocks, which is what keeps it to one launch without atomics).
#include <algorithm>
#include <cstdint>

#include "../grid_cap.h"
#include "device_utils.cuh"
#include "launch.h"
#include "score_sums.h"  // the per-thread sums, after device_utils.cuh (to_float)

namespace skipgan::cuda {
namespace {

constexpr int kThreads = kScoreThreads;
constexpr int kWarps = kThreads / 32;

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
    s.x = image_part(p, x, xh, map, threadIdx.x);
    s.y = feature_part(f, fh, p.nf, threadIdx.x);
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
  const int grid = capped_grid(p.B, int64_t{current_sm_count()} * 16);
  return dispatch_dtype(p.x_dtype, [&](auto xtag) {
    return dispatch_dtype(p.f_dtype, [&](auto ftag) {
      anomaly_score_kernel<decltype(xtag), decltype(ftag)><<<grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  });
}

}  // namespace skipgan::cuda
