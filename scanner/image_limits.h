// What one image may cost, checked from its header before anything is allocated for it. The same numbers and the
// same messages as skipgan/data/limits.py (tests/test_image_limits.py holds the two equal), so `skipgan score` and
// the scanner refuse the same files. OpenCV's CV_IO_MAX_IMAGE_PIXELS (2^30) plays this part there.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace scanner {

// A file that cannot be decoded, or one over a cap; the message names the problem (the caller adds the path).
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ImageLimits {
  // Per side: far above any sensor (line-scan cameras included), below what 32-bit row arithmetic could overflow.
  int64_t max_side = 65536;
  // 2^27 = 134,217,728 pixels: a 16-bit 8k x 8k X-ray (67 M) passes with room to spare. --max-pixels.
  int64_t max_pixels = int64_t(1) << 27;
  // Decoded bytes of one image (samples x bytes per sample), and with 1 MiB for headers the most read of a file:
  // 1 GiB. --max-bytes.
  int64_t max_bytes = int64_t(1) << 30;

  int64_t max_file_bytes() const { return max_bytes + (int64_t(1) << 20); }

  // Throws DecodeError when a file of `size` bytes (or the part read so far) is over max_file_bytes().
  void check_file(int64_t size) const {
    if (size > max_file_bytes())
      throw DecodeError("file is over the cap of --max-bytes " + std::to_string(max_bytes) +
                        " (+1 MiB for headers) bytes");
  }

  // Throws DecodeError naming the cap when width x height x channels x sample_bytes is over one. Every argument
  // may come straight from a hostile header: nothing here can overflow (sides are compared before multiplying).
  void check(int64_t width, int64_t height, int64_t channels, int64_t sample_bytes) const {
    if (width <= 0 || height <= 0) throw DecodeError("empty image (0 pixels)");
    if (width > max_side || height > max_side)
      throw DecodeError("image of " + std::to_string(width) + " x " + std::to_string(height) +
                        " pixels is over the cap of " + std::to_string(max_side) + " pixels per side");
    const int64_t pixels = width * height;  // <= 2^32: no overflow
    if (pixels > max_pixels)
      throw DecodeError("image of " + std::to_string(width) + " x " + std::to_string(height) + " = " +
                        std::to_string(pixels) + " pixels is over the cap of --max-pixels " +
                        std::to_string(max_pixels));
    if (channels <= 0 || channels > 64 || sample_bytes <= 0 || sample_bytes > 8)
      throw DecodeError("unsupported layout (" + std::to_string(channels) + " channels of " +
                        std::to_string(sample_bytes) + " bytes)");
    const int64_t bytes = pixels * channels * sample_bytes;  // <= 2^32 * 512: no overflow
    if (bytes > max_bytes)
      throw DecodeError("image of " + std::to_string(width) + " x " + std::to_string(height) + " x " +
                        std::to_string(channels) + " samples = " + std::to_string(bytes) +
                        " bytes decoded is over the cap of --max-bytes " + std::to_string(max_bytes));
  }
};

}  // namespace scanner
