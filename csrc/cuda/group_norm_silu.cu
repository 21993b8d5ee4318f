// CUDA GroupNorm (+ SiLU) forward and backward for NCHW and channels_last inputs.
// Forward: one block per (n, group) holding the group in shared memory when it fits (one read of
// x); otherwise, and for the backward, the passes below.
// Statistics: one block per (n, group), Welford in the accumulation type. Per-element passes:
// blocks of (image, channel tile) x pixel chunks, so each thread keeps one channel's constants and
// a warp reads contiguous memory in both layouts (32 pixels of a plane, or 32 channels of a pixel).
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
#include <tuple>

#include "checks.h"

namespace adaskip {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;
// Groups up to this size take the one-pass kernel. The U-Net's largest is 12 channels x 32x32 =
// 48 KiB in fp32 (the 384-channel concatenation of the up path), which with the kernel's static
// shared memory is over the 48 KiB a block gets without opting in; 64 KiB still lets 3 blocks
// share a Hopper SM (228 KiB).
constexpr int64_t kOnePassSharedBytes = 64 * 1024;
constexpr int64_t kDefaultSharedBytes = 48 * 1024;

// Where x[n, c, hw] lives in a dense NCHW or channels_last tensor, and how the per-channel
// kernels tile it: a block covers `width` consecutive channels (32 in channels_last, 1 in NCHW).
struct Geometry {
  int64_t C, HW, groups, group_channels;
  int64_t c_stride, hw_stride;  // offset = n * C * HW + c * c_stride + hw * hw_stride
  int64_t width, tiles;         // tiles = ceil(C / width) blocks per image
  bool channels_last;
};

template <typename acc_t>
struct Welford {
  acc_t mean, m2, count;
};

// Chan et al.'s merge of two partial (mean, M2, count) states.
template <typename acc_t>
__device__ Welford<acc_t> combine(const Welford<acc_t>& a, const Welford<acc_t>& b) {
  const acc_t count = a.count + b.count;
  if (count == acc_t(0)) return a;
  const acc_t delta = b.mean - a.mean;
  const acc_t frac_b = b.count / count;
  return {a.mean + delta * frac_b, a.m2 + b.m2 + delta * delta * a.count * frac_b, count};
}

template <typename acc_t>
struct Sums {
  acc_t dz, dz_xhat;
};

template <typename acc_t>
__device__ Sums<acc_t> combine(const Sums<acc_t>& a, const Sums<acc_t>& b) {
  return {a.dz + b.dz, a.dz_xhat + b.dz_xhat};
}

// Tree reduction in shared memory over the threads sharing threadIdx.x % width (width a power of
// two <= kThreads); thread t < width gets its lane's total. Every thread of the block must call it.
template <typename T>
__device__ T block_reduce(T value, int64_t width) {
  __shared__ T buffer[kThreads];
  const int tid = threadIdx.x;
  buffer[tid] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride >= width; stride >>= 1) {
    if (tid < stride) buffer[tid] = combine(buffer[tid], buffer[tid + stride]);
    __syncthreads();
  }
  return buffer[tid];
}

// The channel a thread of a per-channel kernel handles, and its pixel loop.
struct Slot {
  int64_t n, c, stat;   // image, channel, index of its (n, group) statistics
  int64_t offset;       // element (n, c, hw = 0)
  int64_t hw, hw_step;  // first pixel and grid stride
};

__device__ Slot slot_of(const Geometry& g) {
  const int64_t rows = kThreads / g.width;  // pixels a block covers per step
  Slot s;
  s.n = blockIdx.x / g.tiles;
  s.c = (blockIdx.x % g.tiles) * g.width + threadIdx.x % g.width;
  s.stat = s.n * g.groups + s.c / g.group_channels;
  s.offset = s.n * g.C * g.HW + s.c * g.c_stride;
  s.hw = blockIdx.y * rows + threadIdx.x / g.width;
  s.hw_step = gridDim.y * rows;
  return s;
}

