// CUDA registration of skipgan::anomaly_score{,_out}: checks, then one kernel launch
// (anomaly_score_kernel.cu) on the current stream. No device allocation besides the functional output.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../anomaly_score.h"
#include "launch.h"

namespace skipgan::cuda {
namespace {

constexpr const char* kOpOut = "skipgan::anomaly_score_out";
constexpr const char* kOp = "skipgan::anomaly_score";

void anomaly_score_out_cuda(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& f,
                            const at::Tensor& f_hat, double lam, const at::Tensor& scores,
                            const std::optional<at::Tensor>& error_map, int64_t margin,
                            const std::optional<at::Tensor>& parts) {
  c10::cuda::OptionalCUDAGuard guard;
  if (x.is_cuda()) guard.set_device(x.device());
  std::vector<at::Tensor> keep_alive;
  const ScoreParams p = anomaly_score_prepare(kOpOut, x, x_hat, f, f_hat, lam, scores, error_map, margin, parts,
                                              c10::DeviceType::CUDA, keep_alive);
  C10_CUDA_CHECK(launch_anomaly_score(p, c10::cuda::getCurrentCUDAStream()));
}

at::Tensor anomaly_score_cuda(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& f,
                              const at::Tensor& f_hat, double lam, int64_t margin) {
  c10::cuda::OptionalCUDAGuard guard;
  if (x.is_cuda()) guard.set_device(x.device());
  at::Tensor scores = at::empty({anomaly_score_batch(kOp, x)}, x.options().dtype(at::kFloat));
  std::vector<at::Tensor> keep_alive;
  const ScoreParams p = anomaly_score_prepare(kOp, x, x_hat, f, f_hat, lam, scores, std::nullopt, margin,
                                              std::nullopt, c10::DeviceType::CUDA, keep_alive);
  C10_CUDA_CHECK(launch_anomaly_score(p, c10::cuda::getCurrentCUDAStream()));
  return scores;
}

}  // namespace
}  // namespace skipgan::cuda

TORCH_LIBRARY_IMPL(skipgan, CUDA, m) {
  m.impl("anomaly_score", &skipgan::cuda::anomaly_score_cuda);
  m.impl("anomaly_score_out", &skipgan::cuda::anomaly_score_out_cuda);
}
