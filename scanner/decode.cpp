#include "decode.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include <ATen/ATen.h>
#include <png.h>
#include <tiffio.h>

namespace scanner {
namespace {

std::string suffix_of(const std::string& path) {
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string s = path.substr(dot);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Interleaved rows [H, W, C] of `type` -> a contiguous [C, H, W] tensor that owns its memory.
at::Tensor planar(std::vector<uint8_t>& hwc, int64_t h, int64_t w, int64_t c, at::ScalarType type) {
  const at::Tensor view = at::from_blob(hwc.data(), {h, w, c}, at::TensorOptions().dtype(type));
  // clone, not contiguous(): with one channel the permuted view already counts as contiguous, and contiguous()
  // would return it still pointing into `hwc`
  return view.permute({2, 0, 1}).clone(at::MemoryFormat::Contiguous);
}

// ----------------------------------------------------------------------------------------------------- PNG
struct PngFailure {
  std::jmp_buf jump;
  char message[256] = "";
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* failure = static_cast<PngFailure*>(png_get_error_ptr(png));
  std::snprintf(failure->message, sizeof failure->message, "%s", msg);
  std::longjmp(failure->jump, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}

at::Tensor decode_png(const std::string& path) {
  // Every object with a destructor lives before setjmp, so libpng's longjmp skips none (C++ rules for longjmp).
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw DecodeError(std::string("cannot open: ") + std::strerror(errno));
  PngFailure failure;
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_error_fn, png_warning_fn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw DecodeError("out of memory");
  }
  png_uint_32 width = 0, height = 0;
  int channels = 0, depth = 0;
  if (setjmp(failure.jump)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw DecodeError(std::string("cannot decode PNG (truncated or corrupt): ") + failure.message);
  }
  png_init_io(png, file.get());
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // P -> RGB (transparency ignored)
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);       // RGBA -> RGB, LA -> L
  // Pillow decodes 16-bit colour PNGs to 8 bits (keeping the high byte); grey keeps all 16 bits.
  if (depth == 16 && (color & PNG_COLOR_MASK_COLOR)) png_set_strip_16(png);
  if (png_get_bit_depth(png, info) == 16) png_set_swap(png);        // network byte order -> host (little endian)
  png_read_update_info(png, info);
  width = png_get_image_width(png, info);
  height = png_get_image_height(png, info);
  channels = png_get_channels(png, info);
  depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  pixels.resize(row_bytes * height);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = pixels.data() + y * row_bytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  if (width == 0 || height == 0) throw DecodeError("empty image (0 pixels)");
  return planar(pixels, height, width, channels, depth == 16 ? at::kUInt16 : at::kByte);
}

// ------------------------------------------------------------------------------------------------ PGM / PPM
at::Tensor decode_pnm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DecodeError(std::string("cannot open: ") + std::strerror(errno));
  std::string magic;
  in >> magic;
  if (magic != "P5" && magic != "P6") throw DecodeError("not a binary PGM/PPM (P5/P6) file");
  long long fields[3] = {0, 0, 0};  // width, height, maxval; '#' comments may sit between them
  for (auto& v : fields) {
    in >> std::ws;
    while (in.peek() == '#') {
      in.ignore(1 << 20, '\n');
      in >> std::ws;
    }
    if (!(in >> v)) throw DecodeError("truncated or corrupt PGM/PPM header");
  }
  in.get();  // the single whitespace byte after maxval
  const long long w = fields[0], h = fields[1], maxval = fields[2];
  if (w <= 0 || h <= 0) throw DecodeError("empty image (0 pixels)");
  if (maxval != 255 && maxval != 65535)
    throw DecodeError("PGM/PPM maxval " + std::to_string(maxval) + " is not supported (use 255 or 65535)");
  const int64_t c = magic == "P6" ? 3 : 1, bytes = maxval == 255 ? 1 : 2;
  std::vector<uint8_t> pixels(static_cast<size_t>(w * h * c * bytes));
  if (!in.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size())))
    throw DecodeError("truncated PGM/PPM: fewer pixels than the header says");
  if (bytes == 2)  // big endian in the file
    for (size_t i = 0; i < pixels.size(); i += 2) std::swap(pixels[i], pixels[i + 1]);
  return planar(pixels, h, w, c, bytes == 2 ? at::kUInt16 : at::kByte);
}

// ----------------------------------------------------------------------------------------------------- TIFF
thread_local std::string tiff_message;

