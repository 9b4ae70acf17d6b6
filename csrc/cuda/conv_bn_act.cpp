// CUDA registration of skipgan::conv_bn_act_out: cuDNN convolution through ATen on the current stream,
// then the epilogue kernel (conv_bn_act_kernel.cu) on the same stream.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../conv_bn_act.h"
#include "launch.h"

namespace skipgan::cuda {
namespace {

void conv_bn_act_out_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& scale,
                          const std::optional<at::Tensor>& shift, at::IntArrayRef stride, at::IntArrayRef padding,
                          bool transposed, int64_t act, double slope, const at::Tensor& out, int64_t act2,
                          const std::optional<at::Tensor>& out2, bool tf32) {
  c10::cuda::OptionalCUDAGuard guard;
  if (x.is_cuda()) guard.set_device(x.device());
  std::vector<at::Tensor> keep_alive;  // conv output: freed after the launch, stream-ordered by the allocator
  const EpilogueParams p = conv_bn_act_prepare(x, weight, scale, shift, stride, padding, transposed, act, slope, out,
                                               act2, out2, tf32, c10::DeviceType::CUDA, keep_alive);
  C10_CUDA_CHECK(launch_conv_epilogue(p, c10::cuda::getCurrentCUDAStream()));
}

}  // namespace
}  // namespace skipgan::cuda

TORCH_LIBRARY_IMPL(skipgan, CUDA, m) {
  m.impl("conv_bn_act_out", &skipgan::cuda::conv_bn_act_out_cuda);
}
