// GroupNorm (+ SiLU) on the CPU: forward reads x twice (statistics, then normalise + SiLU in one
// pass; for NCHW group by group, so the second read hits the cache) and writes y once; torch's
// composition makes two more passes for the separate SiLU.
//
// Float and half types accumulate in float through the vectorised helpers below; float64 takes
// the same code path in double with scalar math (it exists for gradcheck, not for speed).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/parallel.h"
#include "cpu/vec_math.h"

namespace adaskip {
namespace {

constexpr int64_t kChunk = 2048;  // elements converted to the accumulation type at a time

// ---- float helpers (vectorised; see vec_math.h) ------------------------------------------
// Each loop is a template on the vector type V; the ADASKIP_VECTORIZE function below it runs
// it on 16 floats in the AVX-512 clone and on 8 in the others.

// Sums of (x - shift) and (x - shift)^2 over n elements, added to sums[0], sums[1]. Written
// with vector types: GCC does not vectorise a float reduction on its own (it would reorder the
// additions), and two accumulator pairs hide the adds' latency.
template <typename V>
ADASKIP_INLINE void shifted_sums_loop(const float* x, int64_t n, float shift, double* sums) {
  constexpr int64_t lanes = kLanes<V>;
  V s1a = {}, s2a = {}, s1b = {}, s2b = {};
  int64_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    const V a = loadv<V>(x + i) - shift, b = loadv<V>(x + i + lanes) - shift;
    s1a += a;
    s2a += a * a;
    s1b += b;
    s2b += b * b;
  }
  double t1 = 0.0, t2 = 0.0;
  for (int j = 0; j < lanes; ++j) {
    t1 += static_cast<double>(s1a[j]) + s1b[j];
    t2 += static_cast<double>(s2a[j]) + s2b[j];
  }
  for (; i < n; ++i) {
    const float d = x[i] - shift;
    t1 += d;
    t2 += d * d;
  }
  sums[0] += t1;
  sums[1] += t2;
}

ADASKIP_VECTORIZE void shifted_sums(const float* x, int64_t n, float shift, double* sums) {
  if (wide_vectors()) {
    shifted_sums_loop<float16v>(x, n, shift, sums);
  } else {
    shifted_sums_loop<float8v>(x, n, shift, sums);
  }
}

// Per-channel sums of (x - shift) and its square for one channels_last pixel row of c values.
ADASKIP_VECTORIZE void channel_sums(const float* x, int64_t c, const float* shift, float* s1,
                                    float* s2) {
  for (int64_t i = 0; i < c; ++i) {
    const float d = x[i] - shift[i];
    s1[i] += d;
    s2[i] += d * d;
  }
}

// y = silu(a * (x - m) + b) (or without the SiLU) with scalar a, m, b: one NCHW channel plane.
// Centring before scaling keeps precision when |mean| >> std (a * x + b' would cancel).
template <typename V>
ADASKIP_INLINE void affine_silu_loop(const float* x, float* y, int64_t n, float a, float m,
                                     float b, bool silu) {
  int64_t i = 0;
  for (; i + kLanes<V> <= n; i += kLanes<V>) {
    const V z = (loadv<V>(x + i) - m) * a + b;
    storev(y + i, silu ? silu_approx(z) : z);
  }
  for (; i < n; ++i) {
    const float z = a * (x[i] - m) + b;
    y[i] = silu ? silu_approx(z) : z;
  }
}

ADASKIP_VECTORIZE void affine_silu(const float* x, float* y, int64_t n, float a, float m,
                                   float b, bool silu) {
  if (wide_vectors()) {
    affine_silu_loop<float16v>(x, y, n, a, m, b, silu);
  } else {
    affine_silu_loop<float8v>(x, y, n, a, m, b, silu);
  }
}

// The same with per-channel a, m, b: one channels_last pixel of n channels.
template <typename V>
ADASKIP_INLINE void affine_silu_channels_loop(const float* x, float* y, int64_t n,
                                              const float* a, const float* m, const float* b,
                                              bool silu) {
  int64_t i = 0;
  for (; i + kLanes<V> <= n; i += kLanes<V>) {
    const V z = (loadv<V>(x + i) - loadv<V>(m + i)) * loadv<V>(a + i) + loadv<V>(b + i);
    storev(y + i, silu ? silu_approx(z) : z);
  }
  for (; i < n; ++i) {
    const float z = a[i] * (x[i] - m[i]) + b[i];
    y[i] = silu ? silu_approx(z) : z;
  }
}

ADASKIP_VECTORIZE void affine_silu_channels(const float* x, float* y, int64_t n, const float* a,
                                            const float* m, const float* b, bool silu) {
  if (wide_vectors()) {
    affine_silu_channels_loop<float16v>(x, y, n, a, m, b, silu);
  } else {
    affine_silu_channels_loop<float8v>(x, y, n, a, m, b, silu);
  }
}

// The backward's first pass over one NCHW plane: xhat = (x - mean) * rstd, z = gamma * xhat +
// beta, dz = dy * silu'(z) (or dy) written to dz; the sums of dz and dz * xhat added to sums[0],
// sums[1]. silu'(z) = s (1 + z (1 - s)) with s = sigmoid(z), from the forward's exp.
template <typename V>
ADASKIP_INLINE void backward_plane_loop(const float* x, const float* dy, float* dz, int64_t n,
                                        float mean, float rstd, float gamma, float beta,
                                        bool silu, double* sums) {
  V s1 = {}, s2 = {};
  int64_t i = 0;
  for (; i + kLanes<V> <= n; i += kLanes<V>) {
    const V xhat = (loadv<V>(x + i) - mean) * rstd;
    V d = loadv<V>(dy + i);
    if (silu) {
      const V z = xhat * gamma + beta;
      const V sig = 1.0f / (exp_approx(-z) + 1.0f);
      d *= sig * (z * (1.0f - sig) + 1.0f);
    }
    storev(dz + i, d);
    s1 += d;
    s2 += d * xhat;
  }
  double t1 = 0.0, t2 = 0.0;
  for (int j = 0; j < kLanes<V>; ++j) {
    t1 += s1[j];
    t2 += s2[j];
  }
  for (; i < n; ++i) {
    const float xhat = (x[i] - mean) * rstd;
    float d = dy[i];
    if (silu) {
      const float z = xhat * gamma + beta;
      const float sig = 1.0f / (exp_approx(-z) + 1.0f);
      d *= sig * (z * (1.0f - sig) + 1.0f);
    }
    dz[i] = d;
    t1 += d;
    t2 += static_cast<double>(d) * xhat;
  }
  sums[0] += t1;
  sums[1] += t2;
}

ADASKIP_VECTORIZE void backward_plane(const float* x, const float* dy, float* dz, int64_t n,
                                      float mean, float rstd, float gamma, float beta, bool silu,
                                      double* sums) {
  if (wide_vectors()) {
    backward_plane_loop<float16v>(x, dy, dz, n, mean, rstd, gamma, beta, silu, sums);
  } else {
    backward_plane_loop<float8v>(x, dy, dz, n, mean, rstd, gamma, beta, silu, sums);
  }
}

// ---- the same in double, scalar -----------------------------------------------------------

void shifted_sums(const double* x, int64_t n, double shift, double* sums) {
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - shift;
    sums[0] += d;
    sums[1] += d * d;
  }
}

