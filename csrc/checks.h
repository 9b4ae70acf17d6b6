// Argument checks shared by every op. Each failure is a TORCH_CHECK whose message starts with the op,
// names the argument and states the expected value, e.g.
//   skipgan::anomaly_score: x_hat: expected shape [2, 3, 32, 32] (the shape of x), got [2, 3, 32, 31]
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "params.h"

namespace skipgan {

inline void check_defined(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": ", name, ": expected a tensor, got an undefined tensor");
}

inline void check_dim(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, op, ": ", name, ": expected a ", dim, "-D tensor, got ", t.dim(), "-D with shape ",
              t.sizes());
}

// The kernels read float32, float16 and bfloat16 (fp32 accumulation). float64 would silently lose
// precision in an fp32 accumulator, so it is rejected rather than half-supported.
inline DType check_float_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::Float;
    case at::kHalf:
      return DType::Half;
    case at::kBFloat16:
      return DType::BFloat16;
    default:
      TORCH_CHECK(false, op, ": ", name, ": expected dtype float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

inline void check_same_dtype(const at::Tensor& t, const char* op, const char* name, const at::Tensor& ref,
                             const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, ": expected dtype ", ref.scalar_type(),
              " (the dtype of ", ref_name, "), got ", t.scalar_type());
}

inline void check_dtype(const at::Tensor& t, const char* op, const char* name, at::ScalarType expected) {
  TORCH_CHECK(t.scalar_type() == expected, op, ": ", name, ": expected dtype ", expected, ", got ",
              t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const char* op, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, ": expected device ", ref.device(), " (the device of ",
              ref_name, "), got ", t.device());
}

inline void check_same_shape(const at::Tensor& t, const char* op, const char* name, const at::Tensor& ref,
                             const char* ref_name) {
  TORCH_CHECK(t.sizes() == ref.sizes(), op, ": ", name, ": expected shape ", ref.sizes(), " (the shape of ",
              ref_name, "), got ", t.sizes());
}

inline void check_shape(const at::Tensor& t, const char* op, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, op, ": ", name, ": expected shape ", expected, ", got ", t.sizes());
}

}  // namespace skipgan
