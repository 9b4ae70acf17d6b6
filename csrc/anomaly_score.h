// Device-independent half of skipgan::anomaly_score{,_out}: argument checks and the layout plan.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "params.h"

namespace skipgan {

// Checks every argument (naming it in the error) and describes the reduction. x / x_hat are read in
// place when both are per-sample dense NCHW or both per-sample dense channels_last (batch strides may
// differ, so x = buf[:B] and x_hat = buf[B:] of one buffer work); f / f_hat in place when per-sample
// dense with equal strides. Any other layout is copied to contiguous first (appended to `keep_alive`),
// which costs one extra read; the engine never hits that path. `margin` border pixels are left out of the
// image term (not of the map); `parts`, when given, receives (R, L) per sample.
ScoreParams anomaly_score_prepare(const char* op, const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& f,
                                  const at::Tensor& f_hat, double lam, const at::Tensor& scores,
                                  const std::optional<at::Tensor>& error_map, int64_t margin,
                                  const std::optional<at::Tensor>& parts, c10::DeviceType device_type,
                                  std::vector<at::Tensor>& keep_alive);

// Checks the inputs of the functional op far enough to size its output ([B] fp32).
int64_t anomaly_score_batch(const char* op, const at::Tensor& x);

}  // namespace skipgan
