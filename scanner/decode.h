// Image files -> samples [C, H, W] (uint8, uint16 or float32) exactly as skipgan's Python reader gives them
// (skipgan/data/images.py), so that the exported model's own preprocessing sees the same numbers.
#pragma once

#include <stdexcept>
#include <string>

#include <ATen/core/Tensor.h>

namespace scanner {

// A file that cannot be decoded; the message names the problem (the caller adds the path).
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// PNG (8/16-bit; alpha dropped, palette -> RGB, 16-bit colour reduced to 8 bits like Pillow), PGM/PPM (P5/P6,
// maxval 255 or 65535), TIFF (one page, 8/16-bit unsigned or 32-bit float in [0, 1], interleaved or planar).
// Throws DecodeError.
at::Tensor decode_image(const std::string& path);

// File suffixes listed when a folder is scanned (the Python CLI's list; the scanner reports JPEG/BMP as errors).
bool is_image_path(const std::string& path);

}  // namespace scanner
