// Device-independent half of skipgan::conv_bn_act_out: argument checks and the vendor convolution.
// The CPU and CUDA files then run their own epilogue over the returned description.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace skipgan {

// Checks every argument (naming it in the error), runs the vendor convolution (oneDNN on CPU, cuDNN on CUDA)
// into a fresh dense tensor and describes the epilogue that must follow. Tensors the description points
// into (the conv output, contiguous copies) are appended to `keep_alive`.
//
// The convolution computes in x's dtype whatever encloses the call: the autocast keys are excluded around it
// (CUDA's autocast lists convolution, and a bf16 / fp16 result read as x's dtype would be garbage), and its
// output dtype is checked. `tf32`: whether cuDNN may run an fp32 convolution on TF32 tensor cores; the op's own
// argument, never the global torch.backends.cudnn.allow_tf32 (ignored on CPU and for bf16 / fp16).
//
// This is the "vendor conv + one epilogue pass" implementation; a single-kernel implementation
// (oneDNN post-ops, cuDNN graph, CUTLASS epilogue) can replace it behind the same schema.
EpilogueParams conv_bn_act_prepare(const at::Tensor& x, const at::Tensor& weight,
                                   const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                   at::IntArrayRef stride, at::IntArrayRef padding, bool transposed, int64_t act,
                                   double slope, const at::Tensor& out, int64_t act2,
                                   const std::optional<at::Tensor>& out2, bool tf32, c10::DeviceType device_type,
                                   std::vector<at::Tensor>& keep_alive);

}  // namespace skipgan
