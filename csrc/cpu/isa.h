// The CPU kernels are compiled three times (isa_default.cpp, isa_avx2.cpp, isa_avx512.cpp) and the best
// copy the CPU supports is picked at run time, like PyTorch's own CPU kernels: one wheel that is fast on
// AVX-512 machines and still runs on plain x86-64. The choice follows at::get_cpu_capability(), so
// ATEN_CPU_CAPABILITY=default|avx2|avx512 overrides it (tests use that to cover every copy).
#pragma once

#include <cstdint>

#include "../params.h"

namespace skipgan::cpu {

struct Kernels {
  // conv_bn_act epilogue over rows [begin, end): (n, c) planes when y is NCHW, pixels when channels_last.
  void (*epilogue_rows)(const EpilogueParams& p, int64_t begin, int64_t end);
  // col2im_bias_act fold + epilogue over output rows [begin, end) (r = n * Ho + oy). `scratch` holds at least
  // col2im_scratch_floats(q) floats (one per task, not per row).
  void (*col2im_rows)(const Col2imParams& q, int64_t begin, int64_t end, float* scratch);
  // anomaly_score partial sums of one fixed-size chunk. `scratch` holds at least max(kPixChunk, C) floats,
  // plus kPixChunk more (the per-pixel sums) when p.margin > 0.
  float (*image_chunk)(const ScoreParams& p, int64_t b, int64_t p0, int64_t np, float* scratch,
                       int64_t scratch_len);
  float (*feature_chunk)(const ScoreParams& p, int64_t b, int64_t e0, int64_t ne);
  // nearest_distances: the exact squared distance to the nearest memory row of one query, from its row of GEMM
  // values (nearest_kernel.h).
  float (*nearest_in_row)(const float* g, int64_t n, float tau, const float* q, const float* mem, int64_t c);
  // quantize_u8_out over elements [begin, end) of x (dtype t) into out (quantize_kernel.h).
  void (*quantize_u8)(const void* x, DType t, int64_t begin, int64_t end, float scale, int32_t zero, uint8_t* out);
  const char* isa;
};

// Fixed chunk sizes of anomaly_score (independent of the thread count: this is what makes it deterministic).
constexpr int64_t kPixChunk = 4096;    // image pixels per chunk, all channels (48 KiB of fp32 RGB per input)
constexpr int64_t kFeatChunk = 16384;  // feature elements per chunk

// Scratch of col2im_rows: rows of Wo * C floats (z and the activations; probe mode adds the weights and the
// weighted sum).
inline int64_t col2im_scratch_floats(const Col2imParams& q) { return (q.probe_weight ? 4 : 2) * q.e.W * q.e.C; }

Kernels kernels_default();
Kernels kernels_avx2();    // == kernels_default() where the compiler/arch cannot build it
Kernels kernels_avx512();  // idem

// The copy selected for this CPU (decided once).
const Kernels& kernels();

}  // namespace skipgan::cpu
