// CPU registration of skipgan::col2im_bias_act_out: checks (col2im.cpp one level up), then the fold +
// epilogue kernel (col2im_kernel.h, best instruction set for this CPU) over output rows split over threads.
//
// Determinism: an output row (n, oy) -- in probe mode (b, oy), all K probes of it -- is computed entirely by
// one task in a fixed order (taps in (ky, ix, kx) order, probes in k order), so the result is bit-identical
// for any at::get_num_threads().
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../col2im.h"
#include "isa.h"

namespace skipgan::cpu {
namespace {

void col2im_bias_act_out_cpu(const at::Tensor& cols, at::IntArrayRef kernel, at::IntArrayRef stride,
                             at::IntArrayRef padding, const std::optional<at::Tensor>& scale,
                             const std::optional<at::Tensor>& shift, int64_t act, double slope, const at::Tensor& out,
                             int64_t act2, const std::optional<at::Tensor>& out2,
                             const std::optional<at::Tensor>& probe_weight) {
  std::vector<at::Tensor> keep_alive;
  const Col2imParams q = col2im_prepare(cols, kernel, stride, padding, scale, shift, act, slope, out, act2, out2,
                                        probe_weight, c10::DeviceType::CPU, keep_alive);
  const int64_t rows = q.e.N * q.e.H;
  const int64_t row_len = q.e.W * q.e.C;
  if (rows * row_len == 0) return;
  // Work of one row: its taps (about kH / sH input rows of W * kW * C values) per probe, plus the epilogue.
  const int64_t taps = ((q.kH + q.sH - 1) / q.sH) * q.W * q.kW * q.e.C;
  const int64_t row_cost = std::max<int64_t>(1, q.K * (taps + row_len));
  const int64_t grain = std::max<int64_t>(1, 65536 / row_cost);  // small layers stay on one thread
  const auto fn = kernels().col2im_rows;
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(col2im_scratch_floats(q));  // one per task
    fn(q, begin, end, scratch.data());
  });
}

}  // namespace
}  // namespace skipgan::cpu

// No CUDA kernel on purpose: on CUDA the engine runs transposed convolutions through cuDNN
// (conv_bn_act_out), so CUDA tensors get the dispatcher's "could not run ... with arguments from the 'CUDA'
// backend".
TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("col2im_bias_act_out", &skipgan::cpu::col2im_bias_act_out_cpu);
}
