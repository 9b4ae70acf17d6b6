#include "image_decode.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>

#include <png.h>
#include <tiffio.h>

namespace scanner {
namespace {

// Interleaved [H, W, C] samples -> planar [C, H, W]: the layout every caller (tensors, the Python reader) uses.
void to_planar(DecodedImage& im) {
  if (im.channels == 1) return;
  const int64_t s = sample_bytes(im.type), plane = im.height * im.width;
  std::vector<uint8_t> out(im.samples.size());
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < im.channels; ++c)
      std::memcpy(out.data() + (c * plane + p) * s, im.samples.data() + (p * im.channels + c) * s, size_t(s));
  im.samples.swap(out);
}

// ----------------------------------------------------------------------------------------------------- PNG
struct PngState {
  const uint8_t* data;
  size_t size, pos;
  std::jmp_buf jump;
  char message[256];
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg);
  std::longjmp(st->jump, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}

void png_read_fn(png_structp png, png_bytep out, size_t n) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (n > st->size - st->pos) png_error(png, "unexpected end of file");
  std::memcpy(out, st->data + st->pos, n);
  st->pos += n;
}

// Owns libpng's structs; declared before setjmp so that neither longjmp nor a throw skips its destructor.
struct PngHandles {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngHandles() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
};

DecodedImage decode_png(const uint8_t* data, size_t size, const ImageLimits& limits) {
  // Every object with a destructor lives before setjmp (C++ rules for longjmp); nothing after it has one.
  PngState st{data, size, 0, {}, ""};
  PngHandles h;
  DecodedImage im;
  std::vector<png_bytep> rows;
  h.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_error_fn, png_warning_fn);
  if (h.png) h.info = png_create_info_struct(h.png);
  if (!h.info) throw DecodeError("out of memory");
  if (setjmp(st.jump)) throw DecodeError(std::string("cannot decode PNG (truncated or corrupt): ") + st.message);
  png_set_read_fn(h.png, &st, png_read_fn);
  // libpng's own caps, before IHDR is read: sides, and what one ancillary chunk (iCCP, zTXt, ...) may inflate to.
  png_set_user_limits(h.png, png_uint_32(std::min<int64_t>(limits.max_side, PNG_UINT_31_MAX)),
                      png_uint_32(std::min<int64_t>(limits.max_side, PNG_UINT_31_MAX)));
  png_set_chunk_malloc_max(h.png, 8u << 20);
  png_set_chunk_cache_max(h.png, 1000);
  // Only IHDR, PLTE, tRNS, IDAT and IEND are read; every other chunk (text, iCCP, ...) is skipped unread. Not only
  // less surface: libpng 1.6 treats "chunk data is too large" as a benign error, a warning on read, and would
  // allocate a hostile zTXt's claimed 1.8 GB (found by decode_fuzzer; tests/data/fuzz/png_ztxt_1_8gb.png).
  png_set_keep_unknown_chunks(h.png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_read_info(h.png, h.info);
  // Before anything is allocated for the pixels: the file must be able to hold them. Deflate expands at most
  // 1032:1, so a few hundred header bytes claiming 8k x 8k are refused here, not after a gigabyte is set aside.
  const uint64_t raw = uint64_t(png_get_image_height(h.png, h.info)) * (png_get_rowbytes(h.png, h.info) + 1);
  if (raw > uint64_t(size) * 1032 + 4096)
    throw DecodeError("truncated PNG: " + std::to_string(size) + " bytes cannot hold " +
                      std::to_string(png_get_image_width(h.png, h.info)) + " x " +
                      std::to_string(png_get_image_height(h.png, h.info)) + " pixels");
  const int color = png_get_color_type(h.png, h.info);
  const int depth = png_get_bit_depth(h.png, h.info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(h.png);  // P -> RGB (transparency ignored)
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(h.png);
  // RGBA -> RGB, LA -> L; and a palette with transparency, which palette_to_rgb expands to RGBA
  if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(h.png, h.info, PNG_INFO_tRNS)) png_set_strip_alpha(h.png);
  // Pillow decodes 16-bit colour PNGs to 8 bits (keeping the high byte); grey keeps all 16 bits.
  if (depth == 16 && (color & PNG_COLOR_MASK_COLOR)) png_set_strip_16(h.png);
  if (depth == 16) png_set_swap(h.png);  // network byte order -> host (little endian)
  png_read_update_info(h.png, h.info);
  im.width = png_get_image_width(h.png, h.info);
  im.height = png_get_image_height(h.png, h.info);
  im.channels = png_get_channels(h.png, h.info);
  const int out_depth = png_get_bit_depth(h.png, h.info);
  im.type = out_depth == 16 ? SampleType::u16 : SampleType::u8;
  limits.check(im.width, im.height, im.channels, sample_bytes(im.type));  // throws before the allocation
  const size_t row_bytes = png_get_rowbytes(h.png, h.info);
  if (out_depth < 8 || row_bytes != size_t(im.width * im.channels * sample_bytes(im.type)))
    throw DecodeError("unsupported PNG layout (" + std::to_string(out_depth) + "-bit rows of " +
                      std::to_string(row_bytes) + " bytes)");
  im.samples.resize(row_bytes * size_t(im.height));
  rows.resize(size_t(im.height));
  for (int64_t y = 0; y < im.height; ++y) rows[size_t(y)] = im.samples.data() + size_t(y) * row_bytes;
  png_read_image(h.png, rows.data());
  png_read_end(h.png, nullptr);
  to_planar(im);
  return im;
}

