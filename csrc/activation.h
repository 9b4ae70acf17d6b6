// Activation codes shared by the schema (ops.cpp), the CPU and CUDA epilogues and skipgan/ops.py.
// Plain header (no torch) so that the nvcc-compiled kernel files stay cheap to compile.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SKIPGAN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SKIPGAN_HOST_DEVICE inline
#endif

namespace skipgan {

// Integer codes, not strings: TorchScript, torch.compile and the C++ scanner all pass ints cheaply, and
// skipgan/ops.py maps names ("relu", ...) to these values. Keep in sync with ops.py `ACTIVATIONS`.
enum Act : int {
  kActNone = 0,
  kActReLU = 1,
  kActLeakyReLU = 2,  // uses `slope`
  kActTanh = 3,
  kActSigmoid = 4,
  kActCount = 5,
};

// Scalar reference of the epilogue math, fp32 in and out (the vectorised CPU path and the CUDA kernel
// must agree with this; tests compare both against the PyTorch reference in ops.py).
SKIPGAN_HOST_DEVICE float apply_act(int act, float v, float slope) {
  switch (act) {
    case kActReLU:
      return v > 0.f ? v : 0.f;
    case kActLeakyReLU:
      return v > 0.f ? v : v * slope;
    case kActTanh:
      return tanhf(v);
    case kActSigmoid:
      return 1.f / (1.f + expf(-v));
    default:
      return v;
  }
}

}  // namespace skipgan
