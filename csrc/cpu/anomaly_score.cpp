// CPU registration of skipgan::anomaly_score{,_out}.
//
// Determinism: every sample is cut into chunks of a FIXED size (isa.h: kPixChunk image pixels, kFeatChunk
// feature elements), independent of the thread count. Each chunk's fp32 partial is computed in a fixed order
// by whichever thread gets it (anomaly_score_kernel.h); the partials of a sample are then added in chunk
// order. The result is therefore bit-identical for any at::get_num_threads(). Each input element is read
// exactly once. With a margin, a chunk's partial covers only its interior pixels (the chunks themselves, and
// so the determinism, are unchanged); the map still covers every pixel.
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../anomaly_score.h"
#include "isa.h"

namespace skipgan::cpu {
namespace {

constexpr const char* kOpOut = "skipgan::anomaly_score_out";
constexpr const char* kOp = "skipgan::anomaly_score";

void run(const ScoreParams& p) {
  const int64_t B = p.B;
  if (B == 0) return;
  const Kernels& k = kernels();
  const int64_t nxc = (p.npix + kPixChunk - 1) / kPixChunk;
  const int64_t nfc = (p.nf + kFeatChunk - 1) / kFeatChunk;
  const int64_t per_sample = nxc + nfc;
  // partial[b * per_sample + j]: j < nxc image chunks, then feature chunks.
  std::vector<float> partial(B * per_sample);
  const int64_t task_elems = std::max<int64_t>(1, (p.C * p.npix + p.nf) / per_sample);
  const int64_t grain = std::max<int64_t>(1, 65536 / task_elems);  // small inputs stay on one thread
  at::parallel_for(0, B * per_sample, grain, [&](int64_t begin, int64_t end) {
    // The margin path keeps the chunk's per-pixel sums in front (isa.h); the margin-free paths get exactly
    // max(kPixChunk, C), which fixes their NHWC block size.
    std::vector<float> scratch(std::max<int64_t>(kPixChunk, p.C) + (p.margin > 0 ? kPixChunk : 0));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / per_sample, j = t % per_sample;
      if (j < nxc) {
        const int64_t p0 = j * kPixChunk;
        partial[t] = k.image_chunk(p, b, p0, std::min(kPixChunk, p.npix - p0), scratch.data(),
                                   static_cast<int64_t>(scratch.size()));
      } else {
        const int64_t e0 = (j - nxc) * kFeatChunk;
        partial[t] = k.feature_chunk(p, b, e0, std::min(kFeatChunk, p.nf - e0));
      }
    }
  });
  const int64_t n_interior = p.C * (p.H - 2 * p.margin) * (p.W - 2 * p.margin);  // == C * npix without margin
  const float inv_x = 1.f / static_cast<float>(n_interior), inv_f = 1.f / static_cast<float>(p.nf);
  for (int64_t b = 0; b < B; ++b) {
    const float* part = partial.data() + b * per_sample;
    float sx = 0.f, sf = 0.f;
    for (int64_t j = 0; j < nxc; ++j) sx += part[j];
    for (int64_t j = 0; j < nfc; ++j) sf += part[nxc + j];
    const float r = sx * inv_x, l = sf * inv_f;
    p.scores[b * p.scores_stride] = p.lam * r + (1.f - p.lam) * l;
    if (p.parts) {
      p.parts[2 * b] = r;
      p.parts[2 * b + 1] = l;
    }
  }
}

void anomaly_score_out_cpu(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& f,
                           const at::Tensor& f_hat, double lam, const at::Tensor& scores,
                           const std::optional<at::Tensor>& error_map, int64_t margin,
                           const std::optional<at::Tensor>& parts) {
  std::vector<at::Tensor> keep_alive;
  run(anomaly_score_prepare(kOpOut, x, x_hat, f, f_hat, lam, scores, error_map, margin, parts, c10::DeviceType::CPU,
                            keep_alive));
}

at::Tensor anomaly_score_cpu(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& f,
                             const at::Tensor& f_hat, double lam, int64_t margin) {
  at::Tensor scores = at::empty({anomaly_score_batch(kOp, x)}, x.options().dtype(at::kFloat));
  std::vector<at::Tensor> keep_alive;
  run(anomaly_score_prepare(kOp, x, x_hat, f, f_hat, lam, scores, std::nullopt, margin, std::nullopt,
                            c10::DeviceType::CPU, keep_alive));
  return scores;
}

}  // namespace
}  // namespace skipgan::cpu

TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("anomaly_score", &skipgan::cpu::anomaly_score_cpu);
  m.impl("anomaly_score_out", &skipgan::cpu::anomaly_score_out_cpu);
}
