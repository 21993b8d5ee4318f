// CUDA bicubic resize (F.interpolate bicubic, align_corners=False) and its adjoint, for NCHW and
// channels_last. One thread per output element, in the output's memory order, so a warp covers
// 32 adjacent x (NCHW) or 32 adjacent channels (channels_last).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "bicubic.h"
#include "checks.h"

namespace adaskip {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;  // the kernels grid-stride beyond this

// One resize from `in` (x, or the grad_x buffer; addressed by its strides) to `out` (the output,
// or grad_out; dense in the layout). index_t is int32_t when every offset fits (cheaper math).
template <typename index_t>
struct Resize {
  index_t C, in_h, in_w, out_h, out_w;
  index_t stride_n, stride_c, stride_h, stride_w;  // of `in`
  float scale_h, scale_w;
  bool channels_last;
};

template <typename index_t>
struct Coord {
  index_t n, c, y, x;
};

// (n, c, y, x) of element i of `out`, whose memory order is (n, c, y, x) or (n, y, x, c).
template <typename index_t>
__device__ Coord<index_t> coord_of(index_t i, const Resize<index_t>& r) {
  Coord<index_t> p;
  if (r.channels_last) {
    p.c = i % r.C;
    i /= r.C;
    p.x = i % r.out_w;
    i /= r.out_w;
    p.y = i % r.out_h;
    p.n = i / r.out_h;
  } else {
    p.x = i % r.out_w;
    i /= r.out_w;
    p.y = i % r.out_h;
    i /= r.out_h;
    p.c = i % r.C;
    p.n = i / r.C;
  }
  return p;
}

// The 4 x 4 taps of output element p: offsets (in the input's strides) and weights per axis.
template <typename index_t>
struct Taps2D {
  index_t oy[4], ox[4];
  float wy[4], wx[4];
};

template <typename index_t>
__device__ Taps2D<index_t> taps_of(const Coord<index_t>& p, const Resize<index_t>& r) {
  const CubicTaps ty = cubic_taps(r.scale_h, p.y, r.in_h);
  const CubicTaps tx = cubic_taps(r.scale_w, p.x, r.in_w);
  Taps2D<index_t> t;
  for (int k = 0; k < 4; ++k) {
    t.oy[k] = static_cast<index_t>(ty.index[k]) * r.stride_h;
    t.ox[k] = static_cast<index_t>(tx.index[k]) * r.stride_w;
    t.wy[k] = ty.weight[k];
    t.wx[k] = tx.weight[k];
  }
  return t;
}

template <typename scalar_t, typename index_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void bicubic_resize_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out,
                                      Resize<index_t> r, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const Coord<index_t> p = coord_of(static_cast<index_t>(i), r);
    const Taps2D<index_t> t = taps_of(p, r);
    const scalar_t* plane = in + p.n * r.stride_n + p.c * r.stride_c;
    // ATen's order: interpolate along x in each of the 4 tap rows, then along y.
    acc_t rows[4];
    for (int j = 0; j < 4; ++j) {
      const scalar_t* row = plane + t.oy[j];
      rows[j] = static_cast<acc_t>(row[t.ox[0]]) * t.wx[0] +
                static_cast<acc_t>(row[t.ox[1]]) * t.wx[1] +
                static_cast<acc_t>(row[t.ox[2]]) * t.wx[2] +
                static_cast<acc_t>(row[t.ox[3]]) * t.wx[3];
    }
    out[i] = static_cast<scalar_t>(rows[0] * t.wy[0] + rows[1] * t.wy[1] + rows[2] * t.wy[2] +
                                   rows[3] * t.wy[3]);
  }
}

// The adjoint: scatter grad_out[n, c, y, x] * wy_j * wx_i into the 16 taps. Clamped taps repeat
// indices (and neighbouring outputs share taps), hence atomics into an acc_t buffer.
template <typename scalar_t, typename index_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void bicubic_resize_backward_kernel(const scalar_t* __restrict__ grad_out,
                                               acc_t* __restrict__ grad_in, Resize<index_t> r,
                                               int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kThreads) {
    const Coord<index_t> p = coord_of(static_cast<index_t>(i), r);
    const Taps2D<index_t> t = taps_of(p, r);
    acc_t* plane = grad_in + p.n * r.stride_n + p.c * r.stride_c;
    const acc_t g = static_cast<acc_t>(grad_out[i]);
    for (int j = 0; j < 4; ++j) {
      const acc_t gy = g * t.wy[j];  // ATen's order: (g * wy) * wx
      for (int k = 0; k < 4; ++k) atomicAdd(plane + t.oy[j] + t.ox[k], gy * t.wx[k]);
    }
  }
}

