// fp32 views of float / half / bfloat16 memory for the CPU kernels, built on at::vec::Vectorized.
// Compiled once per instruction set (isa_*.cpp), hence the CPU_CAPABILITY namespace: the DEFAULT, AVX2
// and AVX512 copies of these inline functions must never be merged by the linker.
#pragma once

#ifndef CPU_CAPABILITY
#error "include the CPU kernel headers only from csrc/cpu/isa_*.cpp, which define CPU_CAPABILITY"
#endif

#include <type_traits>

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../params.h"

namespace skipgan::cpu {
inline namespace CPU_CAPABILITY {

using Vec = at::vec::Vectorized<float>;

// One step covers 2 * Vec::size() elements whatever the input type: exactly one Vectorized<Half/BFloat16>
// load, and two independent fp32 chains (a, b) so that an accumulation is not one long add-latency chain.
constexpr int64_t kStep = 2 * Vec::size();

template <typename T>
inline void load2(const T* p, Vec& a, Vec& b) {
  if constexpr (std::is_same_v<T, float>) {
    a = Vec::loadu(p);
    b = Vec::loadu(p + Vec::size());
  } else {
    at::vec::load_to_float<T>(p, a, b);
  }
}

template <typename T>
inline void store2(T* p, const Vec& a, const Vec& b) {
  if constexpr (std::is_same_v<T, float>) {
    a.store(p);
    b.store(p + Vec::size());
  } else {
    at::vec::convert_from_float<T>(a, b).store(p);
  }
}

// Calls f(T{}) with the C++ type of a DType.
template <typename F>
inline void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float:
      f(float{});
      break;
    case DType::Half:
      f(c10::Half{});
      break;
    case DType::BFloat16:
      f(c10::BFloat16{});
      break;
  }
}

}  // namespace CPU_CAPABILITY
}  // namespace skipgan::cpu