void channel_sums(const double* x, int64_t c, const double* shift, double* s1, double* s2) {
  for (int64_t i = 0; i < c; ++i) {
    const double d = x[i] - shift[i];
    s1[i] += d;
    s2[i] += d * d;
  }
}

double silu_or_identity(double z, bool silu) { return silu ? z / (1.0 + std::exp(-z)) : z; }

void backward_plane(const double* x, const double* dy, double* dz, int64_t n, double mean,
                    double rstd, double gamma, double beta, bool silu, double* sums) {
  for (int64_t i = 0; i < n; ++i) {
    const double xhat = (x[i] - mean) * rstd;
    double d = dy[i];
    if (silu) {
      const double z = gamma * xhat + beta;
      const double sig = 1.0 / (1.0 + std::exp(-z));
      d *= sig * (1.0 + z * (1.0 - sig));
    }
    dz[i] = d;
    sums[0] += d;
    sums[1] += d * xhat;
  }
}

void affine_silu(const double* x, double* y, int64_t n, double a, double m, double b,
                 bool silu) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu_or_identity(a * (x[i] - m) + b, silu);
}

void affine_silu_channels(const double* x, double* y, int64_t n, const double* a,
                          const double* m, const double* b, bool silu) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu_or_identity(a[i] * (x[i] - m[i]) + b[i], silu);
}

