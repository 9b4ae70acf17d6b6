#include "bias_act.h"

#include <ATen/MemoryOverlap.h>

#include "checks.h"
#include "epilogue.h"

namespace skipgan {
namespace {

constexpr const char* kOp = "skipgan::bias_act_out";

// The epilogue writes a block only after reading the same block of y, so an output that IS y (same data,
// same strides: ATen's Full) is fine; any other overlap would read values already overwritten.
void check_not_partially_y(const at::Tensor& t, const char* name, const at::Tensor& y) {
  TORCH_CHECK(at::get_overlap_status(t, y) != at::MemOverlapStatus::Partial, kOp, ": ", name,
              ": expected memory disjoint from y, or y itself (in place)");
}

}  // namespace

EpilogueParams bias_act_prepare(const at::Tensor& y, const std::optional<at::Tensor>& scale,
                                const std::optional<at::Tensor>& shift, int64_t act, double slope,
                                const at::Tensor& out, int64_t act2, const std::optional<at::Tensor>& out2,
                                c10::DeviceType device_type, std::vector<at::Tensor>& keep_alive) {
  const bool has_out2 = out2.has_value() && out2->defined();
  check_epilogue_devices(kOp, y, "y", out, out2, device_type);
  check_dim(y, kOp, "y", 4);
  check_float_dtype(y, kOp, "y");
  check_dim(out, kOp, "out", 4);
  check_same_shape(out, kOp, "out", y, "y");
  EpilogueParams p = describe_epilogue(kOp, y, "y", scale, shift, act, slope, out, act2, out2, keep_alive);

  at::Tensor yd = y;
  if (y.is_contiguous()) {
    p.channels_last = false;
  } else if (y.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    p.channels_last = true;
  } else {
    yd = y.contiguous();  // a copy: cannot alias the outputs
    keep_alive.push_back(yd);
    p.channels_last = false;
  }
  if (yd.is_same(y)) {
    check_not_partially_y(out, "out", y);
    if (has_out2) check_not_partially_y(*out2, "out2", y);
  }
  p.y = yd.const_data_ptr();
  return p;
}

}  // namespace skipgan
