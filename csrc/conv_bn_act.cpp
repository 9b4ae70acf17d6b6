#include "conv_bn_act.h"

#include <string>

#include <ATen/MemoryOverlap.h>
#include <ATen/ops/convolution.h>

#include "activation.h"
#include "checks.h"

namespace skipgan {
namespace {

constexpr const char* kOp = "skipgan::conv_bn_act_out";

void check_act(int64_t act, const char* name) {
  TORCH_CHECK(act >= 0 && act < kActCount, kOp, ": ", name,
              ": expected an activation code 0..4 (none, relu, leaky_relu, tanh, sigmoid), got ", act);
}

// scale / shift: optional fp32 [C_out] on the device of x. fp32 is required (not converted) because the
// epilogue math is fp32 and the folded BN parameters are computed in fp32 by the engine.
const float* check_channel_param(const std::optional<at::Tensor>& p, const char* name, const at::Tensor& x,
                                 int64_t c_out, std::vector<at::Tensor>& keep_alive) {
  if (!p.has_value() || !p->defined()) return nullptr;
  const at::Tensor& t = *p;
  check_same_device(t, kOp, name, x, "x");
  check_dtype(t, kOp, name, at::kFloat);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == c_out, kOp, ": ", name, ": expected shape [", c_out,
              "] (one value per output channel), got ", t.sizes());
  keep_alive.push_back(t.contiguous());
  return keep_alive.back().const_data_ptr<float>();
}

void fill_strides(const at::Tensor& t, int64_t* s) {
  for (int d = 0; d < 4; ++d) s[d] = t.stride(d);
}

}  // namespace

EpilogueParams conv_bn_act_prepare(const at::Tensor& x, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                   at::IntArrayRef stride, at::IntArrayRef padding, bool transposed, int64_t act,
                                   double slope, const at::Tensor& out, int64_t act2,
                                   const std::optional<at::Tensor>& out2, c10::DeviceType device_type,
                                   std::vector<at::Tensor>& keep_alive) {
  const bool has_out2 = out2.has_value() && out2->defined();

  // Devices first: a tensor on the wrong device is the likeliest mistake and the dispatcher has already
  // picked a kernel from the union of all devices.
  check_same_device(weight, kOp, "weight", x, "x");
  check_same_device(out, kOp, "out", x, "x");
  if (has_out2) check_same_device(*out2, kOp, "out2", x, "x");
  TORCH_CHECK(x.device().type() == device_type, kOp, ": x: expected a ", c10::DeviceTypeName(device_type),
              " tensor, got device ", x.device());

  check_dim(x, kOp, "x", 4);
  const DType dtype = check_float_dtype(x, kOp, "x");
  check_dim(weight, kOp, "weight", 4);
  check_same_dtype(weight, kOp, "weight", x, "x");
  TORCH_CHECK(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1, kOp,
              ": stride: expected two values >= 1, got ", stride);
  TORCH_CHECK(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0, kOp,
              ": padding: expected two values >= 0, got ", padding);
  check_act(act, "act");
  check_act(act2, "act2");

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
    // The transposed output size is ambiguous by up to stride - 1; the shape of `out` resolves it, so the
    // schema needs no output_padding argument.
    const int64_t Hb = (H - 1) * stride[0] - 2 * padding[0] + kH;
    const int64_t Wb = (W - 1) * stride[1] - 2 * padding[1] + kW;
    TORCH_CHECK(Hb >= 1 && Wb >= 1, kOp, ": x: transposed convolution output would be empty for input [", H, ", ",
                W, "], kernel [", kH, ", ", kW, "], padding ", padding);
    auto range = [](int64_t lo, int64_t s) {
      return s > 1 ? std::to_string(lo) + ".." + std::to_string(lo + s - 1) : std::to_string(lo);
    };
    const bool ok = out.size(0) == N && out.size(1) == C_out && out.size(2) >= Hb &&
                    out.size(2) < Hb + stride[0] && out.size(3) >= Wb && out.size(3) < Wb + stride[1];
    TORCH_CHECK(ok, kOp, ": out: expected shape [", N, ", ", C_out, ", ", range(Hb, stride[0]), ", ",
                range(Wb, stride[1]), "], got ", out.sizes());
    output_padding = {out.size(2) - Hb, out.size(3) - Wb};
  }
  at::assert_no_internal_overlap(out);
  if (has_out2) {
    check_same_dtype(*out2, kOp, "out2", x, "x");
    check_same_shape(*out2, kOp, "out2", out, "out");
    at::assert_no_internal_overlap(*out2);
    // Catches out2 aliasing out where ATen can tell cheaply (dense views); overlapping strided slices of one
    // buffer (TooHard for ATen) are the caller's responsibility.
    const auto overlap = at::get_overlap_status(out, *out2);
    TORCH_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial, kOp,
                ": out2: expected memory disjoint from out (e.g. two channel slices of one buffer)");
  }

  EpilogueParams p;
  p.scale = check_channel_param(scale, "scale", x, C_out, keep_alive);
  p.shift = check_channel_param(shift, "shift", x, C_out, keep_alive);

  // Vendor convolution into a fresh dense tensor (its memory format follows x / weight: NCHW or
  // channels_last). The epilogue reads it exactly once.
  at::Tensor y = at::convolution(x, weight, /*bias=*/std::nullopt, stride, padding, /*dilation=*/{1, 1},
                                 transposed, output_padding, /*groups=*/1);
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
  p.N = N;
  p.C = C_out;
  p.H = out.size(2);
  p.W = out.size(3);
  p.slope = static_cast<float>(slope);
  p.act = static_cast<int>(act);
  p.act2 = static_cast<int>(act2);
  p.out = out.data_ptr();
  fill_strides(out, p.out_stride);
  if (has_out2) {
    p.out2 = out2->data_ptr();
    fill_strides(*out2, p.out2_stride);
  }
  p.dtype = dtype;
  return p;
}

}  // namespace skipgan