// The affine of channel c: z = a * (x - mean) + beta, a = rstd * gamma. Centring first keeps
// precision when |mean| >> std (PyTorch's a * x + (beta - a * mean) cancels there).
template <typename acc_t>
struct Affine {
  acc_t mean, rstd, gamma, a, beta;
};

template <typename acc_t, typename param_t>
__device__ Affine<acc_t> affine_of(const Slot& s, const param_t* weight, const param_t* bias,
                                   const acc_t* mean, const acc_t* rstd) {
  Affine<acc_t> p;
  p.mean = mean[s.stat];
  p.rstd = rstd[s.stat];
  p.gamma = static_cast<acc_t>(weight[s.c]);
  p.a = p.rstd * p.gamma;
  p.beta = static_cast<acc_t>(bias[s.c]);
  return p;
}

template <typename acc_t>
__device__ acc_t silu_of(acc_t z) {
  return z / (acc_t(1) + std::exp(-z));
}

// dL/dz from dL/dy: silu'(z) = s * (1 + z * (1 - s)), s = sigmoid(z).
template <typename acc_t>
__device__ acc_t dz_of(acc_t grad, acc_t z, bool silu) {
  if (!silu) return grad;
  const acc_t s = acc_t(1) / (acc_t(1) + std::exp(-z));
  return grad * s * (acc_t(1) + z * (acc_t(1) - s));
}

// One block per (n, group): Welford over its Cg * HW values, then mean and rstd. The group is
// `rows` runs of `cols` contiguous values: one run of Cg * HW in NCHW, HW runs of Cg channels
// (C apart) in channels_last; hw_stride is the run stride in both.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void group_stats_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ mean,
                                   acc_t* __restrict__ rstd, Geometry g, acc_t eps) {
  const int64_t n = blockIdx.x / g.groups;
  const int64_t c0 = (blockIdx.x % g.groups) * g.group_channels;
  const int64_t rows = g.channels_last ? g.HW : g.group_channels * g.HW;
  const int64_t cols = g.channels_last ? g.group_channels : 1;
  const scalar_t* group = x + n * g.C * g.HW + c0 * g.c_stride;
  Welford<acc_t> w{acc_t(0), acc_t(0), acc_t(0)};
  for (int64_t r = threadIdx.x; r < rows; r += kThreads) {
    for (int64_t k = 0; k < cols; ++k) {
      const acc_t v = static_cast<acc_t>(group[r * g.hw_stride + k]);
      w.count += acc_t(1);
      const acc_t delta = v - w.mean;
      w.mean += delta / w.count;
      w.m2 += delta * (v - w.mean);
    }
  }
  w = block_reduce(w, 1);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = w.mean;
    rstd[blockIdx.x] = acc_t(1) / std::sqrt(w.m2 / w.count + eps);  // biased variance
  }
}

template <typename scalar_t, typename param_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void group_norm_silu_kernel(const scalar_t* __restrict__ x,
                                       const param_t* __restrict__ weight,
                                       const param_t* __restrict__ bias,
                                       const acc_t* __restrict__ mean,
                                       const acc_t* __restrict__ rstd, scalar_t* __restrict__ y,
                                       Geometry g, bool silu) {
  const Slot s = slot_of(g);
  if (s.c >= g.C) return;
  const Affine<acc_t> p = affine_of(s, weight, bias, mean, rstd);
  for (int64_t hw = s.hw; hw < g.HW; hw += s.hw_step) {
    const int64_t i = s.offset + hw * g.hw_stride;
    const acc_t z = p.a * (static_cast<acc_t>(x[i]) - p.mean) + p.beta;
    y[i] = static_cast<scalar_t>(silu ? silu_of(z) : z);
  }
}

// The sum of v over the block, returned to every thread. Every thread of the block must call it.
template <typename acc_t>
__device__ acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kThreads / 32];
  __shared__ acc_t total;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : acc_t(0);
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const acc_t result = total;
  __syncthreads();  // everyone has read `total` before a next call overwrites it
  return result;
}