template <typename index_t>
Resize<index_t> resize_of(const at::Tensor& in, const at::Tensor& out, at::MemoryFormat layout) {
  Resize<index_t> r;
  r.C = static_cast<index_t>(in.size(1));
  r.in_h = static_cast<index_t>(in.size(2));
  r.in_w = static_cast<index_t>(in.size(3));
  r.out_h = static_cast<index_t>(out.size(2));
  r.out_w = static_cast<index_t>(out.size(3));
  r.stride_n = static_cast<index_t>(in.stride(0));
  r.stride_c = static_cast<index_t>(in.stride(1));
  r.stride_h = static_cast<index_t>(in.stride(2));
  r.stride_w = static_cast<index_t>(in.stride(3));
  r.scale_h = bicubic_scale(in.size(2), out.size(2));
  r.scale_w = bicubic_scale(in.size(3), out.size(3));
  r.channels_last = layout == at::MemoryFormat::ChannelsLast;
  return r;
}

// Calls fn(index_t{}): int32_t when both dense tensors' offsets fit, else int64_t.
template <typename Fn>
void with_index_type(const at::Tensor& a, const at::Tensor& b, const Fn& fn) {
  if (std::max(a.numel(), b.numel()) <= std::numeric_limits<int32_t>::max()) {
    fn(int32_t{});
  } else {
    fn(int64_t{});
  }
}

unsigned blocks_for(int64_t total) {
  return static_cast<unsigned>(std::min((total + kThreads - 1) / kThreads, kMaxBlocks));
}

at::Tensor bicubic_resize_cuda(const at::Tensor& x_in, int64_t out_h, int64_t out_w) {
  check_resize(x_in, "x", out_h, out_w, "out_h and out_w");
  TORCH_CHECK_VALUE(x_in.is_cuda(), "x must be a CUDA tensor, got ", x_in.device());
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::MemoryFormat layout = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(layout);
  at::Tensor out = new_output({x.size(0), x.size(1), out_h, out_w}, x.options(), layout);
  if (out.numel() == 0) return out;
  // Same size is a copy, as in ATen (the weights would be exactly (0, 1, 0, 0), but 0 * inf = nan).
  if (x.size(2) == out_h && x.size(3) == out_w) return out.copy_(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bicubic_resize_cuda", [&] {
    with_index_type(x, out, [&](auto tag) {
      using index_t = decltype(tag);
      bicubic_resize_kernel<scalar_t, index_t>
          <<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
              resize_of<index_t>(x, out, layout), out.numel());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor bicubic_resize_backward_cuda(const at::Tensor& grad_out_in, int64_t in_h,
                                        int64_t in_w) {
  check_resize(grad_out_in, "grad_out", in_h, in_w, "in_h and in_w");
  TORCH_CHECK_VALUE(grad_out_in.is_cuda(), "grad_out must be a CUDA tensor, got ",
                    grad_out_in.device());
  const c10::cuda::CUDAGuard device_guard(grad_out_in.device());
  const at::MemoryFormat layout = layout_of(grad_out_in);
  const at::Tensor grad_out = grad_out_in.contiguous(layout);
  const std::vector<int64_t> in_sizes{grad_out.size(0), grad_out.size(1), in_h, in_w};
  const auto options = grad_out.options().memory_format(layout);
  // at::zeros drops a memory format given in its options: allocate with empty, then zero.
  if (grad_out.numel() == 0) return at::empty(in_sizes, options).zero_();
  // The forward copied: its adjoint is the identity.
  if (grad_out.size(2) == in_h && grad_out.size(3) == in_w) {
    return at::empty(in_sizes, options).copy_(grad_out);
  }
  at::Tensor grad_in =
      at::empty(in_sizes, options.dtype(at::toOpMathType(grad_out.scalar_type()))).zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "bicubic_resize_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_index_type(grad_in, grad_out, [&](auto tag) {
      using index_t = decltype(tag);
      bicubic_resize_backward_kernel<scalar_t, index_t>
          <<<blocks_for(grad_out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              grad_out.const_data_ptr<scalar_t>(), grad_in.mutable_data_ptr<acc_t>(),
              resize_of<index_t>(grad_in, grad_out, layout), grad_out.numel());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  // A no-op for float32; .to keeps grad_in's (dense) memory format.
  return grad_in.to(grad_out.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, CUDA, m) {
  m.impl("bicubic_resize", &bicubic_resize_cuda);
  m.impl("bicubic_resize_backward", &bicubic_resize_backward_cuda);
}

}  // namespace adaskip
