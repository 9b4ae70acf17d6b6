#include "image_encode.h"

#include <png.h>

#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include <unistd.h>

namespace scanner {
namespace {

std::string temp_name(const std::filesystem::path& target) {
  static std::atomic<uint64_t> counter{0};
  std::string name = ".";
  name += target.filename().string();
  name += ".tmp";
  name += std::to_string(::getpid());
  name += '.';
  name += std::to_string(counter++);
  return (target.parent_path() / name).string();
}

void write_png(std::FILE* f, const void* pixels, int64_t width, int64_t height, int channels, int bit_depth) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw std::runtime_error("libpng: out of memory");
  }
  const size_t sample = bit_depth == 16 ? 2 : 1;
  const size_t row_bytes = size_t(width) * size_t(channels) * sample;
  std::vector<uint8_t> row(row_bytes);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng could not write the image");
  }
  png_init_io(png, f);
  // zlib's fastest level: the scanner writes these beside scoring, and the pixels are the same at any level
  png_set_compression_level(png, 1);
  png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), bit_depth,
               channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const auto* base = static_cast<const uint8_t*>(pixels);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* src = base + size_t(y) * row_bytes;
    if (bit_depth == 16) {  // PNG stores 16-bit samples big-endian, whatever the host's order
      for (size_t i = 0; i < row_bytes; i += 2) {
        uint16_t v;
        std::memcpy(&v, src + i, 2);
        row[i] = uint8_t(v >> 8), row[i + 1] = uint8_t(v & 0xff);
      }
      png_write_row(png, row.data());
    } else {
      png_write_row(png, const_cast<uint8_t*>(src));
    }
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}

}  // namespace

void write_png_atomic(const std::string& path, const void* pixels, int64_t width, int64_t height, int channels,
                      int bit_depth) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) throw std::runtime_error(path + ": cannot create its folder (" + ec.message() + ")");
  const std::string tmp = temp_name(target);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot write (" + std::string(std::strerror(errno)) + ")");
  try {
    write_png(f, pixels, width, height, channels, bit_depth);
  } catch (const std::exception& e) {
    std::fclose(f);
    fs::remove(tmp, ec);
    throw std::runtime_error(path + ": " + e.what());
  }
  if (std::fclose(f) != 0) {
    fs::remove(tmp, ec);
    throw std::runtime_error(path + ": cannot write (disk full?)");
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(path + ": cannot rename into place (" + ec.message() + ")");
  }
}

}  // namespace scanner
