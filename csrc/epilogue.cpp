#include "epilogue.h"

#include <ATen/MemoryOverlap.h>

#include "activation.h"
#include "checks.h"

namespace skipgan {
namespace {

// scale / shift: optional fp32 [C] on the device of ref. fp32 is required (not converted) because the
// epilogue math is fp32 and the folded BN parameters are computed in fp32 by the engine.
const float* check_channel_param(const char* op, const std::optional<at::Tensor>& p, const char* name,
                                 const at::Tensor& ref, const char* ref_name, int64_t c,
                                 std::vector<at::Tensor>& keep_alive) {
  if (!p.has_value() || !p->defined()) return nullptr;
  const at::Tensor& t = *p;
  check_same_device(t, op, name, ref, ref_name);
  check_dtype(t, op, name, at::kFloat);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == c, op, ": ", name, ": expected shape [", c,
              "] (one value per output channel), got ", t.sizes());
  keep_alive.push_back(t.contiguous());
  return keep_alive.back().const_data_ptr<float>();
}

void fill_strides(const at::Tensor& t, int64_t* s) {
  for (int d = 0; d < 4; ++d) s[d] = t.stride(d);
}

}  // namespace

void check_act(const char* op, int64_t act, const char* name) {
  TORCH_CHECK(act >= 0 && act < kActCount, op, ": ", name,
              ": expected an activation code 0..4 (none, relu, leaky_relu, tanh, sigmoid), got ", act);
}

void check_epilogue_devices(const char* op, const at::Tensor& ref, const char* ref_name, const at::Tensor& out,
                            const std::optional<at::Tensor>& out2, c10::DeviceType device_type) {
  check_same_device(out, op, "out", ref, ref_name);
  if (out2.has_value() && out2->defined()) check_same_device(*out2, op, "out2", ref, ref_name);
  TORCH_CHECK(ref.device().type() == device_type, op, ": ", ref_name, ": expected a ",
              c10::DeviceTypeName(device_type), " tensor, got device ", ref.device());
}

EpilogueParams describe_epilogue(const char* op, const at::Tensor& ref, const char* ref_name,
                                 const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                 int64_t act, double slope, const at::Tensor& out, int64_t act2,
                                 const std::optional<at::Tensor>& out2, std::vector<at::Tensor>& keep_alive) {
  const bool has_out2 = out2.has_value() && out2->defined();
  check_act(op, act, "act");
  check_act(op, act2, "act2");
  const DType dtype = check_float_dtype(ref, op, ref_name);
  check_dim(out, op, "out", 4);
  check_same_dtype(out, op, "out", ref, ref_name);
  at::assert_no_internal_overlap(out);
  if (has_out2) {
    check_same_dtype(*out2, op, "out2", ref, ref_name);
    check_same_shape(*out2, op, "out2", out, "out");
    at::assert_no_internal_overlap(*out2);
    // Catches out2 aliasing out where ATen can tell cheaply (dense views); overlapping strided slices of one
    // buffer (TooHard for ATen) are the caller's responsibility.
    const auto overlap = at::get_overlap_status(out, *out2);
    TORCH_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial, op,
                ": out2: expected memory disjoint from out (e.g. two channel slices of one buffer)");
  }

  EpilogueParams p;
  const int64_t C = out.size(1);
  p.scale = check_channel_param(op, scale, "scale", ref, ref_name, C, keep_alive);
  p.shift = check_channel_param(op, shift, "shift", ref, ref_name, C, keep_alive);
  p.N = out.size(0);
  p.C = C;
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
