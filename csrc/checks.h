// Argument checks shared by every backend: one-line errors that name the argument. They raise
// ValueError in Python (TORCH_CHECK_VALUE), as the Triton kernels and the reference do
// (adaskip_ext/kernels/checks.py).
#pragma once
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <limits>

namespace adaskip {

inline void check_image(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 4, name, " must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()), name, " must be floating point, got ",
                    x.scalar_type());
}

inline void check_group_norm(const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& bias, int64_t groups) {
  check_image(x, "x");
  const int64_t channels = x.size(1);
  TORCH_CHECK_VALUE(groups > 0 && channels % groups == 0, "groups (", groups,
                    ") must divide the channel count (", channels, ")");
  TORCH_CHECK_VALUE(weight.dim() == 1 && weight.size(0) == channels,
                    "weight must have shape (", channels, "), got ", weight.sizes());
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == channels, "bias must have shape (",
                    channels, "), got ", bias.sizes());
  TORCH_CHECK_VALUE(weight.device() == x.device() && bias.device() == x.device(),
                    "weight and bias must be on x's device (", x.device(), ")");
}

// x (N, C, H, W) resized to (out_h, out_w): both images non-empty; out_names names the sizes.
inline void check_resize(const at::Tensor& x, const char* name, int64_t out_h, int64_t out_w,
                         const char* out_names) {
  check_image(x, name);
  TORCH_CHECK_VALUE(out_h > 0 && out_w > 0, out_names, " must be positive, got ", out_h, "x",
                    out_w);
  TORCH_CHECK_VALUE(x.size(2) > 0 && x.size(3) > 0, name, " must have a non-empty image, got ",
                    x.sizes());
}

// The memory format kernels work in: channels_last when x is laid out that way, else NCHW.
inline at::MemoryFormat layout_of(const at::Tensor& x) {
  return x.suggest_memory_format() == at::MemoryFormat::ChannelsLast
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

// Every kernel allocates its outputs here. With ADASKIP_POISON_OUTPUTS=1 in the environment
// (the test suite sets it) they start as NaN, so an element a kernel forgets to write fails the
// comparison with the reference instead of passing by luck.
inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options,
                             at::MemoryFormat format) {
  static const bool poison = [] {
    const char* value = std::getenv("ADASKIP_POISON_OUTPUTS");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }();
  at::Tensor out = at::empty(sizes, options.memory_format(format));
  if (poison) out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

}  // namespace adaskip
