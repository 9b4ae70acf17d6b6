// CPU registration of skipgan::conv_bn_act_out: oneDNN convolution through ATen (conv_bn_act.cpp one level
// up), then ONE epilogue pass (epilogue.h: conv_bn_act_kernel.h, best instruction set for this CPU) split over
// threads.
#include <torch/library.h>

#include "../conv_bn_act.h"
#include "epilogue.h"

namespace skipgan::cpu {
namespace {

void conv_bn_act_out_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& scale,
                         const std::optional<at::Tensor>& shift, at::IntArrayRef stride, at::IntArrayRef padding,
                         bool transposed, int64_t act, double slope, const at::Tensor& out, int64_t act2,
                         const std::optional<at::Tensor>& out2, bool tf32) {
  std::vector<at::Tensor> keep_alive;
  const EpilogueParams p = conv_bn_act_prepare(x, weight, scale, shift, stride, padding, transposed, act, slope, out,
                                               act2, out2, tf32, c10::DeviceType::CPU, keep_alive);
  run_epilogue(p);
}

}  // namespace
}  // namespace skipgan::cpu

TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("conv_bn_act_out", &skipgan::cpu::conv_bn_act_out_cpu);
}
