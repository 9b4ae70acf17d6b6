// CUDA epilogue of skipgan::conv_bn_act_out: one pass over the (cuDNN) conv output y that applies
// scale/shift and the activation(s) in fp32 and writes out and out2 through their own strides.
#include <algorithm>
#include <cstdint>

#include "../activation.h"
#include "../grid_cap.h"
#include "device_utils.cuh"
#include "launch.h"

namespace skipgan::cuda {
namespace {

constexpr int kThreads = 256;

// Grid-stride over y in memory order, so the reads of y are coalesced; the writes follow the outputs'
// strides (coalesced too when the output is a channel slice with the same memory format as y).
// index_t is int32 when everything fits, because 64-bit division is several times slower.
template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads) conv_epilogue_kernel(EpilogueParams p, index_t total) {
  const T* __restrict__ y = static_cast<const T*>(p.y);
  T* out = static_cast<T*>(p.out);
  T* out2 = static_cast<T*>(p.out2);
  const index_t C = p.C, H = p.H, W = p.W;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t n, c, h, w, t;
    if (!p.channels_last) {
      w = i % W;
      t = i / W;
      h = t % H;
      t = t / H;
      c = t % C;
      n = t / C;
    } else {
      c = i % C;
      t = i / C;
      w = t % W;
      t = t / W;
      h = t % H;
      n = t / H;
    }
    const float v = to_float(y[i]) * (p.scale ? p.scale[c] : 1.f) + (p.shift ? p.shift[c] : 0.f);
    out[n * p.out_stride[0] + c * p.out_stride[1] + h * p.out_stride[2] + w * p.out_stride[3]] =
        from_float<T>(apply_act(p.act, v, p.slope));
    if (out2) {
      out2[n * p.out2_stride[0] + c * p.out2_stride[1] + h * p.out2_stride[2] + w * p.out2_stride[3]] =
          from_float<T>(apply_act(p.act2, v, p.slope));
    }
  }
}

// Largest element offset reachable in a strided output (all strides are >= 0 in PyTorch).
int64_t max_offset(const EpilogueParams& p, const int64_t* s) {
  return (p.N - 1) * s[0] + (p.C - 1) * s[1] + (p.H - 1) * s[2] + (p.W - 1) * s[3];
}

}  // namespace

cudaError_t launch_conv_epilogue(const EpilogueParams& p, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total == 0) return cudaSuccess;
  const int64_t blocks_needed = (total + kThreads - 1) / kThreads;
  const int grid = capped_grid(blocks_needed, int64_t{current_sm_count()} * 8);
  // int32 indexing when neither the index (plus one grid stride, so the loop increment cannot overflow) nor
  // an output offset can exceed it.
  const int64_t limit = INT32_MAX - int64_t{grid} * kThreads;
  const bool small = total < limit && max_offset(p, p.out_stride) < INT32_MAX &&
                     (!p.out2 || max_offset(p, p.out2_stride) < INT32_MAX);
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (small) {
      conv_epilogue_kernel<T, int32_t><<<grid, kThreads, 0, stream>>>(p, static_cast<int32_t>(total));
    } else {
      conv_epilogue_kernel<T, int64_t><<<grid, kThreads, 0, stream>>>(p, total);
    }
    return cudaGetLastError();
  });
}

}  // namespace skipgan::cuda