// Offset (from the group's first element) and channel (within the group) of element e of a
// group, walked in memory order: (c, hw) in NCHW, (hw, c) in channels_last.
__device__ int64_t group_offset(int64_t e, const Geometry& g, int64_t* channel) {
  if (g.channels_last) {
    *channel = e % g.group_channels;
    return (e / g.group_channels) * g.C + *channel;
  }
  *channel = e / g.HW;
  return e;
}

// One block per (n, group) whose values fit in shared memory: x is read once, the mean and the
// centred variance come from shared memory (exact two-pass, no cancellation), then y is written:
// one read and one write of x, against two reads for statistics + apply.
template <typename scalar_t, typename param_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void group_norm_silu_one_pass_kernel(const scalar_t* __restrict__ x,
                                                const param_t* __restrict__ weight,
                                                const param_t* __restrict__ bias,
                                                scalar_t* __restrict__ y, Geometry g, acc_t eps,
                                                bool silu) {
  extern __shared__ unsigned char shared_bytes[];
  acc_t* values = reinterpret_cast<acc_t*>(shared_bytes);
  const int64_t n = blockIdx.x / g.groups;
  const int64_t c0 = (blockIdx.x % g.groups) * g.group_channels;
  const int64_t count = g.group_channels * g.HW;
  const int64_t base = n * g.C * g.HW + c0 * g.c_stride;
  int64_t channel;
  acc_t sum = acc_t(0);
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    values[e] = static_cast<acc_t>(x[base + group_offset(e, g, &channel)]);
    sum += values[e];
  }
  const acc_t mean = block_sum(sum) / static_cast<acc_t>(count);
  acc_t squares = acc_t(0);
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const acc_t d = values[e] - mean;
    squares += d * d;
  }
  const acc_t rstd = acc_t(1) / std::sqrt(block_sum(squares) / static_cast<acc_t>(count) + eps);
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const int64_t offset = group_offset(e, g, &channel);
    const acc_t a = rstd * static_cast<acc_t>(weight[c0 + channel]);
    const acc_t z = a * (values[e] - mean) + static_cast<acc_t>(bias[c0 + channel]);
    y[base + offset] = static_cast<scalar_t>(silu ? silu_of(z) : z);
  }
}

// One block per (image, channel tile), the whole plane: sum over hw of dz and dz * xhat per (n, c).
template <typename scalar_t, typename param_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void channel_sums_kernel(const scalar_t* __restrict__ grad_out,
                                    const scalar_t* __restrict__ x,
                                    const param_t* __restrict__ weight,
                                    const param_t* __restrict__ bias,
                                    const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
                                    acc_t* __restrict__ sum_dz, acc_t* __restrict__ sum_dz_xhat,
                                    Geometry g, bool silu) {
  const Slot s = slot_of(g);
  Sums<acc_t> sums{acc_t(0), acc_t(0)};
  if (s.c < g.C) {  // idle lanes of the last channel tile still take part in the reduction
    const Affine<acc_t> p = affine_of(s, weight, bias, mean, rstd);
    for (int64_t hw = s.hw; hw < g.HW; hw += s.hw_step) {
      const int64_t i = s.offset + hw * g.hw_stride;
      const acc_t v = static_cast<acc_t>(x[i]);
      const acc_t dz = dz_of(static_cast<acc_t>(grad_out[i]), p.a * (v - p.mean) + p.beta, silu);
      sums.dz += dz;
      sums.dz_xhat += dz * ((v - p.mean) * p.rstd);
    }
  }
  sums = block_reduce(sums, g.width);
  if (threadIdx.x < g.width && s.c < g.C) {
    sum_dz[s.n * g.C + s.c] = sums.dz;
    sum_dz_xhat[s.n * g.C + s.c] = sums.dz_xhat;
  }
}

