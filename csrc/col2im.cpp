#include "col2im.h"

#include <ATen/MemoryOverlap.h>

#include "checks.h"
#include "epilogue.h"

namespace skipgan {
namespace {

constexpr const char* kOp = "skipgan::col2im_bias_act_out";

void check_pair(at::IntArrayRef v, const char* name, int64_t min) {
  TORCH_CHECK(v.size() == 2 && v[0] >= min && v[1] >= min, kOp, ": ", name, ": expected two values >= ", min,
              ", got ", v);
}

void check_disjoint_from_cols(const at::Tensor& t, const char* name, const at::Tensor& cols) {
  const auto overlap = at::get_overlap_status(t, cols);
  TORCH_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial, kOp, ": ", name,
              ": expected memory disjoint from cols");
}

}  // namespace

Col2imParams col2im_prepare(const at::Tensor& cols, at::IntArrayRef kernel, at::IntArrayRef stride,
                            at::IntArrayRef padding, const std::optional<at::Tensor>& scale,
                            const std::optional<at::Tensor>& shift, int64_t act, double slope, const at::Tensor& out,
                            int64_t act2, const std::optional<at::Tensor>& out2,
                            const std::optional<at::Tensor>& probe_weight, c10::DeviceType device_type,
                            std::vector<at::Tensor>& keep_alive) {
  const bool has_out2 = out2.has_value() && out2->defined();
  const bool probe = probe_weight.has_value() && probe_weight->defined();
  check_epilogue_devices(kOp, cols, "cols", out, out2, device_type);
  if (probe) check_same_device(*probe_weight, kOp, "probe_weight", cols, "cols");

  check_dim(cols, kOp, "cols", 6);
  check_float_dtype(cols, kOp, "cols");
  check_pair(kernel, "kernel", 1);
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  const int64_t N = cols.size(0), H = cols.size(1), W = cols.size(2), C = cols.size(5);
  TORCH_CHECK(kernel[0] == cols.size(3) && kernel[1] == cols.size(4), kOp, ": kernel: expected [", cols.size(3),
              ", ", cols.size(4), "] (cols is [N, H, W, kH, kW, C] with shape ", cols.sizes(), "), got ", kernel);
  check_act(kOp, act, "act");
  check_act(kOp, act2, "act2");

  // Probe mode: cols holds K * B rows, probe-major; out gets the weighted sum over k, so there is one output.
  int64_t B = N, K = 1;
  if (probe) {
    const at::Tensor& pw = *probe_weight;
    check_dim(pw, kOp, "probe_weight", 4);
    check_dtype(pw, kOp, "probe_weight", at::kFloat);
    K = pw.size(0);
    TORCH_CHECK(K >= 1 && N % K == 0, kOp, ": probe_weight: expected size(0) = K >= 1 dividing cols.size(0) = ", N,
                " (cols rows are probe-major: row k * B + b), got K = ", K);
    B = N / K;
    TORCH_CHECK(!has_out2, kOp,
                ": out2: expected None with probe_weight (probe mode writes one weighted sum of the K probes)");
    TORCH_CHECK(act2 == 0, kOp, ": act2: expected 0 (none) with probe_weight (probe mode has no second output), got ",
                act2);
  }

  check_dim(out, kOp, "out", 4);
  check_same_dtype(out, kOp, "out", cols, "cols");
  check_transposed_out_shape(out, kOp, "cols", B, C, H, W, kernel, stride, padding);

  Col2imParams q;
  q.e = describe_epilogue(kOp, cols, "cols", scale, shift, act, slope, out, act2, out2, keep_alive);
  if (probe) {
    const at::Tensor& pw = *probe_weight;
    const int64_t Ho = out.size(2), Wo = out.size(3);
    TORCH_CHECK(pw.size(2) == Ho && pw.size(3) == Wo && (pw.size(1) == 1 || pw.size(1) == C), kOp,
                ": probe_weight: expected shape [", K, ", 1 or ", C, ", ", Ho, ", ", Wo,
                "] (one weight per probe and output pixel, optionally per channel), got ", pw.sizes());
    q.probe_weight = pw.const_data_ptr<float>();
    q.K = K;
    for (int d = 0; d < 4; ++d) q.pw_stride[d] = pw.stride(d);
    if (pw.size(1) == 1) q.pw_stride[1] = 0;  // one weight for all channels of a pixel
  }

  at::Tensor c = cols;
  if (!c.is_contiguous()) {
    c = c.contiguous();
    keep_alive.push_back(c);
  } else {
    // The fold reads cols rows long after out rows have been written: no overlap at all.
    check_disjoint_from_cols(out, "out", cols);
    if (has_out2) check_disjoint_from_cols(*out2, "out2", cols);
  }
  q.cols = c.const_data_ptr();
  q.H = H;
  q.W = W;
  q.kH = kernel[0];
  q.kW = kernel[1];
  q.sH = stride[0];
  q.sW = stride[1];
  q.pH = padding[0];
  q.pW = padding[1];
  return q;
}

}  // namespace skipgan
