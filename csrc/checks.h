// Argument checks shared by every op. Each failure is a TORCH_CHECK whose message starts with the op,
// names the argument and states the expected value, e.g.
//   skipgan::anomaly_score: x_hat: expected shape [2, 3, 32, 32] (the shape of x), got [2, 3, 32, 31]
#pragma once

#include <array>
#include <string>

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

// out of a transposed convolution (conv_bn_act_out with transposed, col2im_bias_act_out): [N, C, Ho, Wo] with
// Ho in [Hb, Hb + sH) where Hb = (H - 1) * sH - 2 * pH + kH (likewise Wo). The size is ambiguous by up to
// stride - 1; the shape of `out` resolves it, so the schemas need no output_padding argument. Returns the
// output_padding that out implies. `in_name` names the input whose spatial size is [H, W].
inline std::array<int64_t, 2> check_transposed_out_shape(const at::Tensor& out, const char* op, const char* in_name,
                                                         int64_t N, int64_t C, int64_t H, int64_t W,
                                                         at::IntArrayRef kernel, at::IntArrayRef stride,
                                                         at::IntArrayRef padding) {
  const int64_t Hb = (H - 1) * stride[0] - 2 * padding[0] + kernel[0];
  const int64_t Wb = (W - 1) * stride[1] - 2 * padding[1] + kernel[1];
  TORCH_CHECK(Hb >= 1 && Wb >= 1, op, ": ", in_name, ": transposed convolution output would be empty for input [",
              H, ", ", W, "], kernel [", kernel[0], ", ", kernel[1], "], padding ", padding);
  auto range = [](int64_t lo, int64_t s) {
    return s > 1 ? std::to_string(lo) + ".." + std::to_string(lo + s - 1) : std::to_string(lo);
  };
  const bool ok = out.size(0) == N && out.size(1) == C && out.size(2) >= Hb && out.size(2) < Hb + stride[0] &&
                  out.size(3) >= Wb && out.size(3) < Wb + stride[1];
  TORCH_CHECK(ok, op, ": out: expected shape [", N, ", ", C, ", ", range(Hb, stride[0]), ", ", range(Wb, stride[1]),
              "], got ", out.sizes());
  return {out.size(2) - Hb, out.size(3) - Wb};
}

}  // namespace skipgan