// a * b rounded on its own: never fused into a following add (the compiler contracts a * b - c
// into one FMA, which keeps the product unrounded).
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// Per (n, group): the group means of dz * gamma and of dz * gamma * xhat.
template <typename param_t, typename acc_t>
__global__ void group_terms_kernel(const acc_t* __restrict__ sum_dz,
                                   const acc_t* __restrict__ sum_dz_xhat,
                                   const param_t* __restrict__ weight, acc_t* __restrict__ mean_g,
                                   acc_t* __restrict__ mean_g_xhat, Geometry g, int64_t count) {
  const acc_t inv_size = acc_t(1) / static_cast<acc_t>(g.group_channels * g.HW);
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * kThreads) {
    const int64_t n = i / g.groups;
    const int64_t c0 = (i % g.groups) * g.group_channels;
    acc_t t1 = acc_t(0), t2 = acc_t(0);
    for (int64_t c = c0; c < c0 + g.group_channels; ++c) {
      const acc_t gamma = static_cast<acc_t>(weight[c]);
      t1 += mul_rn(gamma, sum_dz[n * g.C + c]);
      t2 += gamma * sum_dz_xhat[n * g.C + c];
    }
    mean_g[i] = t1 * inv_size;
    mean_g_xhat[i] = t2 * inv_size;
  }
}

