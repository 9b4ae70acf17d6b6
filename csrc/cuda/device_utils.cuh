// Small device helpers shared by the kernel files: fp32 conversion of the element types and the number
// of SMs (for grid sizing).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../params.h"

namespace skipgan::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(T{}) with the device type of a DType.
template <typename F>
inline cudaError_t dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float:
      return f(float{});
    case DType::Half:
      return f(__half{});
    case DType::BFloat16:
      return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

// SM count of the current device; cudaDeviceGetAttribute is a cheap driver query (no sync).
inline int current_sm_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1) return 1;
  return sms;
}

}  // namespace skipgan::cuda
