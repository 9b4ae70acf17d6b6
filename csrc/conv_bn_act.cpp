#include "conv_bn_act.h"

#include <ATen/Context.h>
#include <ATen/ops/_convolution.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include "checks.h"
#include "epilogue.h"

namespace skipgan {
namespace {

constexpr const char* kOp = "skipgan::conv_bn_act_out";

}  // namespace

EpilogueParams conv_bn_act_prepare(const at::Tensor& x, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                   at::IntArrayRef stride, at::IntArrayRef padding, bool transposed, int64_t act,
                                   double slope, const at::Tensor& out, int64_t act2,
                                   const std::optional<at::Tensor>& out2, bool tf32, c10::DeviceType device_type,
                                   std::vector<at::Tensor>& keep_alive) {
  // Devices first: a tensor on the wrong device is the likeliest mistake and the dispatcher has already
  // picked a kernel from the union of all devices.
  check_same_device(weight, kOp, "weight", x, "x");
  check_epilogue_devices(kOp, x, "x", out, out2, device_type);

  check_dim(x, kOp, "x", 4);
  check_float_dtype(x, kOp, "x");
  check_dim(weight, kOp, "weight", 4);
  check_same_dtype(weight, kOp, "weight", x, "x");
  TORCH_CHECK(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1, kOp,
              ": stride: expected two values >= 1, got ", stride);
  TORCH_CHECK(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0, kOp,
              ": padding: expected two values >= 0, got ", padding);
  check_act(kOp, act, "act");
  check_act(kOp, act2, "act2");

  const int64_t N = x.size(0), C_in = x.size(1), H = x.size(2), W = x.size(3);
  // Conv2d weight is [C_out, C_in, kH, kW]; ConvTranspose2d weight is [C_in, C_out, kH, kW] (PyTorch layout).
  const int64_t w_in = transposed ? weight.size(0) : weight.size(1);
  const int64_t C_out = transposed ? weight.size(1) : weight.size(0);
  const int64_t kH = weight.size(2), kW = weight.size(3);
  TORCH_CHECK(w_in == C_in, kOp, ": weight: expected ", (transposed ? "size(0)" : "size(1)"), " == ", C_in,
              " (the channels of x; groups are not supported), got weight shape ", weight.sizes());

  check_dim(out, kOp, "out", 4);
  check_same_dtype(out, kOp, "out", x, "x");
  std::vector<int64_t> output_padding = {0, 0};
  if (!transposed) {
    const int64_t Ho = (H + 2 * padding[0] - kH) / stride[0] + 1;
    const int64_t Wo = (W + 2 * padding[1] - kW) / stride[1] + 1;
    TORCH_CHECK(H + 2 * padding[0] >= kH && W + 2 * padding[1] >= kW, kOp, ": x: spatial size [", H, ", ", W,
                "] with padding ", padding, " is smaller than the kernel [", kH, ", ", kW, "]");
    check_shape(out, kOp, "out", {N, C_out, Ho, Wo});
  } else {
    const auto op = check_transposed_out_shape(out, kOp, "x", N, C_out, H, W, {kH, kW}, stride, padding);
    output_padding = {op[0], op[1]};
  }
  // The shape of out is checked above; the rest of the epilogue (out2, scale / shift, activations) is
  // common to every fused op.
  EpilogueParams p = describe_epilogue(kOp, x, "x", scale, shift, act, slope, out, act2, out2, keep_alive);

  // Vendor convolution into a fresh dense tensor (its memory format follows x / weight: NCHW or
  // channels_last). The epilogue reads it exactly once, as x's dtype.
  at::Tensor y;
  {
    // An enclosing autocast region must not reach the convolution: CUDA's autocast casts convolution /
    // _convolution to fp16 / bf16, and the epilogue would read that result as fp32. Excluding the autocast keys
    // makes the answer the same on every backend (CPU autocast happens not to list them).
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    // at::convolution would take TF32 from the global flag; the precision is this op's argument instead.
    // Benchmark / deterministic / cuDNN-enabled stay the caller's global choices.
    const auto& ctx = at::globalContext();
    y = at::_convolution(x, weight, /*bias=*/std::nullopt, stride, padding, /*dilation=*/{1, 1}, transposed,
                         output_padding, /*groups=*/1, ctx.benchmarkCuDNN(),
                         ctx.deterministicCuDNN() || ctx.deterministicAlgorithms(), ctx.userEnabledCuDNN(), tf32);
  }
  TORCH_CHECK(y.scalar_type() == x.scalar_type(), kOp, ": internal error: the convolution returned ",
              y.scalar_type(), " for ", x.scalar_type(), " inputs (an autocast region reached it?)");
  if (y.is_contiguous()) {
    p.channels_last = false;
  } else if (y.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    p.channels_last = true;
  } else {
    y = y.contiguous();
    p.channels_last = false;
  }
  keep_alive.push_back(y);

  p.y = y.const_data_ptr();
  return p;
}

}  // namespace skipgan
