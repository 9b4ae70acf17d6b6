// CPU partial sums of skipgan::anomaly_score, per instruction set (see isa.h). The caller
// (anomaly_score.cpp) cuts every sample into fixed-size chunks and adds the partials in chunk order, so
// a chunk's partial must depend only on its data: fixed summation order, no thread-dependent state.
#pragma once

#include <algorithm>

#include "isa.h"
#include "vec_io.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {
namespace score_detail {

inline float hsum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& u, Vec& w) { return u + w; }, v);
}

// out[i] = (a[i] - b[i])^2 for i < n.
template <typename T>
inline void sqdiff_to(const T* a, const T* b, int64_t n, float* out) {
  int64_t i = 0;
  Vec a0, a1, b0, b1;
  for (; i + kStep <= n; i += kStep) {
    load2(a + i, a0, a1);
    load2(b + i, b0, b1);
    const Vec d0 = a0 - b0, d1 = a1 - b1;
    (d0 * d0).store(out + i);
    (d1 * d1).store(out + i + Vec::size());
  }
  for (; i < n; ++i) {
    const float d = static_cast<float>(a[i]) - static_cast<float>(b[i]);
    out[i] = d * d;
  }
}

// Sum of buf[0..n): two vector chains, then their lanes, then the scalar tail.
inline float sum_buf(const float* buf, int64_t n) {
  Vec s0(0.f), s1(0.f);
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    s0 = s0 + Vec::loadu(buf + i);
    s1 = s1 + Vec::loadu(buf + i + Vec::size());
  }
  float s = hsum(s0 + s1);
  for (; i < n; ++i) s += buf[i];
  return s;
}

// Sum of (a - b)^2 over a flat span, no scratch.
template <typename T>
inline float sqdiff_sum(const T* a, const T* b, int64_t n) {
  Vec s0(0.f), s1(0.f), a0, a1, b0, b1;
  int64_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    load2(a + i, a0, a1);
    load2(b + i, b0, b1);
    const Vec d0 = a0 - b0, d1 = a1 - b1;
    s0 = at::vec::fmadd(d0, d0, s0);
    s1 = at::vec::fmadd(d1, d1, s1);
  }
  float s = hsum(s0 + s1);
  for (; i < n; ++i) {
    const float d = static_cast<float>(a[i]) - static_cast<float>(b[i]);
    s += d * d;
  }
  return s;
}

// NCHW: the squared differences of kStep pixels starting at pixel `pix`, summed over the channels in channel
// order (one FMA chain per pixel lane, in registers): the per-pixel sums of every planar path, so the paths with
// and without a border margin add exactly the same numbers.
template <typename T>
inline void planar_pixel_sums(const T* x, const T* xh, int64_t C, int64_t npix, int64_t pix, Vec& s0, Vec& s1) {
  Vec a0, a1, b0, b1;
  s0 = Vec(0.f);
  s1 = Vec(0.f);
  for (int64_t c = 0; c < C; ++c) {
    load2(x + c * npix + pix, a0, a1);
    load2(xh + c * npix + pix, b0, b1);
    const Vec d0 = a0 - b0, d1 = a1 - b1;
    s0 = at::vec::fmadd(d0, d0, s0);
    s1 = at::vec::fmadd(d1, d1, s1);
  }
}

// The same for one pixel (the tail of a chunk), in scalar code.
template <typename T>
inline float planar_pixel_sum(const T* x, const T* xh, int64_t C, int64_t npix, int64_t pix) {
  float acc = 0.f;
  for (int64_t c = 0; c < C; ++c) {
    const float d = static_cast<float>(x[c * npix + pix]) - static_cast<float>(xh[c * npix + pix]);
    acc += d * d;
  }
  return acc;
}

// Image chunk with a border (p.margin > 0): pixels [p0, p0 + np) of one sample (x, xh: its first element).
// The per-pixel channel sums go to scratch[0, np) (and, as means, to the map, border included); the chunk's
// partial is the sum of the interior ones, row segment by row segment in pixel order. The pixel sums are
// formed as on the margin-free paths below (same chains, same channel order). scratch holds kPixChunk
// floats for the pixel sums, then at least max(kPixChunk, C) for the NHWC squared differences.
template <typename T>
float image_chunk_margin(const ScoreParams& p, const T* x, const T* xh, int64_t p0, int64_t np, float* map,
                         float* scratch, int64_t scratch_len) {
  const int64_t C = p.C;
  const float inv_c = 1.f / static_cast<float>(C);
  float* sums = scratch;
  if (p.planar) {
    const Vec vinv(inv_c);
    int64_t i = 0;
    for (; i + kStep <= np; i += kStep) {
      Vec s0, s1;
      planar_pixel_sums(x, xh, C, p.npix, p0 + i, s0, s1);
      s0.store(sums + i);
      s1.store(sums + i + Vec::size());
      if (map) {
        (s0 * vinv).store(map + i);
        (s1 * vinv).store(map + i + Vec::size());
      }
    }
    for (; i < np; ++i) {
      const float acc = planar_pixel_sum(x, xh, C, p.npix, p0 + i);
      sums[i] = acc;
      if (map) map[i] = acc * inv_c;
    }
  } else {
    float* block = scratch + kPixChunk;
    const int64_t pix_per_block = std::max<int64_t>(1, (scratch_len - kPixChunk) / C);
    const T* xs = x + p0 * C;
    const T* xhs = xh + p0 * C;
    for (int64_t q = 0; q < np; q += pix_per_block) {
      const int64_t nq = std::min(pix_per_block, np - q);
      sqdiff_to(xs + q * C, xhs + q * C, nq * C, block);
      for (int64_t i = 0; i < nq; ++i) {
        float s = 0.f;
        for (int64_t c = 0; c < C; ++c) s += block[i * C + c];
        sums[q + i] = s;
        if (map) map[q + i] = s * inv_c;
      }
    }
  }
  // Interior rows h in [m, H - m) that meet the chunk; in each, pixels w in [m, W - m) inside the chunk.
  const int64_t m = p.margin, W = p.W;
  const int64_t h_begin = std::max(p0 / W, m), h_end = std::min((p0 + np - 1) / W + 1, p.H - m);
  float total = 0.f;
  for (int64_t h = h_begin; h < h_end; ++h) {
    const int64_t lo = std::max(h * W + m, p0), hi = std::min(h * W + W - m, p0 + np);
    if (lo < hi) total += sum_buf(sums + (lo - p0), hi - lo);
  }
  return total;
}

