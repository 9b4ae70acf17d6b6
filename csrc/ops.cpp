// The skipgan operator library: every schema lives here, kernels are registered per backend in
// cpu/*.cpp and cuda/*.cpp. This file (like the whole library) has no Python dependency, so the same
// shared object serves `torch.ops.load_library` in Python and a C++ program linked against libtorch.
#include <string>

#include <torch/headeronly/version.h>
#include <torch/library.h>

#include "cpu/isa.h"
#include "grid_cap.h"

// Written by setup.py / CMake into the build tree: SKIPGAN_BUILDER and SKIPGAN_CUDA_ARCH_LIST strings.
#if __has_include("skipgan_build_config.h")
#include "skipgan_build_config.h"
#endif
#ifndef SKIPGAN_CUDA_ARCH_LIST
#define SKIPGAN_CUDA_ARCH_LIST ""
#endif
#ifndef SKIPGAN_BUILDER
#define SKIPGAN_BUILDER "unknown"
#endif

namespace skipgan {
namespace {

// "key=value" lines, parsed by skipgan.ops.build_info(). Compiled into the library (not written by
// setup.py) so that it describes this very binary, whichever build system produced it.
std::string build_info() {
  std::string s;
#ifdef SKIPGAN_WITH_CUDA
  s += "cuda=1\n";
#else
  s += "cuda=0\n";
#endif
  s += std::string("cuda_arch_list=") + SKIPGAN_CUDA_ARCH_LIST + "\n";
  s += std::string("torch_version=") + TORCH_VERSION + "\n";
  s += std::string("builder=") + SKIPGAN_BUILDER + "\n";
  s += std::string("compiler=") + __VERSION__ + "\n";
  s += std::string("cpu_isa=") + cpu::kernels().isa + "\n";  // the CPU kernel copy in use (see cpu/isa.h)
#ifdef _OPENMP
  s += "openmp=1\n";  // at::parallel_for in this library really runs in parallel (ATen's OpenMP backend)
#else
  s += "openmp=0\n";
#endif
  return s;
}

int64_t set_cuda_grid_cap(int64_t cap) {
  TORCH_CHECK(cap >= 0 && cap <= INT32_MAX, "skipgan::_set_cuda_grid_cap: cap: expected 0..", INT32_MAX, ", got ",
              cap);
  return set_grid_cap(static_cast<int>(cap));
}

}  // namespace
}  // namespace skipgan

