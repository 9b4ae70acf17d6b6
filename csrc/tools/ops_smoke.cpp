// C++-only smoke test of libskipgan_ops (CMake option SKIPGAN_BUILD_TESTS, run by ctest): a program without
// Python links the library and calls the ops through the dispatcher, the way the scanner will.
#include <iostream>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

int main() {
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto score = dispatcher.findSchemaOrThrow("skipgan::anomaly_score", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           double, int64_t)>();
  const auto conv = dispatcher.findSchemaOrThrow("skipgan::conv_bn_act_out", "")
                        .typed<void(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                    const std::optional<at::Tensor>&, at::IntArrayRef, at::IntArrayRef, bool, int64_t,
                                    double, const at::Tensor&, int64_t, const std::optional<at::Tensor>&, bool)>();

  const at::Tensor x = at::rand({2, 3, 8, 8}), x_hat = at::rand({2, 3, 8, 8});
  const at::Tensor f = at::randn({2, 10}), f_hat = at::randn({2, 10});
  const at::Tensor s = score.call(x, x_hat, f, f_hat, 0.9, /*margin*/ 0);
  const at::Tensor s_ref = 0.9 * (x - x_hat).pow(2).mean({1, 2, 3}) + 0.1 * (f - f_hat).pow(2).mean({1});

  const at::Tensor w = at::randn({4, 3, 4, 4}) / 7, scale = at::rand({4}) + 0.5, shift = at::randn({4});
  at::Tensor buf = at::zeros({2, 8, 4, 4});
  const at::Tensor out = at::empty({2, 4, 4, 4});
  conv.call(x, w, scale, shift, {2, 2}, {1, 1}, false, /*leaky_relu*/ 2, 0.2, out, /*relu*/ 1, buf.narrow(1, 4, 4),
            /*tf32*/ false);
  const at::Tensor y = at::conv2d(x, w, {}, 2, 1) * scale.view({1, -1, 1, 1}) + shift.view({1, -1, 1, 1});

  const bool ok = at::allclose(s, s_ref, 1e-5, 1e-6) && at::allclose(out, at::leaky_relu(y, 0.2), 1e-4, 1e-5) &&
                  at::allclose(buf.narrow(1, 4, 4), at::relu(y), 1e-4, 1e-5) &&
                  buf.narrow(1, 0, 4).eq(0).all().item<bool>();
  std::cout << (ok ? "ok" : "MISMATCH") << std::endl;
  return ok ? 0 : 1;
}