// ------------------------------------------------------------------------------------------------ PGM / PPM
// The header (magic, width, height, maxval; '#' comments between fields) parsed by hand over the bytes: a number
// of more than 18 digits is refused before it can overflow.
struct PnmHeader {
  const uint8_t* data;
  size_t size, pos = 0;

  void skip_space_and_comments() {
    while (pos < size) {
      if (std::isspace(data[pos])) {
        ++pos;
      } else if (data[pos] == '#') {
        while (pos < size && data[pos] != '\n') ++pos;
      } else {
        break;
      }
    }
  }

  int64_t number() {
    skip_space_and_comments();
    int64_t v = 0;
    int digits = 0;
    while (pos < size && std::isdigit(data[pos])) {
      if (++digits > 18) throw DecodeError("PGM/PPM header holds a number of more than 18 digits");
      v = v * 10 + (data[pos++] - '0');
    }
    if (!digits) throw DecodeError("truncated or corrupt PGM/PPM header");
    return v;
  }
};

DecodedImage decode_pnm(const uint8_t* data, size_t size, const ImageLimits& limits) {
  PnmHeader h{data, size};
  const bool ppm = data[1] == '6';  // the caller checked "P5"/"P6"
  if (size < 3 || !std::isspace(data[2])) throw DecodeError("not a binary PGM/PPM (P5/P6) file");
  h.pos = 2;
  const int64_t w = h.number(), ht = h.number(), maxval = h.number();
  if (h.pos >= size || !std::isspace(data[h.pos])) throw DecodeError("truncated or corrupt PGM/PPM header");
  ++h.pos;  // the single whitespace byte after maxval
  if (maxval != 255 && maxval != 65535)
    throw DecodeError("PGM/PPM maxval " + std::to_string(maxval) + " is not supported (use 255 or 65535)");
  DecodedImage im;
  im.width = w;
  im.height = ht;
  im.channels = ppm ? 3 : 1;
  im.type = maxval == 255 ? SampleType::u8 : SampleType::u16;
  limits.check(w, ht, im.channels, sample_bytes(im.type));  // throws before the allocation
  const size_t need = size_t(w * ht * im.channels * sample_bytes(im.type));
#ifdef SKIPGAN_FUZZ_PLANTED_BUG
  // Deliberately wrong (docs/hostile-input.md): proves that CI's fuzz run catches an off-by-one here.
  if (size - h.pos + 1 < need) throw DecodeError("truncated PGM/PPM: fewer pixels than the header says");
#else
  if (size - h.pos < need) throw DecodeError("truncated PGM/PPM: fewer pixels than the header says");
#endif
  im.samples.resize(need);
  std::memcpy(im.samples.data(), data + h.pos, need);
  if (im.type == SampleType::u16)  // big endian in the file
    for (size_t i = 0; i + 1 < need; i += 2) std::swap(im.samples[i], im.samples[i + 1]);
  to_planar(im);
  return im;
}

