// Argument checks shared by every backend: one-line errors that name the argument.
#pragma once
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <limits>

namespace adaskip {

inline void check_image(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4, name, " must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), name, " must be floating point, got ",
              x.scalar_type());
}

inline void check_group_norm(const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& bias, int64_t groups) {
  check_image(x, "x");
  const int64_t channels = x.size(1);
  TORCH_CHECK(groups > 0 && channels % groups == 0, "groups (", groups,
              ") must divide the channel count (", channels, ")");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == channels, "weight must have shape (",
              channels, "), got ", weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == channels, "bias must have shape (", channels,
              "), got ", bias.sizes());
  TORCH_CHECK(weight.device() == x.device() && bias.device() == x.device(),
              "weight and bias must be on x's device (", x.device(), ")");
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
