// Baseline x86-64 (or any architecture) copy of the CPU kernels; see isa.h.
#include "isa_prelude.h"

#define CPU_CAPABILITY DEFAULT
#include "anomaly_score_kernel.h"
#include "conv_bn_act_kernel.h"
#include "col2im_kernel.h"
#include "nearest_kernel.h"
#include "quantize_kernel.h"

namespace skipgan::cpu {

Kernels kernels_default() {
  return {&DEFAULT::epilogue_rows, &DEFAULT::col2im_rows, &DEFAULT::image_chunk, &DEFAULT::feature_chunk,
          &DEFAULT::nearest_in_row, &DEFAULT::quantize_u8, "default"};
}

}  // namespace skipgan::cpu
