// Host entry points of the CUDA kernels. Plain types only, so the ATen-side registration files (g++) and
// the kernel files (nvcc, no torch headers) share this header cheaply.
#pragma once

#include <cuda_runtime_api.h>

#include "../params.h"

namespace skipgan::cuda {

// Each launches exactly one kernel on `stream` and returns cudaGetLastError() for the caller to check.
cudaError_t launch_conv_epilogue(const EpilogueParams& p, cudaStream_t stream);
cudaError_t launch_anomaly_score(const ScoreParams& p, cudaStream_t stream);

}  // namespace skipgan::cuda
