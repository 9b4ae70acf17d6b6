// PNG files the scanner writes (--maps): 8-bit RGB overlays and 16-bit gray raw maps, through libpng, each written
// to a temporary file in the target folder and renamed into place (a reader never sees half a file). No libtorch.
#pragma once

#include <cstdint>
#include <string>

namespace scanner {

// pixels: height x width x channels samples, row-major (uint8 for bit_depth 8, uint16 for 16); channels 1 or 3.
// Creates missing parent folders. Throws std::runtime_error naming `path` on any failure (nothing left behind).
void write_png_atomic(const std::string& path, const void* pixels, int64_t width, int64_t height, int channels,
                      int bit_depth);

}  // namespace scanner
