// Untrusted bytes -> one image's samples, with no libtorch: the code the fuzz harnesses (scanner/fuzz/) run is
// the code the scanner ships. decode.h wraps it into tensors.
//
// PNG (8/16-bit; alpha dropped, palette -> RGB, 16-bit colour reduced to 8 bits like Pillow), PGM/PPM (P5/P6,
// maxval 255 or 65535), TIFF (one page, 8/16-bit unsigned or 32-bit float in [0, 1], interleaved or planar), the
// format picked by the magic bytes, as skipgan/data/images.py gives them. Every size is checked against
// ImageLimits before anything is allocated for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "image_limits.h"

namespace scanner {

enum class SampleType { u8, u16, f32 };

inline int64_t sample_bytes(SampleType t) { return t == SampleType::u8 ? 1 : t == SampleType::u16 ? 2 : 4; }

struct DecodedImage {
  std::vector<uint8_t> samples;  // [C, H, W] planar, native byte order
  int64_t channels = 0, height = 0, width = 0;
  SampleType type = SampleType::u8;
};

// Throws DecodeError (a corrupt or unsupported file, or one over a cap); never reads outside [data, data + size).
DecodedImage decode_bytes(const uint8_t* data, size_t size, const ImageLimits& limits = {});

// The file's bytes (at most limits.max_file_bytes(), else DecodeError before reading them) -> decode_bytes.
DecodedImage decode_file(const std::string& path, const ImageLimits& limits = {});

// File suffixes listed when a folder is scanned (the Python CLI's list; the scanner reports JPEG/BMP as errors).
bool is_image_path(const std::string& path);

}  // namespace scanner
