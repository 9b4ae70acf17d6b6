// CPU registration of skipgan::bias_act_out: the conv_bn_act epilogue pass (epilogue.h) on a given y.
#include <torch/library.h>

#include "../bias_act.h"
#include "epilogue.h"

namespace skipgan::cpu {
namespace {

void bias_act_out_cpu(const at::Tensor& y, const std::optional<at::Tensor>& scale,
                      const std::optional<at::Tensor>& shift, int64_t act, double slope, const at::Tensor& out,
                      int64_t act2, const std::optional<at::Tensor>& out2) {
  std::vector<at::Tensor> keep_alive;
  const EpilogueParams p =
      bias_act_prepare(y, scale, shift, act, slope, out, act2, out2, c10::DeviceType::CPU, keep_alive);
  run_epilogue(p);
}

}  // namespace
}  // namespace skipgan::cpu

TORCH_LIBRARY_IMPL(skipgan, CPU, m) {
  m.impl("bias_act_out", &skipgan::cpu::bias_act_out_cpu);
}