// ----------------------------------------------------------------------------------------------------- TIFF
// libtiff reads through these callbacks from the bytes in memory; errors go to this handle's own message (no
// process-wide handler state: decoding runs on several threads).
struct TiffSource {
  const uint8_t* data;
  size_t size, pos;
  std::string message;
};

tmsize_t tiff_read(thandle_t h, void* buf, tmsize_t n) {
  auto* s = static_cast<TiffSource*>(h);
  if (n < 0) return -1;
  const size_t k = std::min<size_t>(size_t(n), s->pos < s->size ? s->size - s->pos : 0);
  if (k) std::memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  return tmsize_t(k);
}

tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return -1; }

toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
  auto* s = static_cast<TiffSource*>(h);
  uint64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->pos : s->size;
  if (off > UINT64_MAX - base) return toff_t(-1);
  s->pos = size_t(base + off);  // past the end is allowed, as for files: reads there return 0 bytes
  return toff_t(s->pos);
}

int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t h) { return toff_t(static_cast<TiffSource*>(h)->size); }
int tiff_map(thandle_t, void**, toff_t*) { return 0; }
void tiff_unmap(thandle_t, void*, toff_t) {}

int tiff_error(TIFF*, void* user, const char*, const char* fmt, va_list args) {
  auto* s = static_cast<TiffSource*>(user);
  if (s->message.empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, args);
    s->message = buf;
  }
  return 1;  // handled: libtiff's process-wide handler is not called
}

int tiff_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffCloser {
  void operator()(TIFF* t) const { TIFFClose(t); }
};
struct TiffOptionsFree {
  void operator()(TIFFOpenOptions* o) const { TIFFOpenOptionsFree(o); }
};

DecodedImage decode_tiff(const uint8_t* data, size_t size, const ImageLimits& limits) {
  TiffSource src{data, size, 0, {}};
  std::unique_ptr<TIFFOpenOptions, TiffOptionsFree> opts(TIFFOpenOptionsAlloc());
  if (!opts) throw DecodeError("out of memory");
  // No single allocation inside libtiff (strip tables, tag arrays) beyond the image cap.
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), tmsize_t(limits.max_bytes));
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), tiff_error, &src);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), tiff_warning, &src);
  // "rm": read, and never memory-map (the bytes are already in memory)
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFClientOpenExt("tiff", "rm", &src, tiff_read, tiff_write, tiff_seek,
                                                          tiff_close, tiff_size, tiff_map, tiff_unmap, opts.get()));
  auto fail = [&](const std::string& what) {
    return DecodeError(what + (src.message.empty() ? "" : ": " + src.message));
  };
  if (!tif) throw fail("cannot decode TIFF (truncated or corrupt)");
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
  if (photometric == PHOTOMETRIC_PALETTE) throw fail("palette TIFF is not supported (save grey or RGB)");
  DecodedImage im;
  if (format == SAMPLEFORMAT_UINT && bits == 8) {
    im.type = SampleType::u8;
  } else if (format == SAMPLEFORMAT_UINT && bits == 16) {
    im.type = SampleType::u16;
  } else if (format == SAMPLEFORMAT_IEEEFP && bits == 32) {
    im.type = SampleType::f32;
  } else {
    throw fail("unsupported TIFF samples (" + std::to_string(bits) + "-bit, format " + std::to_string(format) +
               "); save as unsigned 8/16-bit or 32-bit float in [0, 1]");
  }
  // The Python reader's rule: at most 8 samples per pixel form the channel axis.
  if (spp < 1 || spp > 8) throw fail("TIFF with " + std::to_string(spp) + " samples per pixel (1 to 8 supported)");
  im.width = w;
  im.height = h;
  im.channels = spp;
  const int64_t sample = sample_bytes(im.type);
  limits.check(im.width, im.height, im.channels, sample);  // throws before the allocation
  const bool contig = config == PLANARCONFIG_CONTIG || spp == 1;
  // Every row copy below assumes libtiff's scanline is exactly one row of samples; subsampled (YCbCr) or packed
  // layouts are not, and are refused rather than read past.
  const int64_t want = contig ? im.width * spp * sample : im.width * sample;
  const tmsize_t line = TIFFScanlineSize(tif.get());
  if (line != tmsize_t(want))
    throw fail("unsupported TIFF layout (scanline of " + std::to_string(line) + " bytes, expected " +
               std::to_string(want) + ")");
  std::vector<uint8_t> row(static_cast<size_t>(line));
  // Rows are appended as they decode (interleaved rows, or plane after plane), so memory follows the data that
  // is really there: strips may be compressed far beyond any fixed ratio, so the file size bounds nothing.
  const size_t total = size_t(im.width * im.height * spp * sample);
  im.samples.reserve(std::min(total, size * 4));
  for (uint16_t s = 0; s < (contig ? 1 : spp); ++s)
    for (uint32_t y = 0; y < h; ++y) {
      if (TIFFReadScanline(tif.get(), row.data(), y, s) < 0) throw fail("truncated or corrupt TIFF");
      im.samples.insert(im.samples.end(), row.begin(), row.end());
    }
  if (im.samples.size() != total) throw fail("corrupt TIFF");
  if (!src.message.empty()) throw fail("corrupt TIFF");
  if (contig) to_planar(im);
  if (im.type == SampleType::f32) {  // as skipgan/data/images.py: float samples must already lie in [0, 1]
    const size_t n = im.samples.size() / 4;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, im.samples.data() + 4 * i, 4);
      if (!std::isfinite(v)) throw DecodeError("float image contains NaN or infinity");
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (lo < -1e-3f || hi > 1.0f + 1e-3f)
      throw DecodeError("float image values span [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "] but must lie in [0, 1]");
  }
  return im;
}

