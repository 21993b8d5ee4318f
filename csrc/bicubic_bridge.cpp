// The native bicubic_bridge (CPU and CUDA): bicubic resize and a 1x1 projection commute (the
// cubic weights sum to one, also at clamped borders), so the projection runs at whichever of the
// two resolutions is smaller, through the framework's GEMM, and the resize through this
// extension's bicubic_resize kernel.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "checks.h"

namespace adaskip {
namespace {

at::Tensor resize(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("adaskip::bicubic_resize", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, int64_t)>();
  return op.call(x, out_h, out_w);
}

at::Tensor resize_backward(const at::Tensor& grad, int64_t in_h, int64_t in_w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("adaskip::bicubic_resize_backward", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, int64_t)>();
  return op.call(grad, in_h, in_w);
}

void check_projection(const at::Tensor& x, const at::Tensor& weight) {
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == 1 &&
                        weight.size(3) == 1,
                    "proj_weight must have shape (C_out, ", x.size(1), ", 1, 1), got ",
                    weight.sizes());
}

// The 1x1 projection y = W x + b per pixel, as one BLAS GEMM (the framework's conv has more
// fixed cost at these sizes). x: (N, C_in, H, W), either layout; weight: (C_out, C_in, 1, 1).
// Returns (N, C_out, H, W) in x's layout.
at::Tensor project(const at::Tensor& x, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias) {
  const int64_t batch = x.size(0), in_channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t out_channels = weight.size(0);
  const at::Tensor matrix = weight.reshape({out_channels, in_channels});
  if (layout_of(x) == at::MemoryFormat::ChannelsLast) {
    const at::Tensor rows = x.permute({0, 2, 3, 1}).reshape({-1, in_channels});
    const at::Tensor out = bias ? at::addmm(*bias, rows, matrix.t()) : at::mm(rows, matrix.t());
    return out.view({batch, height, width, out_channels}).permute({0, 3, 1, 2});
  }
  at::Tensor out = at::matmul(matrix, x.reshape({batch, in_channels, height * width}));
  if (bias) out.add_(bias->view({1, out_channels, 1}));
  return out.view({batch, out_channels, height, width});
}

// Project at the output resolution when it is no larger than the input's.
bool project_after_resize(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  return out_h * out_w <= x.size(2) * x.size(3);
}

at::Tensor bicubic_bridge(const at::Tensor& x, int64_t out_h, int64_t out_w,
                          const at::Tensor& proj_weight, const at::Tensor& proj_bias) {
  check_resize(x, "x", out_h, out_w, "out_h and out_w");
  check_projection(x, proj_weight);
  TORCH_CHECK_VALUE(proj_bias.dim() == 1 && proj_bias.size(0) == proj_weight.size(0),
                    "proj_bias must have shape (", proj_weight.size(0), "), got ",
                    proj_bias.sizes());
  TORCH_CHECK_VALUE(proj_weight.device() == x.device() && proj_bias.device() == x.device(),
                    "proj_weight and proj_bias must be on x's device (", x.device(), ")");
  const at::Tensor weight = proj_weight.to(x.scalar_type());
  const at::Tensor bias = proj_bias.to(x.scalar_type());
  const at::Tensor y = project_after_resize(x, out_h, out_w)
                           ? project(resize(x, out_h, out_w), weight, bias)
                           : resize(project(x, weight, bias), out_h, out_w);
  return y.contiguous(layout_of(x));
}

// Gradient of a 1x1 conv's weight: sum over (n, h, w) of grad[n, o] * input[n, i] -> (O, I, 1, 1).
at::Tensor projection_weight_grad(const at::Tensor& grad, const at::Tensor& input) {
  return at::einsum("nohw,nihw->oi", {grad, input}).view({grad.size(1), input.size(1), 1, 1});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bicubic_bridge_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& proj_weight) {
  check_image(x, "x");
  check_image(grad_out, "grad_out");
  check_projection(x, proj_weight);
  TORCH_CHECK_VALUE(grad_out.size(0) == x.size(0) && grad_out.size(1) == proj_weight.size(0),
                    "grad_out must have shape (", x.size(0), ", ", proj_weight.size(0),
                    ", out_h, out_w), got ", grad_out.sizes());
  const int64_t in_h = x.size(2), in_w = x.size(3);
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  const at::Tensor weight_t = proj_weight.to(x.scalar_type()).transpose(0, 1);
  at::Tensor grad_x, grad_weight, grad_bias;
  if (project_after_resize(x, out_h, out_w)) {
    // y = W resize(x) + b
    grad_weight = projection_weight_grad(grad_out, resize(x, out_h, out_w));
    grad_bias = grad_out.sum({0, 2, 3});
    grad_x = resize_backward(project(grad_out, weight_t, std::nullopt), in_h, in_w);
  } else {
    // y = resize(W x + b)
    const at::Tensor grad_projected = resize_backward(grad_out, in_h, in_w);
    grad_weight = projection_weight_grad(grad_projected, x);
    grad_bias = grad_projected.sum({0, 2, 3});
    grad_x = project(grad_projected, weight_t, std::nullopt);
  }
  return {grad_x.contiguous(layout_of(x)), grad_weight.to(proj_weight.scalar_type()),
          grad_bias.to(proj_weight.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, CPU, m) {
  m.impl("bicubic_bridge", &bicubic_bridge);
  m.impl("bicubic_bridge_backward", &bicubic_bridge_backward);
}

// Only a build with the CUDA kernels these call into claims CUDA tensors (setup.py defines it).
#ifdef ADASKIP_WITH_CUDA
TORCH_LIBRARY_IMPL(adaskip, CUDA, m) {
  m.impl("bicubic_bridge", &bicubic_bridge);
  m.impl("bicubic_bridge_backward", &bicubic_bridge_backward);
}
#endif

}  // namespace adaskip
