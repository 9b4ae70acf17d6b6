// The score kernel's per-thread sums (csrc/cuda/score_sums.h) run on the host for all 512 threads of a block,
// with the samples placed at every offset inside 16 bytes: the partial sums, the block's total (the kernel's
// shuffle tree, replayed) and the error map must be bit for bit the same wherever a sample lies, as a sample's
// place in the batch decides its alignment. Built and run by tests/test_ops_anomaly_score.py (no GPU needed).
// A control replays the feature order before the fix (a scalar head up to the first aligned element), which
// gave another total for some offsets: the data is sensitive to the defect.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace skipgan::cuda {
struct BF16 {  // bfloat16 bits, as __nv_bfloat16 holds them
  uint16_t bits;
};
inline float to_float(float v) { return v; }
inline float to_float(BF16 v) {
  const uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace skipgan::cuda

#include "cuda/score_sums.h"

using namespace skipgan;
using namespace skipgan::cuda;

namespace {

template <typename T>
T make(float v);
template <>
float make<float>(float v) { return v; }
template <>
BF16 make<BF16>(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return BF16{uint16_t(u >> 16)};
}

float value(uint32_t i, uint32_t seed) {  // deterministic values of mixed magnitude, so that order matters
  uint32_t h = (i + 1) * 2654435761u ^ seed * 40503u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  return float(h % 100003u) / 1000.f * ((h >> 20) % 7 == 0 ? 1000.f : 1.f);
}

// The kernel's block reduction: a shuffle-down tree in each warp (a lane beyond the warp reads its own value),
// then warp 0 reduces the 16 warp results the same way.
float warp_tree(float* v) {
  for (int o = 16; o > 0; o >>= 1) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = v[l] + (l + o < 32 ? v[l + o] : v[l]);
    std::memcpy(v, next, sizeof(next));
  }
  return v[0];
}

float block_total(const std::vector<float>& part) {
  float warps[32] = {};
  for (int w = 0; w < kScoreThreads / 32; ++w) {
    float v[32];
    std::memcpy(v, &part[w * 32], sizeof(v));
    warps[w] = warp_tree(v);
  }
  return warp_tree(warps);
}

template <typename T>
float old_feature_part(const T* a, const T* b, int64_t n, int tid) {  // the order before the fix (control)
  constexpr int V = Pack<T>::kN;
  const uintptr_t ma = reinterpret_cast<uintptr_t>(a) & 15, mb = reinterpret_cast<uintptr_t>(b) & 15;
  float s = 0.f;
  int64_t done = 0;
  if (ma == mb && ma % sizeof(T) == 0) {
    const int64_t head = std::min<int64_t>(n, ma ? (16 - ma) / sizeof(T) : 0);
    for (int64_t i = tid; i < head; i += kScoreThreads) s += sqdiff(a[i], b[i]);
    const int64_t groups = (n - head) / V;
    for (int64_t g = tid; g < groups; g += kScoreThreads)
      for (int k = 0; k < V; ++k) s += sqdiff(a[head + g * V + k], b[head + g * V + k]);
    done = head + groups * V;
  }
  for (int64_t i = done + tid; i < n; i += kScoreThreads) s += sqdiff(a[i], b[i]);
  return s;
}

struct Result {
  std::vector<float> part, map;
  float total = 0.f;
  bool operator==(const Result& o) const {
    return std::memcmp(part.data(), o.part.data(), part.size() * 4) == 0 && map.size() == o.map.size() &&
           std::memcmp(map.data(), o.map.data(), map.size() * 4) == 0 &&
           std::memcmp(&total, &o.total, 4) == 0;
  }
};

// A buffer of n values of T starting `offset` elements past a 64-byte boundary.
template <typename T>
struct Placed {
  std::vector<unsigned char> raw;
  T* p;
  Placed(int64_t n, int offset, uint32_t seed) : raw((n + 64) * sizeof(T) + 64) {
    uintptr_t base = (reinterpret_cast<uintptr_t>(raw.data()) + 63) & ~uintptr_t(63);
    p = reinterpret_cast<T*>(base) + offset;
    for (int64_t i = 0; i < n; ++i) p[i] = make<T>(value(uint32_t(i), seed));
  }
};

template <typename T, typename F>
Result run_threads(F&& part_of_thread, std::vector<float> map = {}) {
  Result r;
  r.part.resize(kScoreThreads);
  for (int t = 0; t < kScoreThreads; ++t) r.part[t] = part_of_thread(t);
  r.total = block_total(r.part);
  r.map = std::move(map);
  return r;
}

template <typename T>
int check(const char* name) {
  constexpr int V = Pack<T>::kN;
  int failures = 0;
  const int64_t nf = 5003;  // > 512 groups of V: threads wrap around; odd: a tail
  Result feat0, img0;
  bool control_differs = false;
  for (int oa = 0; oa < V; ++oa) {
    for (int ob = 0; ob < V; ++ob) {
      Placed<T> a(nf, oa, 1), b(nf, ob, 2);
      const Result r = run_threads<T>([&](int t) { return feature_part(a.p, b.p, nf, t); });
      if (oa == 0 && ob == 0) feat0 = r;
      if (!(r == feat0)) {
        std::printf("FAIL %s feature part: offsets (%d, %d) elements give another sum than (0, 0)\n", name, oa, ob);
        ++failures;
      }
      const Result old = run_threads<T>([&](int t) { return old_feature_part(a.p, b.p, nf, t); });
      if (std::memcmp(&old.total, &feat0.total, 4) != 0) control_differs = true;
    }
  }
  // planar image part: 3 channels of 72 x 72 pixels (npix % V == 0: 128-bit loads when both bases are aligned)
  ScoreParams p;
  p.C = 3, p.H = 72, p.W = 72, p.npix = 72 * 72, p.planar = true;
  const int64_t nx = p.C * p.npix;
  for (int ox = 0; ox < V; ++ox) {
    for (int oh : {0, 1, V - 1}) {
      Placed<T> x(nx, ox, 3), xh(nx, oh, 4);
      std::vector<float> map(p.npix);
      Result r = run_threads<T>([&](int t) { return image_part(p, x.p, xh.p, map.data(), t); });
      r.map = map;
      if (ox == 0 && oh == 0) img0 = r;
      if (!(r == img0)) {
        std::printf("FAIL %s image part: offsets (%d, %d) elements give another sum or map than (0, 0)\n", name, ox,
                    oh);
        ++failures;
      }
    }
  }
  if (!control_differs) {
    std::printf("FAIL %s control: the order before the fix gave the same totals; the data cannot see the defect\n",
                name);
    ++failures;
  }
  std::printf("%s: feature total %.9g, image total %.9g, %d failure(s)\n", name, feat0.total, img0.total, failures);
  return failures;
}

}  // namespace

int main() {
  const int failures = check<float>("fp32") + check<BF16>("bf16");
  std::printf(failures ? "FAILED\n" : "OK\n");
  return failures ? 1 : 0;
}
