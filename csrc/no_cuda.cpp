// In a build without CUDA kernels, CUDA tensors would otherwise meet the dispatcher's generic
// "Could not run 'skipgan::...' with arguments from the 'CUDA' backend". Register a kernel for the CUDA
// key that says what to do instead. Compiled into every build; empty when the CUDA kernels exist.
#ifndef SKIPGAN_WITH_CUDA

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

namespace skipgan {
namespace {

void no_cuda_kernel(const c10::OperatorHandle& op, torch::jit::Stack* /*stack*/) {
  TORCH_CHECK(false, op.schema().name(),
              ": got CUDA tensors, but this skipgan library was built without CUDA kernels. Rebuild it with "
              "CUDA: `FORCE_CUDA=1 pip install --no-build-isolation .` (needs the CUDA toolkit; set CUDA_HOME), "
              "or build on a machine with nvcc. skipgan.ops.build_info() shows what was built.");
}

}  // namespace
}  // namespace skipgan

TORCH_LIBRARY_IMPL(skipgan, CUDA, m) {
  m.impl("conv_bn_act_out", torch::CppFunction::makeFromBoxedFunction<&skipgan::no_cuda_kernel>());
  m.impl("anomaly_score", torch::CppFunction::makeFromBoxedFunction<&skipgan::no_cuda_kernel>());
  m.impl("anomaly_score_out", torch::CppFunction::makeFromBoxedFunction<&skipgan::no_cuda_kernel>());
  m.impl("bias_act_out", torch::CppFunction::makeFromBoxedFunction<&skipgan::no_cuda_kernel>());
}

#endif  // SKIPGAN_WITH_CUDA