// ---- dtype plumbing -----------------------------------------------------------------------

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// A view of n elements of src as acc_t: the pointer itself when the types agree, else a copy.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
const acc_t* as_acc(const scalar_t* src, int64_t n, std::vector<acc_t>& buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    buffer.resize(n);
    for (int64_t i = 0; i < n; ++i) buffer[i] = static_cast<acc_t>(src[i]);
    return buffer.data();
  }
}

// Where to compute n outputs before storing them to dst: dst itself when the types agree.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
acc_t* acc_out(scalar_t* dst, int64_t n, std::vector<acc_t>& buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return dst;
  } else {
    buffer.resize(n);
    return buffer.data();
  }
}

template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void store(scalar_t* dst, const acc_t* values, int64_t n) {
  if constexpr (!std::is_same_v<scalar_t, acc_t>) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<scalar_t>(values[i]);
  }
}

// mean and rstd from shifted sums over count elements (biased variance).
template <typename acc_t>
void finish_moments(double s1, double s2, double shift, int64_t count, double eps, acc_t* mean,
                    acc_t* rstd) {
  const double m = s1 / static_cast<double>(count);
  const double var = std::max(s2 / static_cast<double>(count) - m * m, 0.0);
  *mean = static_cast<acc_t>(shift + m);
  *rstd = static_cast<acc_t>(1.0 / std::sqrt(var + eps));
}

// Per-(n, c) tables: scale a = rstd * gamma, centre m = mean and shift b = beta, (N, C) each.
template <typename acc_t>
struct Affine {
  std::vector<acc_t> scale, centre, shift;
};

template <typename acc_t>
Affine<acc_t> affine_tables(const at::Tensor& mean, const at::Tensor& rstd,
                            const at::Tensor& weight, const at::Tensor& bias, int64_t groups) {
  const int64_t batch = mean.size(0), channels = weight.size(0), per_group = channels / groups;
  const auto dtype = std::is_same_v<acc_t, double> ? at::kDouble : at::kFloat;
  const at::Tensor gamma = weight.to(dtype).contiguous(), beta = bias.to(dtype).contiguous();
  const acc_t* g = gamma.data_ptr<acc_t>();
  const acc_t* bt = beta.data_ptr<acc_t>();
  const acc_t* mu = mean.data_ptr<acc_t>();
  const acc_t* rs = rstd.data_ptr<acc_t>();
  Affine<acc_t> tables;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t ng = n * groups + c / per_group;
      tables.scale.push_back(rs[ng] * g[c]);
      tables.centre.push_back(mu[ng]);
      tables.shift.push_back(bt[c]);
    }
  }
  return tables;
}