void tiff_error_fn(const char* module, const char* fmt, va_list args) {
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, args);
  if (tiff_message.empty()) tiff_message = buf;
  (void)module;
}

void tiff_warning_fn(const char*, const char*, va_list) {}

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};

at::Tensor decode_tiff(const std::string& path) {
  static const bool handlers = [] {
    TIFFSetErrorHandler(tiff_error_fn);
    TIFFSetWarningHandler(tiff_warning_fn);
    return true;
  }();
  (void)handlers;
  tiff_message.clear();
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFOpen(path.c_str(), "r"));
  auto fail = [](const std::string& what) {
    return DecodeError(what + (tiff_message.empty() ? "" : ": " + tiff_message));
  };
  if (!tif) throw fail("cannot open TIFF");
  if (TIFFNumberOfDirectories(tif.get()) != 1) throw fail("multi-page TIFF: the scanner reads single images");
  if (TIFFIsTiled(tif.get())) throw fail("tiled TIFF is not supported by the scanner (save it in strips)");
  uint32_t w = 0, h = 0;
  uint16_t spp = 1, bits = 8, format = SAMPLEFORMAT_UINT, config = PLANARCONFIG_CONTIG, photometric = 0;
  TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &h);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &config);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PHOTOMETRIC, &photometric);
  if (w == 0 || h == 0) throw fail("empty image (0 pixels)");
  if (photometric == PHOTOMETRIC_PALETTE) throw fail("palette TIFF is not supported (save grey or RGB)");
  at::ScalarType type;
  if (format == SAMPLEFORMAT_UINT && bits == 8) {
    type = at::kByte;
  } else if (format == SAMPLEFORMAT_UINT && bits == 16) {
    type = at::kUInt16;
  } else if (format == SAMPLEFORMAT_IEEEFP && bits == 32) {
    type = at::kFloat;
  } else {
    throw fail("unsupported TIFF samples (" + std::to_string(bits) + "-bit, format " + std::to_string(format) +
               "); save as unsigned 8/16-bit or 32-bit float in [0, 1]");
  }
  const size_t sample = bits / 8;
  std::vector<uint8_t> pixels(size_t(w) * h * spp * sample);
  const tmsize_t line = TIFFScanlineSize(tif.get());
  std::vector<uint8_t> row(static_cast<size_t>(line));
  if (config == PLANARCONFIG_CONTIG) {
    for (uint32_t y = 0; y < h; ++y) {
      if (TIFFReadScanline(tif.get(), row.data(), y, 0) < 0) throw fail("truncated or corrupt TIFF");
      std::memcpy(pixels.data() + size_t(y) * w * spp * sample, row.data(), size_t(w) * spp * sample);
    }
  } else {  // planar: one plane per sample; interleave into [H, W, C]
    for (uint16_t s = 0; s < spp; ++s)
      for (uint32_t y = 0; y < h; ++y) {
        if (TIFFReadScanline(tif.get(), row.data(), y, s) < 0) throw fail("truncated or corrupt TIFF");
        for (uint32_t x = 0; x < w; ++x)
          std::memcpy(pixels.data() + ((size_t(y) * w + x) * spp + s) * sample, row.data() + size_t(x) * sample,
                      sample);
      }
  }
  if (!tiff_message.empty()) throw fail("corrupt TIFF");
  at::Tensor out = planar(pixels, h, w, spp, type);
  if (type == at::kFloat) {  // as skipgan/data/images.py: float samples must already lie in [0, 1]
    if (!at::isfinite(out).all().item<bool>()) throw DecodeError("float image contains NaN or infinity");
    const double lo = out.min().item<double>(), hi = out.max().item<double>();
    if (lo < -1e-3 || hi > 1.0 + 1e-3)
      throw DecodeError("float image values span [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "] but must lie in [0, 1]");
  }
  return out;
}

}  // namespace

bool is_image_path(const std::string& path) {
  static const char* const known[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"};
  const std::string s = suffix_of(path);
  return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return s == k; });
}

at::Tensor decode_image(const std::string& path) {
  const std::string s = suffix_of(path);
  if (s == ".png") return decode_png(path);
  if (s == ".pgm" || s == ".ppm") return decode_pnm(path);
  if (s == ".tif" || s == ".tiff") return decode_tiff(path);
  throw DecodeError("unsupported image type '" + s + "': the scanner reads PNG, PGM/PPM and TIFF");
}

}  // namespace scanner
