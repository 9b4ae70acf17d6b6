// CPU registration of skipgan::nearest_distances: the knn map's search, fused. Per block of `query_block` queries
// and `memory_block` memory rows, one GEMM (`gemm` 0: at::addmm_out, MKL here; 1: oneDNN's matmul; which is faster
// depends on the CPU, so the caller measures: skipgan/model/patch_knn.py) writes |m|² − 2 q·m into a buffer that
// stays in cache, and one scan per query (nearest_kernel.h) takes the minimum and re-ranks exactly, as Σ (q − m)²,
// the rows within the GEMM's error bound of it. The result is the exact distance to the true nearest row, whatever
// the GEMM kernel rounded (the ranking is only used to find it), for a min and a compare per value instead of a
// top-k. CPU only: CUDA tensors get the dispatcher's "no kernel for CUDA" error (patch_knn.py searches there with
// the fixed top-k in torch ops).
//
// Determinism: each query's result depends only on its own row of GEMM values and its candidates' exact sums in
// a fixed order, so it is the same for any thread count (given the GEMM's values).
#include <algorithm>
#include <limits>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../nearest.h"
#include "isa.h"

namespace skipgan::cpu {
namespace {

constexpr const char* kOp = "skipgan::nearest_distances";

// gemm 1: oneDNN's fp32 matmul (ATen's mkldnn::_linear_pointwise, called boxed: its schema's types are ATen's), with
// the weight −2·memory and the bias |m|²: the same values as addmm's up to rounding, which the scan's window covers.
at::Tensor onednn_block(const at::Tensor& qb, const at::Tensor& weight, const at::Tensor& bias) {
  static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{qb, weight, bias, std::string("none"), c10::List<std::optional<at::Scalar>>(), c10::IValue()};
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

at::Tensor nearest_distances_cpu(const at::Tensor& queries, const at::Tensor& memory, const at::Tensor& memory_sq,
                                 int64_t query_block, int64_t memory_block, int64_t gemm) {
  nearest_distances_check(kOp, queries, memory, memory_sq, query_block, memory_block);
  TORCH_CHECK(gemm == 0 || gemm == 1, kOp, ": gemm: expected 0 (at::addmm) or 1 (oneDNN), got ", gemm);
  const at::Tensor q = queries.contiguous(), mem = memory.contiguous(), msq = memory_sq.contiguous();
  const int64_t n_q = q.size(0), n_m = mem.size(0), c = q.size(1);
  at::Tensor out = at::empty({n_q}, q.options());
  if (n_q == 0) return out;
  const float unit = kWindowUlps * static_cast<float>(c) * std::ldexp(1.f, -24);
  const float mem_sq_max = msq.max().item<float>();
  const at::Tensor q_sq = q.pow(2).sum(1);
  const float* qp = q.data_ptr<float>();
  const float* qsp = q_sq.data_ptr<float>();
  const float* mp = mem.data_ptr<float>();
  float* best = out.data_ptr<float>();
  std::fill(best, best + n_q, std::numeric_limits<float>::infinity());
  at::Tensor part = at::empty({std::min(n_q, query_block), std::min(n_m, memory_block)}, q.options());
  const at::Tensor weight = gemm == 1 ? mem.mul(-2.0).contiguous() : at::Tensor();
  const Kernels& k = kernels();
  for (int64_t i0 = 0; i0 < n_q; i0 += query_block) {
    const int64_t nq = std::min(query_block, n_q - i0);
    const at::Tensor qb = q.narrow(0, i0, nq);
    for (int64_t j0 = 0; j0 < n_m; j0 += memory_block) {
      const int64_t nm = std::min(memory_block, n_m - j0);
      at::Tensor d;
      if (gemm == 1) {
        d = onednn_block(qb, weight.narrow(0, j0, nm), msq.narrow(0, j0, nm));
      } else {
        d = part.narrow(0, 0, nq).narrow(1, 0, nm);
        at::addmm_out(d, msq.narrow(0, j0, nm).unsqueeze(0), qb, mem.narrow(0, j0, nm).t(), 1, -2);
      }
      const float* dp = d.data_ptr<float>();
      const int64_t ld = d.stride(0);
      at::parallel_for(0, nq, 16, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t i = i0 + r;
          const float tau = (qsp[i] + mem_sq_max) * unit;
          best[i] = std::min(best[i], k.nearest_in_row(dp + r * ld, nm, tau, qp + i * c, mp + j0 * c, c));
        }
      });
    }
  }
  return out.sqrt_();
}

}  // namespace

TORCH_LIBRARY_IMPL(skipgan, CPU, m) { m.impl("nearest_distances", &nearest_distances_cpu); }

}  // namespace skipgan::cpu
