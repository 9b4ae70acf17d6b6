// The skipgan operator library: every schema lives here, kernels are registered per backend in
// cpu/*.cpp and cuda/*.cpp. This file (like the whole library) has no Python dependency, so the same
// shared object serves `torch.ops.load_library` in Python and a C++ program linked against libtorch.
#include <string>

#include <torch/headeronly/version.h>
#include <torch/library.h>

#include "cpu/isa.h"

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
  // 4 sigmoid; out2 = None skips the second output.
  m.def(
      "conv_bn_act_out(Tensor x, Tensor weight, Tensor? scale, Tensor? shift, int[2] stride, int[2] padding, "
      "bool transposed, int act, float slope, Tensor(a!) out, int act2=0, Tensor(b!)? out2=None) -> ()");
  // Skip-GANomaly score per sample: lam * mean((x - x_hat)^2) + (1 - lam) * mean((f - f_hat)^2), fp32 [B].
  // x, x_hat: [B, C, H, W]; f, f_hat: [B, ...]. fp32 accumulation, deterministic for any thread count.
  m.def("anomaly_score(Tensor x, Tensor x_hat, Tensor f, Tensor f_hat, float lam) -> Tensor");
  // Out variant: scores fp32 [B]; error_map, when given, fp32 [B, H, W] contiguous receives the per-pixel
  // mean over channels of (x - x_hat)^2.
  m.def(
      "anomaly_score_out(Tensor x, Tensor x_hat, Tensor f, Tensor f_hat, float lam, Tensor(a!) scores, "
      "Tensor(b!)? error_map=None) -> ()");
  m.def("_build_info() -> str", &skipgan::build_info);
}
