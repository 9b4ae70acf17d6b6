#include "overlay.h"

#include <ATen/ATen.h>

namespace scanner {
namespace {

constexpr double kAlpha = 0.45;  // skipgan/overlay.py ALPHA
constexpr int64_t kMinSide = 256;  // MIN_SIDE

// skipgan.preprocess.to_unit: samples -> [0, 1]
at::Tensor to_unit(const at::Tensor& image) {
  const at::Tensor x = image.to(at::kFloat);
  if (image.scalar_type() == at::kByte) return x * (1.0 / 255.0);
  if (image.scalar_type() == at::kUInt16) return x * (1.0 / 65535.0);
  return x.clamp(0.0, 1.0);
}

}  // namespace

at::Tensor map_at_size(const at::Tensor& map, int64_t height, int64_t width) {
  if (map.size(0) == height && map.size(1) == width) return map.to(at::kFloat).clone();
  return at::upsample_bilinear2d(map.to(at::kFloat).unsqueeze(0).unsqueeze(0), {height, width}, false)[0][0];
}

at::Tensor render_overlay(const at::Tensor& image, const at::Tensor& map, std::optional<float> threshold) {
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  const at::Tensor x = to_unit(image).clamp(0.0, 1.0);
  const at::Tensor base = c >= 3 ? x.slice(0, 0, 3) : (c == 1 ? x : x.mean(0, true)).expand({3, h, w});
  const at::Tensor m = map.to(at::kFloat);
  const double vmax = threshold && *threshold > 0 ? 1.5 * double(*threshold) : 6.0;  // overlay_vmax
  const at::Tensor t = (m / vmax).clamp(0.0, 1.0);
  const at::Tensor centres = at::tensor({3.0f, 2.0f, 1.0f}).view({3, 1, 1});
  const at::Tensor heat = (1.5 - (t * 4.0 - centres).abs()).clamp(0.0, 1.0);
  at::Tensor out = base * (1.0 - kAlpha) + heat * kAlpha;
  if (threshold) {
    const at::Tensor above = (m > double(*threshold)).to(at::kFloat).unsqueeze(0).unsqueeze(0);
    const at::Tensor p = at::replication_pad2d(above, {1, 1, 1, 1})[0][0];
    const at::Tensor neighbours =
        at::minimum(at::minimum(p.slice(0, 0, h).slice(1, 1, w + 1), p.slice(0, 2, h + 2).slice(1, 1, w + 1)),
                    at::minimum(p.slice(0, 1, h + 1).slice(1, 0, w), p.slice(0, 1, h + 1).slice(1, 2, w + 2)));
    const at::Tensor edge = (above[0][0] > 0).logical_and(neighbours < 1);
    out = at::where(edge, at::ones_like(out), out);
  }
  at::Tensor pixels = (out * 255.0).round().clamp(0, 255).to(at::kByte);
  const int64_t s = std::max<int64_t>(1, (kMinSide + std::max(h, w) - 1) / std::max(h, w));  // overlay_scale
  if (s > 1) pixels = pixels.repeat_interleave(s, 1).repeat_interleave(s, 2);
  return pixels.permute({1, 2, 0}).contiguous();
}

at::Tensor encode_png16(const at::Tensor& map) {
  return ((map.to(at::kFloat) * 1000.0).round() + 32768).clamp(0, 65535).to(at::kUInt16).contiguous();
}

}  // namespace scanner
