// CPU registration of skipgan::conv_bn_act_out: oneDNN convolution through ATen (conv_bn_act.cpp one level
// up), then ONE epilogue pass (conv_bn_act_kernel.h, best instruction set for this CPU) split over threads.
#include <algorithm>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../conv_bn_act.h"
#include "isa.h"

namespace skipgan::cpu {
namespace {

void conv_bn_act_out_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& scale,
                         const std::optional<at::Tensor>& shift, at::IntArrayRef stride, at::IntArrayRef padding,
                         bool transposed, int64_t act, double slope, const at::Tensor& out, int64_t act2,
                         const std::optional<at::Tensor>& out2) {
  std::vector<at::Tensor> keep_alive;
  const EpilogueParams p = conv_bn_act_prepare(x, weight, scale, shift, stride, padding, transposed, act, slope, out,
                                               act2, out2, c10::DeviceType::CPU, keep_alive);
  // Rows: (n, c) planes of H*W elements for NCHW y, pixels of C elements for channels_last y.
  const int64_t rows = p.channels_last ? p.N * p.H * p.W : p.N * p.C;
  const int64_t row_len = p.channels_last ? p.C : p.H * p.W;
  if (rows * row_len == 0) return;
  const auto fn = kernels().epilogue_rows;
  const int64_t grain = std::max<int64_t>(1, 32768 / row_len);  // ~32K elements per task
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { fn(p, begin, end); });
}

}  // namespace
}  // namespace skipgan::cpu

TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("conv_bn_act_out", &skipgan::cpu::conv_bn_act_out_cpu);
}
