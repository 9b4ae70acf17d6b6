#include "anomaly_score.h"

#include <ATen/MemoryOverlap.h>
#include <c10/util/accumulate.h>

#include "checks.h"

namespace skipgan {
namespace {

// Per-sample layout of a [B, C, H, W] tensor, ignoring the batch stride and the strides of size-1 dims.
bool planar(const at::Tensor& t) {  // NCHW order: w fastest, then h, then c
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return (W == 1 || t.stride(3) == 1) && (H == 1 || t.stride(2) == W) && (C == 1 || t.stride(1) == H * W);
}

bool interleaved(const at::Tensor& t) {  // NHWC order: c fastest, then w, then h
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return (C == 1 || t.stride(1) == 1) && (W == 1 || t.stride(3) == C) && (H == 1 || t.stride(2) == W * C);
}

// f and f_hat can be read as flat spans of the same element order: equal strides (outside size-1 dims)
// and each sample non-overlapping and dense.
bool flat_pair(const at::Tensor& a, const at::Tensor& b) {
  for (int64_t d = 1; d < a.dim(); ++d) {
    if (a.size(d) != 1 && a.stride(d) != b.stride(d)) return false;
  }
  return a.size(0) == 0 || a.select(0, 0).is_non_overlapping_and_dense();
}

}  // namespace

int64_t anomaly_score_batch(const char* op, const at::Tensor& x) {
  check_dim(x, op, "x", 4);
  return x.size(0);
}

ScoreParams anomaly_score_prepare(const char* op, const at::Tensor& x_in, const at::Tensor& x_hat_in,
                                  const at::Tensor& f_in, const at::Tensor& f_hat_in, double lam,
                                  const at::Tensor& scores, const std::optional<at::Tensor>& error_map,
                                  int64_t margin, const std::optional<at::Tensor>& parts,
                                  c10::DeviceType device_type, std::vector<at::Tensor>& keep_alive) {
  const bool has_map = error_map.has_value() && error_map->defined();
  const bool has_parts = parts.has_value() && parts->defined();
  check_same_device(x_hat_in, op, "x_hat", x_in, "x");
  check_same_device(f_in, op, "f", x_in, "x");
  check_same_device(f_hat_in, op, "f_hat", x_in, "x");
  check_same_device(scores, op, "scores", x_in, "x");
  if (has_map) check_same_device(*error_map, op, "error_map", x_in, "x");
  if (has_parts) check_same_device(*parts, op, "parts", x_in, "x");
  TORCH_CHECK(x_in.device().type() == device_type, op, ": x: expected a ", c10::DeviceTypeName(device_type),
              " tensor, got device ", x_in.device());

  check_dim(x_in, op, "x", 4);
  ScoreParams p;
  p.x_dtype = check_float_dtype(x_in, op, "x");
  check_same_dtype(x_hat_in, op, "x_hat", x_in, "x");
  check_same_shape(x_hat_in, op, "x_hat", x_in, "x");
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  TORCH_CHECK(C * H * W > 0, op, ": x: expected a non-empty image per sample, got shape ", x_in.sizes());
  // At least one interior pixel: the image term is a mean over them. (2 * margin < H written so that a huge
  // margin cannot overflow; H, W >= 1 here.)
  TORCH_CHECK(margin >= 0 && margin <= (H - 1) / 2 && margin <= (W - 1) / 2, op,
              ": margin: expected 0 <= margin and 2 * margin < H and 2 * margin < W (H = ", H, ", W = ", W,
              "), got ", margin);

  TORCH_CHECK(f_in.dim() >= 1 && f_in.size(0) == B, op, ": f: expected shape [", B,
              ", ...] (batch size of x first), got ", f_in.sizes());
  p.f_dtype = check_float_dtype(f_in, op, "f");
  check_same_dtype(f_hat_in, op, "f_hat", f_in, "f");
  check_same_shape(f_hat_in, op, "f_hat", f_in, "f");
  const int64_t nf = c10::multiply_integers(f_in.sizes().slice(1));
  TORCH_CHECK(nf > 0, op, ": f: expected a non-empty feature per sample, got shape ", f_in.sizes());

  check_dtype(scores, op, "scores", at::kFloat);
  check_shape(scores, op, "scores", {B});
  at::assert_no_internal_overlap(scores);
  if (has_map) {
    check_dtype(*error_map, op, "error_map", at::kFloat);
    check_shape(*error_map, op, "error_map", {B, H, W});
    TORCH_CHECK(error_map->is_contiguous(), op, ": error_map: expected a contiguous tensor, got strides ",
                error_map->strides());
  }
  if (has_parts) {
    check_dtype(*parts, op, "parts", at::kFloat);
    check_shape(*parts, op, "parts", {B, 2});
    TORCH_CHECK(parts->is_contiguous(), op, ": parts: expected a contiguous tensor, got strides ", parts->strides());
  }

  at::Tensor x = x_in, x_hat = x_hat_in;
  if (planar(x) && planar(x_hat)) {
    p.planar = true;
  } else if (interleaved(x) && interleaved(x_hat)) {
    p.planar = false;
  } else {
    x = x.contiguous();
    x_hat = x_hat.contiguous();
    keep_alive.push_back(x);
    keep_alive.push_back(x_hat);
    p.planar = true;
  }
  at::Tensor f = f_in, f_hat = f_hat_in;
  if (!flat_pair(f, f_hat)) {
    f = f.contiguous();
    f_hat = f_hat.contiguous();
    keep_alive.push_back(f);
    keep_alive.push_back(f_hat);
  }

  p.B = B;
  p.x = x.const_data_ptr();
  p.x_hat = x_hat.const_data_ptr();
  p.x_bstride = x.stride(0);
  p.x_hat_bstride = x_hat.stride(0);
  p.C = C;
  p.H = H;
  p.W = W;
  p.npix = H * W;
  p.margin = margin;
  p.f = f.const_data_ptr();
  p.f_hat = f_hat.const_data_ptr();
  p.f_bstride = f.stride(0);
  p.f_hat_bstride = f_hat.stride(0);
  p.nf = nf;
  p.lam = static_cast<float>(lam);
  p.scores = scores.data_ptr<float>();
  p.scores_stride = scores.stride(0);
  p.error_map = has_map ? error_map->data_ptr<float>() : nullptr;
  p.parts = has_parts ? parts->data_ptr<float>() : nullptr;
  return p;
}

}  // namespace skipgan
