// Device-independent half of skipgan::col2im_bias_act_out: argument checks and the description of the fold
// (Col2imParams). Only a CPU kernel exists (cpu/col2im.cpp); on CUDA the engine runs transposed convs
// through cuDNN.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace skipgan {

// Checks every argument (naming it in the error) and describes the fold + epilogue. cols is read in place
// when contiguous, else copied first (appended to `keep_alive`, one extra read of the biggest tensor of the
// layer: the engine never hits that path); so are non-contiguous scale / shift.
Col2imParams col2im_prepare(const at::Tensor& cols, at::IntArrayRef kernel, at::IntArrayRef stride,
                            at::IntArrayRef padding, const std::optional<at::Tensor>& scale,
                            const std::optional<at::Tensor>& shift, int64_t act, double slope, const at::Tensor& out,
                            int64_t act2, const std::optional<at::Tensor>& out2,
                            const std::optional<at::Tensor>& probe_weight, c10::DeviceType device_type,
                            std::vector<at::Tensor>& keep_alive);

}  // namespace skipgan
