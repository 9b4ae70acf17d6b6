#include "isa.h"

#include <string>

#include <ATen/Version.h>

namespace skipgan::cpu {

const Kernels& kernels() {
  static const Kernels chosen = [] {
    const std::string cap = at::get_cpu_capability();  // "DEFAULT", "AVX2", "AVX512" (honours ATEN_CPU_CAPABILITY)
    if (cap == "AVX512") return kernels_avx512();
    if (cap == "AVX2") return kernels_avx2();
    return kernels_default();
  }();
  return chosen;
}

}  // namespace skipgan::cpu
