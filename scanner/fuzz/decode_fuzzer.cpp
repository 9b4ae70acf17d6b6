// decode_bytes (PNG, TIFF, PGM/PPM, picked by magic bytes): every outcome but an image or a DecodeError is a bug.
// The caps are smaller than the shipped defaults so that a legitimately large image (a 64 KiB TIFF whose strips
// all point at one run can decode to a gigabyte) does not count as running out of memory; the code is the same.
#include <cstddef>
#include <cstdint>

#include "image_decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  scanner::ImageLimits limits;
  limits.max_pixels = int64_t(1) << 22;
  limits.max_bytes = int64_t(64) << 20;
  try {
    const scanner::DecodedImage im = scanner::decode_bytes(data, size, limits);
    if (im.samples.size() != size_t(im.channels * im.height * im.width * scanner::sample_bytes(im.type)))
      __builtin_trap();
  } catch (const scanner::DecodeError&) {
  }
  return 0;
}
