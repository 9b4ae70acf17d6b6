// CUDA registration of skipgan::bias_act_out: the conv_bn_act epilogue kernel (conv_bn_act_kernel.cu) on a
// given y, on the current stream.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../bias_act.h"
#include "launch.h"

namespace skipgan::cuda {
namespace {

void bias_act_out_cuda(const at::Tensor& y, const std::optional<at::Tensor>& scale,
                       const std::optional<at::Tensor>& shift, int64_t act, double slope, const at::Tensor& out,
                       int64_t act2, const std::optional<at::Tensor>& out2) {
  c10::cuda::OptionalCUDAGuard guard;
  if (y.is_cuda()) guard.set_device(y.device());
  std::vector<at::Tensor> keep_alive;  // contiguous copies: freed after the launch, stream-ordered by the allocator
  const EpilogueParams p =
      bias_act_prepare(y, scale, shift, act, slope, out, act2, out2, c10::DeviceType::CUDA, keep_alive);
  C10_CUDA_CHECK(launch_conv_epilogue(p, c10::cuda::getCurrentCUDAStream()));
}

}  // namespace
}  // namespace skipgan::cuda

TORCH_LIBRARY_IMPL(skipgan, CUDA, m) {
  m.impl("bias_act_out", &skipgan::cuda::bias_act_out_cuda);
}
