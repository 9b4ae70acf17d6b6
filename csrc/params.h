// Plain-old-data descriptions of one kernel call, shared by the ATen-side argument checking (csrc/*.cpp),
// the CPU kernels and the CUDA kernels. No torch headers here on purpose: the .cu files include only this
// and the CUDA headers, which keeps nvcc at a few seconds per file instead of ~40 s with ATen headers.
#pragma once

#include <cstdint>

namespace skipgan {

// Element types the kernels accept. Anything else is rejected by the argument checks with a message.
enum class DType : int { Float = 0, Half = 1, BFloat16 = 2 };

// Epilogue of conv_bn_act: out[n,c,h,w] = act(y[n,c,h,w] * scale[c] + shift[c]), and the same with act2
// into out2. y is the dense conv output, NCHW (channels_last == false) or NHWC; out / out2 may have any
// strides (typically a channel slice of a larger NCHW or channels_last buffer).
struct EpilogueParams {
  const void* y = nullptr;
  bool channels_last = false;
  int64_t N = 0, C = 0, H = 0, W = 0;
  const float* scale = nullptr;  // [C] fp32, nullptr means 1
  const float* shift = nullptr;  // [C] fp32, nullptr means 0
  float slope = 0.f;             // leaky_relu negative slope, shared by act and act2
  int act = 0;
  int act2 = 0;
  void* out = nullptr;
  int64_t out_stride[4] = {0, 0, 0, 0};  // element strides of out in N, C, H, W order
  void* out2 = nullptr;                  // nullptr: no second output
  int64_t out2_stride[4] = {0, 0, 0, 0};
  DType dtype = DType::Float;
};

// anomaly_score: scores[b] = lam * R + (1 - lam) * L with R = mean((x - x_hat)^2) over the channels and the
// interior pixels (a `margin`-pixel border left out: h in [margin, H - margin), w in [margin, W - margin)) and
// L = mean((f - f_hat)^2) -- skipgan.scoring.combine_scores.
// Per sample, x and x_hat are dense with the same layout: `planar` (NCHW order, channel stride = npix)
// or interleaved (NHWC order, pixel stride = C); only the batch strides may differ. f and f_hat are
// dense per sample with the same strides, read as a flat span of nf elements.
struct ScoreParams {
  int64_t B = 0;
  const void* x = nullptr;
  const void* x_hat = nullptr;
  int64_t x_bstride = 0, x_hat_bstride = 0;  // elements between samples
  int64_t C = 0, H = 0, W = 0, npix = 0;     // channels, height, width, H * W
  int64_t margin = 0;                        // border pixels left out of R (not of the map); 2 * margin < H, W
  bool planar = true;
  DType x_dtype = DType::Float;
  const void* f = nullptr;
  const void* f_hat = nullptr;
  int64_t f_bstride = 0, f_hat_bstride = 0;
  int64_t nf = 0;  // feature elements per sample
  DType f_dtype = DType::Float;
  float lam = 0.f;
  float* scores = nullptr;  // fp32, element stride scores_stride
  int64_t scores_stride = 1;
  float* error_map = nullptr;  // nullptr, or fp32 [B, npix] contiguous: mean over channels of (x - x_hat)^2
                               // at every pixel, border included
  float* parts = nullptr;      // nullptr, or fp32 [B, 2] contiguous: (R, L) per sample
};

// col2im_bias_act: the column fold of a transposed convolution computed as a GEMM, then the epilogue of `e`.
// cols is dense [N_cols, H, W, kH, kW, C] (= X_nhwc[N*H*W, C_in] @ W[C_in, kH*kW*C]); the pre-activation is
//   z[n, c, oy, ox] = sum of cols[n, iy, ix, ky, kx, c] over oy = iy * sH - pH + ky, ox = ix * sW - pW + kx
// with (oy, ox) inside the output, whose size is e.H x e.W (read from out). e.y / e.channels_last are unused.
// Probe mode (probe_weight != nullptr): N_cols = K * e.N rows ordered probe-major (row k * e.N + b), and
//   out[b] = sum_k probe_weight[k] * act(z[k * e.N + b] * scale + shift), fp32, added in k order; no out2.
struct Col2imParams {
  EpilogueParams e;  // N (= batch of out), C, H, W (output size), scale / shift / acts / outputs
  const void* cols = nullptr;
  int64_t H = 0, W = 0;  // input spatial size (cols dims 1 and 2)
  int64_t kH = 1, kW = 1, sH = 1, sW = 1, pH = 0, pW = 0;
  const float* probe_weight = nullptr;  // fp32 [K, 1 or C, e.H, e.W]
  int64_t K = 1;
  int64_t pw_stride[4] = {0, 0, 0, 0};  // element strides of probe_weight (K, C, H, W); C stride 0: per pixel
};

}  // namespace skipgan
