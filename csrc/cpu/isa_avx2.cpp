// AVX2 + FMA copy of the CPU kernels; see isa.h and isa_prelude.h. Built with GCC on x86-64 only (the
// target pragma is GCC's); elsewhere this copy is the baseline one.
#include "isa_prelude.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)

// Benign for this file only: lambda thunks that GCC compiles outside the target (-Wpsabi, never called)
// and GCC 12's false positives on _mm512_undefined_* inside the intrinsics headers.
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
// GCC's target pragma does not define the ISA macros, and sleef.h (at::vec's tanh / exp) declares its
// wide functions only under them. Define them around that one header (declarations only).
#ifndef __AVX__
#define __AVX__ 1
#define SKIPGAN_DEFINED__AVX__
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#define SKIPGAN_DEFINED__AVX2__
#endif
#include <sleef.h>
#ifdef SKIPGAN_DEFINED__AVX__
#undef __AVX__
#undef SKIPGAN_DEFINED__AVX__
#endif
#ifdef SKIPGAN_DEFINED__AVX2__
#undef __AVX2__
#undef SKIPGAN_DEFINED__AVX2__
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "anomaly_score_kernel.h"
#include "conv_bn_act_kernel.h"
#include "col2im_kernel.h"
#include "nearest_kernel.h"
#include "quantize_kernel.h"
#pragma GCC pop_options

namespace skipgan::cpu {
Kernels kernels_avx2() {
  return {&AVX2::epilogue_rows, &AVX2::col2im_rows, &AVX2::image_chunk, &AVX2::feature_chunk,
          &AVX2::nearest_in_row, &AVX2::quantize_u8, "avx2"};
}
}  // namespace skipgan::cpu

#else

namespace skipgan::cpu {
Kernels kernels_avx2() { return kernels_default(); }
}  // namespace skipgan::cpu

#endif
