// The epilogue arguments every fused op shares -- scale / shift, act / act2 / slope, out / out2 -- checked and
// described (EpilogueParams) in ONE place, so that conv_bn_act_out, bias_act_out and col2im_bias_act_out
// accept exactly the same things and fail with the same messages (each naming its own op).
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace skipgan {

// act / act2: an activation code of activation.h (0..4).
void check_act(const char* op, int64_t act, const char* name);

// out, and out2 when given, on the device of `ref` (the op's main input, named ref_name in messages), and ref
// a `device_type` tensor. Ops check this before anything else: a tensor on the wrong device is the likeliest
// mistake, and the dispatcher has already picked a kernel from the union of all devices.
void check_epilogue_devices(const char* op, const at::Tensor& ref, const char* ref_name, const at::Tensor& out,
                            const std::optional<at::Tensor>& out2, c10::DeviceType device_type);

// Checks the rest of the epilogue arguments and fills every field of EpilogueParams except the input's
// (y, channels_last), whose layout is op-specific:
//   act, act2 codes; out 4-D, of ref's dtype, no internal overlap (its SHAPE is op-specific: the caller checks
//   it first); out2 like out and disjoint from it; scale / shift optional fp32 [out.size(1)] on ref's device.
// N, C, H, W are out's sizes, dtype is ref's. Contiguous copies of scale / shift go to keep_alive.
EpilogueParams describe_epilogue(const char* op, const at::Tensor& ref, const char* ref_name,
                                 const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                 int64_t act, double slope, const at::Tensor& out, int64_t act2,
                                 const std::optional<at::Tensor>& out2, std::vector<at::Tensor>& keep_alive);

}  // namespace skipgan