// mean and rstd of one contiguous group of group_size elements.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void group_moments(const scalar_t* group, int64_t group_size, double eps,
                   std::vector<acc_t>& buffer, acc_t* mean, acc_t* rstd) {
  const acc_t shift = static_cast<acc_t>(group[0]);
  double sums[2] = {0.0, 0.0};
  for (int64_t i = 0; i < group_size; i += kChunk) {
    const int64_t n = std::min(kChunk, group_size - i);
    shifted_sums(as_acc(group + i, n, buffer), n, shift, sums);
  }
  finish_moments(sums[0], sums[1], shift, group_size, eps, mean, rstd);
}

// Statistics of an NCHW-contiguous x: each (n, g) group is one contiguous run.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void moments_nchw(const scalar_t* x, int64_t batch, int64_t groups, int64_t group_size,
                  double eps, acc_t* mean, acc_t* rstd) {
  at::parallel_for(0, batch * groups, grain_for(group_size), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buffer;
    for (int64_t ng = begin; ng < end; ++ng) {
      group_moments(x + ng * group_size, group_size, eps, buffer, mean + ng, rstd + ng);
    }
  });
}

// Statistics of a channels_last x: per-channel sums over pixel blocks, then per group.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void moments_channels_last(const scalar_t* x, int64_t batch, int64_t channels, int64_t pixels,
                           int64_t groups, double eps, acc_t* mean, acc_t* rstd) {
  const int64_t per_group = channels / groups;
  const int64_t blocks = std::min<int64_t>(pixels, std::max(1, at::get_num_threads()));
  const int64_t block_pixels = (pixels + blocks - 1) / blocks;
  // partial[n][block][0 or 1][c]
  std::vector<acc_t> partial(batch * blocks * 2 * channels, acc_t(0));
  at::parallel_for(0, batch * blocks, grain_for(block_pixels * channels), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buffer, shift(channels);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, block = item % blocks;
      const scalar_t* image = x + n * pixels * channels;
      for (int64_t c = 0; c < channels; ++c) {
        shift[c] = static_cast<acc_t>(image[(c / per_group) * per_group]);
      }
      acc_t* s1 = partial.data() + item * 2 * channels;
      const int64_t stop = std::min(pixels, (block + 1) * block_pixels);
      for (int64_t p = block * block_pixels; p < stop; ++p) {
        channel_sums(as_acc(image + p * channels, channels, buffer), channels, shift.data(), s1,
                     s1 + channels);
      }
    }
  });
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      double s1 = 0.0, s2 = 0.0;
      for (int64_t block = 0; block < blocks; ++block) {
        const acc_t* sums = partial.data() + (n * blocks + block) * 2 * channels;
        for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
          s1 += sums[c];
          s2 += sums[channels + c];
        }
      }
      const double shift = static_cast<double>(x[n * pixels * channels + g * per_group]);
      finish_moments(s1, s2, shift, per_group * pixels, eps, mean + n * groups + g,
                     rstd + n * groups + g);
    }
  }
}

// (mean, rstd), each (N, groups) in the accumulation dtype; x NCHW-contiguous or channels_last.
std::tuple<at::Tensor, at::Tensor> moments(const at::Tensor& x, int64_t groups, double eps) {
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor mean = at::empty({batch, groups}, x.options().dtype(acc));
  at::Tensor rstd = at::empty({batch, groups}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "moments", [&] {
    using acc_t = acc_type<scalar_t>;
    if (layout_of(x) == at::MemoryFormat::ChannelsLast) {
      moments_channels_last(x.data_ptr<scalar_t>(), batch, channels, pixels, groups, eps,
                            mean.data_ptr<acc_t>(), rstd.data_ptr<acc_t>());
    } else {
      moments_nchw(x.data_ptr<scalar_t>(), batch, groups, channels / groups * pixels, eps,
                   mean.data_ptr<acc_t>(), rstd.data_ptr<acc_t>());
    }
  });
  return {mean, rstd};
}

