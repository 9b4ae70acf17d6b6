// Device-independent half of skipgan::bias_act_out: the conv_bn_act epilogue on a given pre-activation y
// (e.g. the result of a GEMM). The CPU and CUDA files then run the same epilogue kernels as conv_bn_act_out.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace skipgan {

// Checks every argument (naming it in the error) and describes the epilogue over y. y is read in place when
// it is dense NCHW or dense channels_last, else copied to contiguous first (appended to `keep_alive`, one
// extra read; the engine never hits that path). out / out2 may be y itself (in place: every path reads a
// block of y before writing it) but must not partially overlap it.
EpilogueParams bias_act_prepare(const at::Tensor& y, const std::optional<at::Tensor>& scale,
                                const std::optional<at::Tensor>& shift, int64_t act, double slope,
                                const at::Tensor& out, int64_t act2, const std::optional<at::Tensor>& out2,
                                c10::DeviceType device_type, std::vector<at::Tensor>& keep_alive);

}  // namespace skipgan