TORCH_LIBRARY(skipgan, m) {
  // The fake (meta) kernels for torch.compile / torch.export live in this Python module; torch imports it
  // on demand, e.g. when a TorchScript file using these ops is traced without `import skipgan.ops`.
  m.set_python_module("skipgan.ops");
  // conv + folded BN + activation, with an optional second activation into a second output, in one pass
  // over the conv output. `weight` is [C_out, C_in, kH, kW] (Conv2d) or [C_in, C_out, kH, kW] when
  // `transposed` (ConvTranspose2d); groups = dilation = 1. out = act(conv(x) * scale + shift), out2 =
  // act2(same); scale / shift are optional fp32 [C_out]. The output size is read from `out` (for transposed
  // convs this also fixes output_padding). out / out2 may be views with any strides, e.g. channel slices
  // of a preallocated concatenation buffer. act / act2: 0 none, 1 relu, 2 leaky_relu(slope), 3 tanh,
  // 4 sigmoid; out2 = None skips the second output. The convolution computes in x's dtype inside any autocast
  // region. tf32: cuDNN may run an fp32 convolution on TF32 tensor cores (default False: true fp32, whatever
  // torch.backends.cudnn.allow_tf32 says); no effect on CPU or for bf16 / fp16.
  m.def(
      "conv_bn_act_out(Tensor x, Tensor weight, Tensor? scale, Tensor? shift, int[2] stride, int[2] padding, "
      "bool transposed, int act, float slope, Tensor(a!) out, int act2=0, Tensor(b!)? out2=None, "
      "bool tf32=False) -> ()");
  // The conv_bn_act epilogue alone, on a given pre-activation y (e.g. a GEMM result): out = act(y * scale +
  // shift), out2 = act2(same), the same kernels as conv_bn_act_out. y: [N, C, H, W], read in place when dense
  // NCHW or dense channels_last (else copied); out / out2: y's shape and dtype, any strides (channel slices,
  // the interior of a zero-bordered buffer), or y itself (in place).
  m.def(
      "bias_act_out(Tensor y, Tensor? scale, Tensor? shift, int act, float slope, Tensor(a!) out, int act2=0, "
      "Tensor(b!)? out2=None) -> ()");
  // A ConvTranspose2d computed as a GEMM, folded, plus the epilogue. cols: [N, H, W, kH, kW, C] (contiguous;
  // = X_nhwc[N*H*W, C_in] @ weight.permute(0, 2, 3, 1).reshape(C_in, kH*kW*C)); z[n, c, oy, ox] = sum of
  // cols[n, iy, ix, ky, kx, c] over oy = iy*stride[0] - padding[0] + ky, ox = ix*stride[1] - padding[1] + kx;
  // out = act(z * scale + shift), out2 = act2(same). The output size is read from out (as for
  // conv_bn_act_out with transposed). probe_weight, fp32 [K, 1 or C, Ho, Wo]: cols holds K * B rows
  // ordered probe-major (k * B + b), out has batch B and out[b] = sum_k probe_weight[k] * act(z[k*B + b] *
  // scale + shift), fp32, in k order; no act2 / out2 then. CPU only: the engine uses cuDNN on CUDA, so CUDA
  // tensors get the dispatcher's "no kernel for CUDA" error.
  m.def(
      "col2im_bias_act_out(Tensor cols, int[2] kernel, int[2] stride, int[2] padding, Tensor? scale, "
      "Tensor? shift, int act, float slope, Tensor(a!) out, int act2=0, Tensor(b!)? out2=None, "
      "Tensor? probe_weight=None) -> ()");
  // Skip-GANomaly score per sample, fp32 [B]: lam * R + (1 - lam) * L, exactly skipgan.scoring.combine_scores.
  // R = mean of (x - x_hat)^2 over the channels and the interior pixels (h in [margin, H - margin), w in
  // [margin, W - margin); 0 <= margin, 2 * margin < H and W), L = mean((f - f_hat)^2). x, x_hat: [B, C, H, W];
  // f, f_hat: [B, ...]. fp32 accumulation, deterministic for any thread count.
  m.def("anomaly_score(Tensor x, Tensor x_hat, Tensor f, Tensor f_hat, float lam, int margin=0) -> Tensor");
  // Out variant: scores fp32 [B]; error_map, when given, fp32 [B, H, W] contiguous receives the per-pixel
  // mean over channels of (x - x_hat)^2 at EVERY pixel (the margin only concerns R); parts, when given, fp32
  // [B, 2] contiguous receives (R, L). The scores are bit-identical with or without either.
  m.def(
      "anomaly_score_out(Tensor x, Tensor x_hat, Tensor f, Tensor f_hat, float lam, Tensor(a!) scores, "
      "Tensor(b!)? error_map=None, int margin=0, Tensor(c!)? parts=None) -> ()");
  // The knn map's search: for each query row of queries fp32 [Q, C], the Euclidean distance to its nearest row of
  // memory fp32 [M >= 1, C] (memory_sq fp32 [M]: the rows' squared norms), fp32 [Q]. Exact: a blocked GEMM of
  // |m|² − 2 q·m (query_block x memory_block values at a time, in cache) only ranks the rows; the distance is
  // summed as Σ (q − m)² over the rows within the GEMM's error bound of the smallest (nearest.h), so it is the
  // true nearest's whatever the GEMM rounded. gemm: 0 at::addmm, 1 oneDNN's fp32 matmul (the faster depends on the
  // CPU; the result is the same exact distance). skipgan.ops.nearest_distances_reference is its definition. CPU only.
  m.def(
      "nearest_distances(Tensor queries, Tensor memory, Tensor memory_sq, int query_block=1024, "
      "int memory_block=4096, int gemm=0) -> Tensor");
  // The uint8 grid of an int8 layer's input (skipgan/quant/int8.py): out = clamp(round(x / scale) + zero, 0, 255),
  // round half to even; x float / half / bfloat16, out uint8 of x's shape (any strides).
  // skipgan.quant.int8.quantize_input is its definition. CPU only (the int8 engine is a CPU engine).
  m.def("quantize_u8_out(Tensor x, float scale, int zero, Tensor(a!) out) -> ()");
  m.def("_build_info() -> str", &skipgan::build_info);
  // Test hook: cap the blocks of every CUDA launch (0: no cap) so that tests run the kernels' grid-stride loops
  // over more work than one grid; returns the previous cap. Present in CPU-only builds too (then nothing reads it).
  m.def("_set_cuda_grid_cap(int cap) -> int", &skipgan::set_cuda_grid_cap);
}