// The forward on an NCHW-contiguous x, one (n, g) group at a time: the statistics, then the
// normalising pass over the group's channels while the group (a contiguous run of
// channels / groups planes) is still in cache, instead of two sweeps over all of x.
template <typename scalar_t, typename acc_t = acc_type<scalar_t>>
void group_norm_silu_nchw(const scalar_t* x, scalar_t* y, const acc_t* gamma, const acc_t* beta,
                          int64_t batch, int64_t channels, int64_t pixels, int64_t groups,
                          double eps, bool silu) {
  const int64_t per_group = channels / groups, group_size = per_group * pixels;
  // Each element costs two reads, a write and the exp: about four copies' worth of the work
  // grain_for sizes chunks by, so batch 8 at 4x4 already splits across two threads.
  const int64_t grain = grain_for(4 * group_size);
  at::parallel_for(0, batch * groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> in_buffer, out_buffer;
    for (int64_t ng = begin; ng < end; ++ng) {
      acc_t mean, rstd;
      group_moments(x + ng * group_size, group_size, eps, in_buffer, &mean, &rstd);
      for (int64_t k = 0; k < per_group; ++k) {
        const int64_t c = (ng % groups) * per_group + k;
        const acc_t scale = rstd * gamma[c];
        for (int64_t i = 0; i < pixels; i += kChunk) {
          const int64_t n = std::min(kChunk, pixels - i);
          const int64_t offset = ng * group_size + k * pixels + i;
          acc_t* out = acc_out(y + offset, n, out_buffer);
          affine_silu(as_acc(x + offset, n, in_buffer), out, n, scale, mean, beta[c], silu);
          store(y + offset, out, n);
        }
      }
    }
  });
}

// x in the layout it has (NCHW-contiguous or channels_last); anything else is made contiguous.
at::Tensor in_kernel_layout(const at::Tensor& x) {
  return x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)
             ? x
             : x.contiguous();
}

at::Tensor group_norm_silu_cpu(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, int64_t groups, double eps, bool silu) {
  check_group_norm(input, weight, bias, groups);
  TORCH_CHECK_VALUE(input.device().is_cpu(), "x must be a CPU tensor, got ", input.device());
  const at::Tensor x = in_kernel_layout(input);
  at::Tensor y = new_output(x.sizes(), x.options(), layout_of(x));
  if (x.numel() == 0) return y;
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  if (layout_of(x) != at::MemoryFormat::ChannelsLast) {
    const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const at::Tensor gamma = weight.to(acc).contiguous(), beta = bias.to(acc).contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu",
                                    [&] {
      using acc_t = acc_type<scalar_t>;
      group_norm_silu_nchw(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                           gamma.data_ptr<acc_t>(), beta.data_ptr<acc_t>(), batch, channels,
                           pixels, groups, eps, silu);
    });
    return y;
  }
  // channels_last: a group is strided, so the statistics come first, in their own pass.
  auto [mean, rstd] = moments(x, groups, eps);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu",
                                  [&] {
    using acc_t = acc_type<scalar_t>;
    const Affine<acc_t> t = affine_tables<acc_t>(mean, rstd, weight, bias, groups);
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = y.data_ptr<scalar_t>();
    at::parallel_for(0, batch * pixels, grain_for(channels), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> in_buffer, out_buffer;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t n = item / pixels;
        acc_t* out = acc_out(dst + item * channels, channels, out_buffer);
        affine_silu_channels(as_acc(src + item * channels, channels, in_buffer), out, channels,
                             t.scale.data() + n * channels, t.centre.data() + n * channels,
                             t.shift.data() + n * channels, silu);
        store(dst + item * channels, out, channels);
      }
    });
  });
  return y;
}

