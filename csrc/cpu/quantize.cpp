// CPU registration of skipgan::quantize_u8_out: a float tensor onto the uint8 grid of an int8 layer's input
// (skipgan/quant/int8.py), one pass, written into a preallocated buffer (the engine's int8 layers quantise their
// input buffer once, then gather windows of the bytes).
#include <cmath>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../checks.h"
#include "isa.h"

namespace skipgan::cpu {
namespace {

constexpr const char* kOp = "skipgan::quantize_u8_out";
constexpr int64_t kGrain = 1 << 15;  // elements per task: a few microseconds of work

void quantize_u8_out_cpu(const at::Tensor& x, double scale, int64_t zero, const at::Tensor& out) {
  const DType t = check_float_dtype(x, kOp, "x");
  TORCH_CHECK(x.device().is_cpu() && out.device().is_cpu(), kOp, ": expected CPU tensors");
  TORCH_CHECK(out.scalar_type() == at::kByte, kOp, ": out: expected dtype uint8, got ", out.scalar_type());
  TORCH_CHECK(out.sizes() == x.sizes(), kOp, ": out: expected x's shape ", x.sizes(), ", got ", out.sizes());
  TORCH_CHECK(std::isfinite(scale) && scale > 0, kOp, ": scale: expected a positive finite number, got ", scale);
  TORCH_CHECK(zero >= 0 && zero <= 255, kOp, ": zero: expected 0..255, got ", zero);
  // dense inputs and outputs in the same memory order are one flat range; anything else goes through copies
  const bool flat = x.is_contiguous() && out.is_contiguous();
  const at::Tensor xc = flat ? x : x.contiguous();
  const at::Tensor oc = flat ? out : at::empty(x.sizes(), out.options());
  const void* src = xc.const_data_ptr();
  uint8_t* dst = oc.mutable_data_ptr<uint8_t>();
  const float s = static_cast<float>(scale);
  const auto z = static_cast<int32_t>(zero);
  at::parallel_for(0, xc.numel(), kGrain, [&](int64_t begin, int64_t end) {
    kernels().quantize_u8(src, t, begin, end, s, z, dst);
  });
  if (!flat) out.copy_(oc);
}

}  // namespace
}  // namespace skipgan::cpu

TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("quantize_u8_out", &skipgan::cpu::quantize_u8_out_cpu);
}