std::string suffix_of(const std::string& path) {
  const auto dot = path.find_last_of('.');
  const auto slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string s = path.substr(dot);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool starts_with(const uint8_t* data, size_t size, const char* magic, size_t n) {
  return size >= n && std::memcmp(data, magic, n) == 0;
}

}  // namespace

DecodedImage decode_bytes(const uint8_t* data, size_t size, const ImageLimits& limits) {
  if (starts_with(data, size, "\x89PNG\r\n\x1a\n", 8)) return decode_png(data, size, limits);
  if (starts_with(data, size, "P5", 2) || starts_with(data, size, "P6", 2)) return decode_pnm(data, size, limits);
  if (starts_with(data, size, "II*\0", 4) || starts_with(data, size, "MM\0*", 4) ||
      starts_with(data, size, "II+\0", 4) || starts_with(data, size, "MM\0+", 4))  // classic and BigTIFF
    return decode_tiff(data, size, limits);
  if (starts_with(data, size, "\xff\xd8\xff", 3) || starts_with(data, size, "BM", 2))
    throw DecodeError("JPEG/BMP is not read by the scanner (PNG, PGM/PPM, TIFF); score it with `skipgan score`");
  if (starts_with(data, size, "P1", 2) || starts_with(data, size, "P2", 2) || starts_with(data, size, "P3", 2) ||
      starts_with(data, size, "P4", 2))
    throw DecodeError("not a binary PGM/PPM (P5/P6) file");
  if (size == 0) throw DecodeError("empty file (0 bytes)");
  throw DecodeError("not a PNG, PGM/PPM or TIFF file (unknown magic bytes)");
}

DecodedImage decode_file(const std::string& path, const ImageLimits& limits) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw DecodeError(std::string("cannot open: ") + std::strerror(errno));
  // Read in chunks up to the cap, whatever the file claims to be (pipes and special files have no size).
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = size_t(1) << 20;
  for (;;) {
    const size_t have = bytes.size();
    limits.check_file(int64_t(have));
    bytes.resize(have + kChunk);
    const size_t got = std::fread(bytes.data() + have, 1, kChunk, file.get());
    bytes.resize(have + got);
    if (got < kChunk) {
      if (std::ferror(file.get())) throw DecodeError(std::string("cannot read: ") + std::strerror(errno));
      break;
    }
  }
  limits.check_file(int64_t(bytes.size()));
  return decode_bytes(bytes.data(), bytes.size(), limits);
}

bool is_image_path(const std::string& path) {
  static const char* const known[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"};
  const std::string s = suffix_of(path);
  return std::any_of(std::begin(known), std::end(known), [&](const char* k) { return s == k; });
}

}  // namespace scanner