// Backward in the accumulation type on NCHW-contiguous copies. The first pass (the SiLU derivative
// and the two sums) is vectorised for float; the second stays in double: its gamma * dz - m1 must
// cancel exactly where a group holds one element.
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_silu_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& bias, int64_t groups, double eps, bool silu) {
  check_group_norm(input, weight, bias, groups);
  TORCH_CHECK_VALUE(grad_out.sizes() == input.sizes(), "grad_out must have x's shape ",
                    input.sizes(), ", got ", grad_out.sizes());
  const auto acc = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor x = input.to(acc).contiguous();
  const at::Tensor dy = grad_out.to(acc).contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  const int64_t per_group = channels / groups;
  at::Tensor dx = new_output(x.sizes(), x.options(), at::MemoryFormat::Contiguous);
  at::Tensor sum_dz = at::zeros({batch, channels}, x.options());
  at::Tensor sum_dz_xhat = at::zeros({batch, channels}, x.options());
  if (x.numel() > 0) {
    auto [mean, rstd] = moments(x, groups, eps);
    AT_DISPATCH_FLOATING_TYPES(acc, "group_norm_silu_backward", [&] {
      const scalar_t* xs = x.data_ptr<scalar_t>();
      const scalar_t* dys = dy.data_ptr<scalar_t>();
      const scalar_t* mu = mean.data_ptr<scalar_t>();
      const scalar_t* rs = rstd.data_ptr<scalar_t>();
      const at::Tensor gamma_tensor = weight.to(acc).contiguous();
      const at::Tensor beta_tensor = bias.to(acc).contiguous();
      const scalar_t* gamma = gamma_tensor.data_ptr<scalar_t>();
      const scalar_t* beta = beta_tensor.data_ptr<scalar_t>();
      scalar_t* dxs = dx.data_ptr<scalar_t>();  // holds dz until the second pass
      scalar_t* s_dz = sum_dz.data_ptr<scalar_t>();
      scalar_t* s_dzx = sum_dz_xhat.data_ptr<scalar_t>();
      at::parallel_for(0, batch * channels, grain_for(pixels), [&](int64_t begin, int64_t end) {
        for (int64_t plane = begin; plane < end; ++plane) {
          const int64_t c = plane % channels, ng = (plane / channels) * groups + c / per_group;
          const int64_t first = plane * pixels;
          double sums[2] = {0.0, 0.0};  // of dz and dz * xhat
          backward_plane(xs + first, dys + first, dxs + first, pixels, mu[ng], rs[ng], gamma[c],
                         beta[c], silu, sums);
          s_dz[plane] = static_cast<scalar_t>(sums[0]);
          s_dzx[plane] = static_cast<scalar_t>(sums[1]);
        }
      });
      at::parallel_for(0, batch * channels, grain_for(pixels), [&](int64_t begin, int64_t end) {
        for (int64_t plane = begin; plane < end; ++plane) {
          const int64_t n = plane / channels, c = plane % channels, g = c / per_group;
          const int64_t ng = n * groups + g;
          double m1 = 0.0, m2 = 0.0;  // group means of gamma * dz and gamma * dz * xhat
          for (int64_t k = g * per_group; k < (g + 1) * per_group; ++k) {
            m1 += gamma[k] * s_dz[n * channels + k];
            m2 += gamma[k] * s_dzx[n * channels + k];
          }
          m1 /= static_cast<double>(per_group * pixels);
          m2 /= static_cast<double>(per_group * pixels);
          for (int64_t i = plane * pixels; i < (plane + 1) * pixels; ++i) {
            const double xhat = (xs[i] - mu[ng]) * rs[ng];
            dxs[i] = static_cast<scalar_t>(rs[ng] * (gamma[c] * dxs[i] - m1 - xhat * m2));
          }
        }
      });
    });
  }
  at::Tensor grad_x =
      dx.to(input.scalar_type()).contiguous(layout_of(input));
  return {grad_x, sum_dz_xhat.sum(0).to(weight.scalar_type()),
          sum_dz.sum(0).to(bias.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, CPU, m) {
  m.impl("group_norm_silu", &group_norm_silu_cpu);
  m.impl("group_norm_silu_backward", &group_norm_silu_backward_cpu);
}

}  // namespace adaskip
