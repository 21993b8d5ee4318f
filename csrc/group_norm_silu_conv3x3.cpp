// The native group_norm_silu_conv3x3 (CPU and CUDA): the fused GroupNorm+SiLU kernel of this
// extension followed by the framework's conv (oneDNN / cuDNN), bias and the adds in place.
// It is also the baseline the Triton implicit-GEMM kernel has to beat.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "checks.h"

namespace adaskip {
namespace {

at::Tensor group_norm_silu_conv3x3(const at::Tensor& x, const at::Tensor& gn_weight,
                                   const at::Tensor& gn_bias, const at::Tensor& conv_weight,
                                   const at::Tensor& conv_bias, int64_t groups, double eps,
                                   const std::optional<at::Tensor>& add,
                                   const std::optional<at::Tensor>& residual) {
  check_group_norm(x, gn_weight, gn_bias, groups);
  TORCH_CHECK_VALUE(conv_weight.dim() == 4 && conv_weight.size(1) == x.size(1) &&
                        conv_weight.size(2) == 3 && conv_weight.size(3) == 3,
                    "conv_weight must have shape (C_out, ", x.size(1), ", 3, 3), got ",
                    conv_weight.sizes());
  const int64_t batch = x.size(0), out_channels = conv_weight.size(0);
  TORCH_CHECK_VALUE(conv_bias.dim() == 1 && conv_bias.size(0) == out_channels,
                    "conv_bias must have shape (", out_channels, "), got ", conv_bias.sizes());
  if (add) {
    TORCH_CHECK_VALUE(add->dim() == 2 && add->size(0) == batch && add->size(1) == out_channels,
                      "add must have shape (", batch, ", ", out_channels, "), got ",
                      add->sizes());
  }
  if (residual) {
    TORCH_CHECK_VALUE(
        residual->sizes() == at::IntArrayRef({batch, out_channels, x.size(2), x.size(3)}),
        "residual must have shape (", batch, ", ", out_channels, ", ", x.size(2), ", ",
        x.size(3), "), got ", residual->sizes());
  }
  const auto on_x_device = [&](const at::Tensor& t) { return t.device() == x.device(); };
  TORCH_CHECK_VALUE(on_x_device(conv_weight) && on_x_device(conv_bias) &&
                        (!add || on_x_device(*add)) && (!residual || on_x_device(*residual)),
                    "conv_weight, conv_bias, add and residual must be on x's device (",
                    x.device(), ")");
  static auto norm = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("adaskip::group_norm_silu", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&, int64_t, double, bool)>();
  const at::Tensor h = norm.call(x, gn_weight, gn_bias, groups, eps, true);
  // The framework adds a conv's bias in a pass of its own; with an `add`, the bias joins it
  // (a (B, C_out) sum), so the output is read and written once for both.
  const at::Tensor weight = conv_weight.to(x.scalar_type());
  at::Tensor y;
  if (add) {
    y = at::conv2d(h, weight, /*bias=*/{}, /*stride=*/1, /*padding=*/1);
    const at::Tensor shift = add->to(at::kFloat) + conv_bias.to(at::kFloat);
    y.add_(shift.to(y.scalar_type()).view({batch, out_channels, 1, 1}));
  } else {
    y = at::conv2d(h, weight, conv_bias.to(x.scalar_type()), /*stride=*/1, /*padding=*/1);
  }
  if (residual) y.add_(*residual);
  return y.contiguous(layout_of(x));
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, CPU, m) {
  m.impl("group_norm_silu_conv3x3", &group_norm_silu_conv3x3);
}

// Only a build with the CUDA kernels these call into claims CUDA tensors (setup.py defines it).
#ifdef ADASKIP_WITH_CUDA
TORCH_LIBRARY_IMPL(adaskip, CUDA, m) {
  m.impl("group_norm_silu_conv3x3", &group_norm_silu_conv3x3);
}
#endif

}  // namespace adaskip