// grad_x = rstd * (g - mean_group(g) - xhat * mean_group(g * xhat)), g = dz * gamma. g is rounded
// as group_terms_kernel rounds gamma * sum_dz, so that in a one-element group g - mean_group(g)
// is exactly 0; an FMA would leave the product's rounding error there, amplified by rstd
// (1/sqrt(eps) = 1000 when the group has no variance).
template <typename scalar_t, typename param_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void grad_input_kernel(const scalar_t* __restrict__ grad_out,
                                  const scalar_t* __restrict__ x,
                                  const param_t* __restrict__ weight,
                                  const param_t* __restrict__ bias,
                                  const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
                                  const acc_t* __restrict__ mean_g,
                                  const acc_t* __restrict__ mean_g_xhat,
                                  scalar_t* __restrict__ grad_x, Geometry g, bool silu) {
  const Slot s = slot_of(g);
  if (s.c >= g.C) return;
  const Affine<acc_t> p = affine_of(s, weight, bias, mean, rstd);
  const acc_t m1 = mean_g[s.stat], m2 = mean_g_xhat[s.stat];
  for (int64_t hw = s.hw; hw < g.HW; hw += s.hw_step) {
    const int64_t i = s.offset + hw * g.hw_stride;
    const acc_t v = static_cast<acc_t>(x[i]);
    const acc_t dz = dz_of(static_cast<acc_t>(grad_out[i]), p.a * (v - p.mean) + p.beta, silu);
    const acc_t xhat = (v - p.mean) * p.rstd;
    grad_x[i] = static_cast<scalar_t>(p.rstd * (mul_rn(dz, p.gamma) - m1 - xhat * m2));
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  int64_t groups) {
  check_group_norm(x, weight, bias, groups);
  TORCH_CHECK_VALUE(x.is_cuda(), "x must be a CUDA tensor, got ", x.device());
  TORCH_CHECK_VALUE(
      weight.scalar_type() == bias.scalar_type() &&
          (weight.scalar_type() == at::kFloat || weight.scalar_type() == x.scalar_type()),
      "weight and bias must both be float32 or x's dtype (", x.scalar_type(), "), got ",
      weight.scalar_type(), " and ", bias.scalar_type());
}

Geometry geometry_of(const at::Tensor& x, at::MemoryFormat layout, int64_t groups) {
  const bool channels_last = layout == at::MemoryFormat::ChannelsLast;
  Geometry g;
  g.C = x.size(1);
  g.HW = x.size(2) * x.size(3);
  g.groups = groups;
  g.group_channels = g.C / groups;
  g.c_stride = channels_last ? 1 : g.HW;
  g.hw_stride = channels_last ? g.C : 1;
  g.width = channels_last ? 32 : 1;
  g.tiles = (g.C + g.width - 1) / g.width;
  g.channels_last = channels_last;
  TORCH_CHECK(x.size(0) * std::max(g.tiles, groups) <= std::numeric_limits<int32_t>::max(),
              "x has too many images and channels for one launch: ", x.sizes());
  return g;
}

// Blocks of (image, channel tile) along x; pixel chunks along y (capped: the kernels grid-stride).
dim3 channel_grid(const Geometry& g, int64_t batch, int64_t max_y) {
  const int64_t rows = kThreads / g.width;
  return dim3(static_cast<unsigned>(batch * g.tiles),
              static_cast<unsigned>(std::min((g.HW + rows - 1) / rows, max_y)));
}

// Calls fn(param_t{}) with the C++ type of weight and bias: float or scalar_t.
template <typename scalar_t, typename Fn>
void with_param_type(const at::Tensor& weight, const Fn& fn) {
  if (weight.scalar_type() == at::kFloat) {
    fn(float{});
  } else {
    fn(scalar_t{});
  }
}

struct Stats {
  at::Tensor mean, rstd;  // (N * groups,) in the accumulation type
};

Stats group_stats(const at::Tensor& x, const Geometry& g, double eps) {
  const auto options = x.options().dtype(at::toOpMathType(x.scalar_type()));
  Stats st{at::empty({x.size(0) * g.groups}, options), at::empty({x.size(0) * g.groups}, options)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_stats_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    group_stats_kernel<scalar_t><<<static_cast<unsigned>(st.mean.numel()), kThreads, 0,
                                   at::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), st.mean.mutable_data_ptr<acc_t>(),
        st.rstd.mutable_data_ptr<acc_t>(), g, static_cast<acc_t>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return st;
}

// Runs the one-pass kernel when the group fits its shared memory (opting in above the default
// limit where needed); false when it does not fit and the two-pass path must run.
template <typename scalar_t, typename param_t>
bool launch_one_pass(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     at::Tensor& y, const Geometry& g, double eps, bool silu) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto kernel = group_norm_silu_one_pass_kernel<scalar_t, param_t>;
  const int64_t bytes = g.group_channels * g.HW * static_cast<int64_t>(sizeof(acc_t));
  cudaFuncAttributes attributes;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  const int64_t fixed = static_cast<int64_t>(attributes.sharedSizeBytes);
  const int64_t most = std::min<int64_t>(
      kOnePassSharedBytes,
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin) - fixed);
  if (bytes > most) return false;
  if (bytes + fixed > kDefaultSharedBytes) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
  kernel<<<static_cast<unsigned>(x.size(0) * g.groups), kThreads, static_cast<size_t>(bytes),
           at::cuda::getCurrentCUDAStream()>>>(
      x.const_data_ptr<scalar_t>(), weight.const_data_ptr<param_t>(),
      bias.const_data_ptr<param_t>(), y.mutable_data_ptr<scalar_t>(), g, static_cast<acc_t>(eps),
      silu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

at::Tensor group_norm_silu_cuda(const at::Tensor& x_in, const at::Tensor& weight_in,
                                const at::Tensor& bias_in, int64_t groups, double eps,
                                bool silu) {
  check_inputs(x_in, weight_in, bias_in, groups);
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::MemoryFormat layout = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(layout);
  at::Tensor y = new_output(x.sizes(), x.options(), layout);
  if (x.numel() == 0) return y;
  const at::Tensor weight = weight_in.contiguous(), bias = bias_in.contiguous();
  const Geometry g = geometry_of(x, layout, groups);
  bool done = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu_cuda", [&] {
    with_param_type<scalar_t>(weight, [&](auto tag) {
      done = launch_one_pass<scalar_t, decltype(tag)>(x, weight, bias, y, g, eps, silu);
    });
  });
  if (done) return y;
  const Stats st = group_stats(x, g, eps);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_param_type<scalar_t>(weight, [&](auto tag) {
      using param_t = decltype(tag);
      group_norm_silu_kernel<scalar_t, param_t>
          <<<channel_grid(g, x.size(0), kMaxGridY), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              x.const_data_ptr<scalar_t>(), weight.const_data_ptr<param_t>(),
              bias.const_data_ptr<param_t>(), st.mean.const_data_ptr<acc_t>(),
              st.rstd.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>(), g, silu);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_silu_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& weight_in,
    const at::Tensor& bias_in, int64_t groups, double eps, bool silu) {
  check_inputs(x_in, weight_in, bias_in, groups);
  TORCH_CHECK_VALUE(grad_out_in.sizes() == x_in.sizes(), "grad_out must have x's shape ",
                    x_in.sizes(), ", got ", grad_out_in.sizes());
  TORCH_CHECK_VALUE(grad_out_in.scalar_type() == x_in.scalar_type(),
                    "grad_out must have x's dtype (", x_in.scalar_type(), "), got ",
                    grad_out_in.scalar_type());
  TORCH_CHECK_VALUE(grad_out_in.device() == x_in.device(), "grad_out must be on x's device (",
                    x_in.device(), ")");
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const at::MemoryFormat layout = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(layout);
  const at::Tensor grad_out = grad_out_in.contiguous(layout);
  at::Tensor grad_x = new_output(x.sizes(), x.options(), layout);
  if (x.numel() == 0) return {grad_x, at::zeros_like(weight_in), at::zeros_like(bias_in)};
  const at::Tensor weight = weight_in.contiguous(), bias = bias_in.contiguous();
  const Geometry g = geometry_of(x, layout, groups);
  const Stats st = group_stats(x, g, eps);

  const int64_t batch = x.size(0);
  const auto acc_options = st.mean.options();
  const at::Tensor sum_dz = at::empty({batch, g.C}, acc_options);
  const at::Tensor sum_dz_xhat = at::empty({batch, g.C}, acc_options);
  const at::Tensor mean_g = at::empty_like(st.mean), mean_g_xhat = at::empty_like(st.mean);
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_param_type<scalar_t>(weight, [&](auto tag) {
      using param_t = decltype(tag);
      // max_y = 1: each block reduces whole planes, so the sums need no atomics.
      channel_sums_kernel<scalar_t, param_t><<<channel_grid(g, batch, 1), kThreads, 0, stream>>>(
          grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
          weight.const_data_ptr<param_t>(), bias.const_data_ptr<param_t>(),
          st.mean.const_data_ptr<acc_t>(), st.rstd.const_data_ptr<acc_t>(),
          sum_dz.mutable_data_ptr<acc_t>(), sum_dz_xhat.mutable_data_ptr<acc_t>(), g, silu);
      C10_CUDA_KERNEL_LAUNCH_CHECK();

      const int64_t count = mean_g.numel();
      group_terms_kernel<param_t, acc_t>
          <<<static_cast<unsigned>((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
              sum_dz.const_data_ptr<acc_t>(), sum_dz_xhat.const_data_ptr<acc_t>(),
              weight.const_data_ptr<param_t>(), mean_g.mutable_data_ptr<acc_t>(),
              mean_g_xhat.mutable_data_ptr<acc_t>(), g, count);
      C10_CUDA_KERNEL_LAUNCH_CHECK();

      grad_input_kernel<scalar_t, param_t>
          <<<channel_grid(g, batch, kMaxGridY), kThreads, 0, stream>>>(
              grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
              weight.const_data_ptr<param_t>(), bias.const_data_ptr<param_t>(),
              st.mean.const_data_ptr<acc_t>(), st.rstd.const_data_ptr<acc_t>(),
              mean_g.const_data_ptr<acc_t>(), mean_g_xhat.const_data_ptr<acc_t>(),
              grad_x.mutable_data_ptr<scalar_t>(), g, silu);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  at::Tensor grad_weight = sum_dz_xhat.sum(0).to(weight_in.scalar_type());
  at::Tensor grad_bias = sum_dz.sum(0).to(weight_in.scalar_type());
  return {grad_x, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, CUDA, m) {
  m.impl("group_norm_silu", &group_norm_silu_cuda);
  m.impl("group_norm_silu_backward", &group_norm_silu_backward_cuda);
}

}  // namespace adaskip
