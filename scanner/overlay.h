// The overlay of an anomaly map on its image and the 16-bit raw map: skipgan/overlay.py and
// skipgan/cli/score_maps.py encode_png16 are the definitions (their docstrings the specification); this runs the same
// ATen operations in the same order, so the PNGs `skipgan_scanner --maps` writes equal `skipgan score --maps`'s pixel
// for pixel (tests/test_scanner.py).
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

namespace scanner {

// The map [S, S] fp32 upsampled bilinearly to height x width (skipgan.anomaly_map.upsample).
at::Tensor map_at_size(const at::Tensor& map, int64_t height, int64_t width);

// image: [C, H, W] as decoded (uint8 / uint16 / float32); map: [H, W] fp32 at its size -> uint8 [H·s, W·s, 3].
at::Tensor render_overlay(const at::Tensor& image, const at::Tensor& map, std::optional<float> threshold);

// map [H, W] fp32 (σ units) -> uint16 [H, W]: round(1000·map) + 32768, clipped (--raw-maps png16).
at::Tensor encode_png16(const at::Tensor& map);

}  // namespace scanner
