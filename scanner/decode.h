// Image files -> samples [C, H, W] (uint8, uint16 or float32) exactly as skipgan's Python reader gives them
// (skipgan/data/images.py), so that the exported model's own preprocessing sees the same numbers. The decoding
// itself is image_decode.h (no libtorch; fuzzed by scanner/fuzz/).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include "image_decode.h"

namespace scanner {

// Throws DecodeError: a file that cannot be decoded or is over a cap of `limits`.
at::Tensor decode_image(const std::string& path, const ImageLimits& limits = {});

// The samples of decode_bytes/decode_file as a tensor that owns its memory.
at::Tensor to_tensor(DecodedImage&& image);

}  // namespace scanner