// Image chunk: pixels [p0, p0 + np) of sample b, all channels. Returns the sum of (x - x_hat)^2 (over the
// interior pixels when p.margin > 0) and writes the per-pixel channel mean into the error map when there is
// one. The same code runs with or without a map, so the scores do not depend on whether a map was requested.
template <typename T>
float image_chunk(const ScoreParams& p, int64_t b, int64_t p0, int64_t np, float* scratch, int64_t scratch_len) {
  const T* x = static_cast<const T*>(p.x) + b * p.x_bstride;
  const T* xh = static_cast<const T*>(p.x_hat) + b * p.x_hat_bstride;
  const int64_t C = p.C;
  float* map = p.error_map ? p.error_map + b * p.npix + p0 : nullptr;
  if (p.margin > 0) return image_chunk_margin(p, x, xh, p0, np, map, scratch, scratch_len);
  // No border: the per-pixel sums go straight into the total, no scratch round trip.
  const float inv_c = 1.f / static_cast<float>(C);
  if (p.planar) {
    // NCHW: for each vector of pixels, the channels are accumulated in registers (one FMA chain per pixel
    // lane, channels in order), giving the per-pixel sums directly; those feed the map and the total.
    const Vec vinv(inv_c);
    Vec t0(0.f), t1(0.f);
    int64_t i = 0;
    for (; i + kStep <= np; i += kStep) {
      Vec s0, s1;
      planar_pixel_sums(x, xh, C, p.npix, p0 + i, s0, s1);
      if (map) {
        (s0 * vinv).store(map + i);
        (s1 * vinv).store(map + i + Vec::size());
      }
      t0 = t0 + s0;
      t1 = t1 + s1;
    }
    float total = hsum(t0 + t1);
    for (; i < np; ++i) {
      const float acc = planar_pixel_sum(x, xh, C, p.npix, p0 + i);
      if (map) map[i] = acc * inv_c;
      total += acc;
    }
    return total;
  }
  // NHWC: the chunk is one contiguous span of np * C elements, taken in blocks of whole pixels: squared
  // differences into scratch (vectorised), the block total from there, and the per-pixel sums only when a
  // map is wanted. Block sizes depend on C and scratch_len only (both fixed), so the order is fixed.
  const T* xs = x + p0 * C;
  const T* xhs = xh + p0 * C;
  const int64_t pix_per_block = std::max<int64_t>(1, scratch_len / C);
  float total = 0.f;
  for (int64_t q = 0; q < np; q += pix_per_block) {
    const int64_t nq = std::min(pix_per_block, np - q);
    sqdiff_to(xs + q * C, xhs + q * C, nq * C, scratch);
    total += sum_buf(scratch, nq * C);
    if (map) {
      for (int64_t i = 0; i < nq; ++i) {
        float s = 0.f;
        for (int64_t c = 0; c < C; ++c) s += scratch[i * C + c];
        map[q + i] = s * inv_c;
      }
    }
  }
  return total;
}

template <typename T>
float feature_chunk(const ScoreParams& p, int64_t b, int64_t e0, int64_t ne) {
  const T* f = static_cast<const T*>(p.f) + b * p.f_bstride + e0;
  const T* fh = static_cast<const T*>(p.f_hat) + b * p.f_hat_bstride + e0;
  return sqdiff_sum(f, fh, ne);
}

}  // namespace score_detail

inline float image_chunk(const ScoreParams& p, int64_t b, int64_t p0, int64_t np, float* scratch,
                         int64_t scratch_len) {
  float s = 0.f;
  dispatch_dtype(p.x_dtype, [&](auto tag) {
    s = score_detail::image_chunk<decltype(tag)>(p, b, p0, np, scratch, scratch_len);
  });
  return s;
}

inline float feature_chunk(const ScoreParams& p, int64_t b, int64_t e0, int64_t ne) {
  float s = 0.f;
  dispatch_dtype(p.f_dtype, [&](auto tag) { s = score_detail::feature_chunk<decltype(tag)>(p, b, e0, ne); });
  return s;
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
