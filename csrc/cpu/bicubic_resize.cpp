// CPU bicubic resize (align_corners=False) and its adjoint, matching ATen's upsample_bicubic2d.
// Both are separable: the forward interpolates each tap row along x, then combines the four
// rows along y (ATen's evaluation order); the backward applies the transposed passes.
// Half-precision inputs are computed in float and float64 in double, cast once at the end.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "bicubic.h"
#include "checks.h"
#include "cpu/parallel.h"
#include "cpu/vec_math.h"

namespace adaskip {
namespace {

// Tap indices and weights for every output coordinate of one axis, stored tap-major
// (index[k * out + i], weight[k * out + i]) so that loops over i read them contiguously.
template <typename T>
struct AxisTaps {
  std::vector<int32_t> index;
  std::vector<T> weight;
};

// Tap weights are compiled like the loops (ADASKIP_VECTORIZE: an FMA clone) because ATen's
// AVX2 kernels contract these polynomials into FMAs too; then the weights match bit for bit.
ADASKIP_VECTORIZE void fill_taps(float scale, int64_t dst, int64_t in_size,
                                 int64_t /*out_size*/, int64_t index[4], float weight[4]) {
  const CubicTaps taps = cubic_taps(scale, dst, in_size);
  std::copy(taps.index, taps.index + 4, index);
  std::copy(taps.weight, taps.weight + 4, weight);
}

// ATen computes float64 weights in double (scale in / out and source index too); the float
// formulas of bicubic.h would be off by ~1e-8 there.
ADASKIP_VECTORIZE void fill_taps(float /*scale*/, int64_t dst, int64_t in_size,
                                 int64_t out_size, int64_t index[4], double weight[4]) {
  constexpr double A = kCubicA;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double real = scale * (static_cast<double>(dst) + 0.5) - 0.5;
  const double floor_real = std::floor(real);
  const double t = real - floor_real;
  const double x1 = t + 1.0;
  weight[0] = ((A * x1 - 5.0 * A) * x1 + 8.0 * A) * x1 - 4.0 * A;
  weight[1] = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
  const double u = 1.0 - t;
  weight[2] = ((A + 2.0) * u - (A + 3.0)) * u * u + 1.0;
  const double u1 = u + 1.0;
  weight[3] = ((A * u1 - 5.0 * A) * u1 + 8.0 * A) * u1 - 4.0 * A;
  const int64_t base = static_cast<int64_t>(floor_real);
  for (int k = 0; k < 4; ++k) {
    index[k] = std::min(std::max(base - 1 + k, int64_t{0}), in_size - 1);
  }
}

template <typename T>
AxisTaps<T> axis_taps(int64_t in_size, int64_t out_size) {
  AxisTaps<T> taps{std::vector<int32_t>(4 * out_size), std::vector<T>(4 * out_size)};
  const float scale = bicubic_scale(in_size, out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    int64_t index[4];
    T weight[4];
    fill_taps(scale, i, in_size, out_size, index, weight);
    for (int k = 0; k < 4; ++k) {
      taps.index[k * out_size + i] = static_cast<int32_t>(index[k]);
      taps.weight[k * out_size + i] = weight[k];
    }
  }
  return taps;
}

// out[i] = w0 * a0[i] + w1 * a1[i] + w2 * a2[i] + w3 * a3[i].
template <typename T>
ADASKIP_VECTORIZE void combine4(T* __restrict out, const T* __restrict a0,
                                const T* __restrict a1, const T* __restrict a2,
                                const T* __restrict a3, T w0, T w1, T w2, T w3, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = w0 * a0[i] + w1 * a1[i] + w2 * a2[i] + w3 * a3[i];
  }
}

// y[i] += a * x[i].
template <typename T>
ADASKIP_VECTORIZE void axpy(T* __restrict y, T a, const T* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] += a * x[i];
  }
}

// NCHW planes [begin, end): per plane, interpolate the input rows that some tap uses along x
// into `rows` (in_h x out_w), then combine four buffer rows per output row. One clone call per
// chunk of planes: at the bridges' small sizes, a call per row would cost more than the row.
template <typename T>
ADASKIP_VECTORIZE void resize_planes(const T* in, T* out, T* rows, int64_t begin, int64_t end,
                                     const AxisTaps<T>& tx, const AxisTaps<T>& ty,
                                     const std::vector<int64_t>& rows_used, int64_t in_h,
                                     int64_t in_w, int64_t out_h, int64_t out_w) {
  const int32_t* ix = tx.index.data();
  const T* wx = tx.weight.data();
  for (int64_t p = begin; p < end; ++p) {
    const T* src = in + p * in_h * in_w;
    T* dst = out + p * out_h * out_w;
    for (int64_t iy : rows_used) {
      const T* s = src + iy * in_w;
      T* r = rows + iy * out_w;
      for (int64_t i = 0; i < out_w; ++i) {
        r[i] = wx[i] * s[ix[i]] + wx[out_w + i] * s[ix[out_w + i]] +
               wx[2 * out_w + i] * s[ix[2 * out_w + i]] + wx[3 * out_w + i] * s[ix[3 * out_w + i]];
      }
    }
    for (int64_t y = 0; y < out_h; ++y) {
      const T* r0 = rows + ty.index[y] * out_w;
      const T* r1 = rows + ty.index[out_h + y] * out_w;
      const T* r2 = rows + ty.index[2 * out_h + y] * out_w;
      const T* r3 = rows + ty.index[3 * out_h + y] * out_w;
      const T w0 = ty.weight[y], w1 = ty.weight[out_h + y];
      const T w2 = ty.weight[2 * out_h + y], w3 = ty.weight[3 * out_h + y];
      T* d = dst + y * out_w;
      for (int64_t i = 0; i < out_w; ++i) d[i] = w0 * r0[i] + w1 * r1[i] + w2 * r2[i] + w3 * r3[i];
    }
  }
}

// The same when shrinking in y, in the other order: combine four input rows per output row
// (contiguous vector loops over in_w), then gather along x for the out_h rows only. This does a
// quarter of the gathers at the bridges' 32/16/8 -> 4 but rounds differently from ATen's
// x-then-y order (within float rounding).
template <typename T>
ADASKIP_VECTORIZE void resize_planes_y_first(const T* in, T* out, T* row, int64_t begin,
                                             int64_t end, const AxisTaps<T>& tx,
                                             const AxisTaps<T>& ty, int64_t in_h, int64_t in_w,
                                             int64_t out_h, int64_t out_w) {
  const int32_t* ix = tx.index.data();
  const T* wx = tx.weight.data();
  for (int64_t p = begin; p < end; ++p) {
    const T* src = in + p * in_h * in_w;
    T* dst = out + p * out_h * out_w;
    for (int64_t y = 0; y < out_h; ++y) {
      const T* r0 = src + ty.index[y] * in_w;
      const T* r1 = src + ty.index[out_h + y] * in_w;
      const T* r2 = src + ty.index[2 * out_h + y] * in_w;
      const T* r3 = src + ty.index[3 * out_h + y] * in_w;
      const T w0 = ty.weight[y], w1 = ty.weight[out_h + y];
      const T w2 = ty.weight[2 * out_h + y], w3 = ty.weight[3 * out_h + y];
      for (int64_t i = 0; i < in_w; ++i) row[i] = w0 * r0[i] + w1 * r1[i] + w2 * r2[i] + w3 * r3[i];
      T* d = dst + y * out_w;
      for (int64_t i = 0; i < out_w; ++i) {
        d[i] = wx[i] * row[ix[i]] + wx[out_w + i] * row[ix[out_w + i]] +
               wx[2 * out_w + i] * row[ix[2 * out_w + i]] +
               wx[3 * out_w + i] * row[ix[3 * out_w + i]];
      }
    }
  }
}

template <typename T>
void resize_nchw(const T* in, T* out, int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h,
                 int64_t out_w) {
  const AxisTaps<T> tx = axis_taps<T>(in_w, out_w);
  const AxisTaps<T> ty = axis_taps<T>(in_h, out_h);
  if (out_h < in_h) {
    at::parallel_for(0, planes, grain_for(out_h * (in_w + out_w) * 4), [&](int64_t b, int64_t e) {
      std::vector<T> row(in_w);
      resize_planes_y_first(in, out, row.data(), b, e, tx, ty, in_h, in_w, out_h, out_w);
    });
    return;
  }
  std::vector<int64_t> rows_used;
  {
    std::vector<bool> used(in_h, false);
    for (int32_t iy : ty.index) used[iy] = true;
    for (int64_t iy = 0; iy < in_h; ++iy) {
      if (used[iy]) rows_used.push_back(iy);
    }
  }
  const int64_t work = (static_cast<int64_t>(rows_used.size()) + out_h) * out_w * 4;
  at::parallel_for(0, planes, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<T> rows(in_h * out_w);
    resize_planes(in, out, rows.data(), begin, end, tx, ty, rows_used, in_h, in_w, out_h, out_w);
  });
}

// channels_last: per (n, output row), the four tap rows interpolated along x (vector loops
// over the contiguous channels) are kept in a 4-slot cache, so consecutive output rows of a
// chunk reuse them, then combined along y over the whole row (out_w * C contiguous values).
template <typename T>
void resize_channels_last(const T* in, T* out, int64_t batch, int64_t channels, int64_t in_h,
                          int64_t in_w, int64_t out_h, int64_t out_w) {
  const AxisTaps<T> tx = axis_taps<T>(in_w, out_w);
  const AxisTaps<T> ty = axis_taps<T>(in_h, out_h);
  const int64_t row_len = out_w * channels;
  at::parallel_for(0, batch * out_h, grain_for(row_len * 8), [&](int64_t begin, int64_t end) {
    std::vector<T> slots(4 * row_len);
    int64_t slot_key[4] = {-1, -1, -1, -1};  // n * in_h + iy held by each slot
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / out_h;
      const int64_t y = item % out_h;
      int64_t keys[4];
      for (int k = 0; k < 4; ++k) keys[k] = n * in_h + ty.index[k * out_h + y];
      const T* tap_row[4];
      for (int k = 0; k < 4; ++k) {
        int s = 0;
        while (s < 4 && slot_key[s] != keys[k]) ++s;
        if (s == 4) {
          // At most three other needed rows are cached, so some slot holds none of them.
          s = 0;
          while (std::find(keys, keys + 4, slot_key[s]) != keys + 4) ++s;
          slot_key[s] = keys[k];
          T* dst = slots.data() + s * row_len;
          const T* src = in + keys[k] * in_w * channels;
          for (int64_t x = 0; x < out_w; ++x) {
            const auto col = [&](int j) { return src + tx.index[j * out_w + x] * channels; };
            const auto w = [&](int j) { return tx.weight[j * out_w + x]; };
            combine4(dst + x * channels, col(0), col(1), col(2), col(3), w(0), w(1), w(2), w(3),
                     channels);
          }
        }
        tap_row[k] = slots.data() + s * row_len;
      }
      const auto w = [&](int k) { return ty.weight[k * out_h + y]; };
      combine4(out + item * row_len, tap_row[0], tap_row[1], tap_row[2], tap_row[3], w(0), w(1),
               w(2), w(3), row_len);
    }
  });
}

// NCHW adjoint, per plane: the transposed y pass (grad rows scattered onto in_h rows of a
// buffer), then the transposed x pass (scalar scatter, as clamped taps collide).
template <typename T>
void resize_backward_nchw(const T* grad, T* out, int64_t planes, int64_t in_h, int64_t in_w,
                          int64_t out_h, int64_t out_w) {
  const AxisTaps<T> tx = axis_taps<T>(in_w, out_w);
  const AxisTaps<T> ty = axis_taps<T>(in_h, out_h);
  const int64_t work = (out_h + in_h) * out_w * 4;
  at::parallel_for(0, planes, grain_for(work), [&](int64_t begin, int64_t end) {
    std::vector<T> rows(in_h * out_w);
    for (int64_t p = begin; p < end; ++p) {
      const T* g = grad + p * out_h * out_w;
      T* dst = out + p * in_h * in_w;
      std::fill(rows.begin(), rows.end(), T(0));
      for (int64_t y = 0; y < out_h; ++y) {
        for (int k = 0; k < 4; ++k) {
          axpy(rows.data() + ty.index[k * out_h + y] * out_w, ty.weight[k * out_h + y],
               g + y * out_w, out_w);
        }
      }
      std::fill(dst, dst + in_h * in_w, T(0));
      for (int64_t iy = 0; iy < in_h; ++iy) {
        const T* r = rows.data() + iy * out_w;
        T* d = dst + iy * in_w;
        for (int64_t x = 0; x < out_w; ++x) {
          for (int k = 0; k < 4; ++k) {
            d[tx.index[k * out_w + x]] += tx.weight[k * out_w + x] * r[x];
          }
        }
      }
    }
  });
}

// channels_last adjoint in two race-free passes: per (n, output row) the transposed x pass
// into a buffer (in_w * C values per row), then per (n, input row) a sum of the buffer rows
// whose y taps hit that input row.
template <typename T>
void resize_backward_channels_last(const T* grad, T* out, int64_t batch, int64_t channels,
                                   int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
  const AxisTaps<T> tx = axis_taps<T>(in_w, out_w);
  const AxisTaps<T> ty = axis_taps<T>(in_h, out_h);
  const int64_t in_row = in_w * channels;
  const int64_t out_row = out_w * channels;
  const std::unique_ptr<T[]> rows(new T[batch * out_h * in_row]);  // each row zeroed below
  at::parallel_for(0, batch * out_h, grain_for(out_row * 4), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      T* r = rows.get() + item * in_row;
      const T* g = grad + item * out_row;
      std::fill(r, r + in_row, T(0));
      for (int64_t x = 0; x < out_w; ++x) {
        for (int k = 0; k < 4; ++k) {
          axpy(r + tx.index[k * out_w + x] * channels, tx.weight[k * out_w + x],
               g + x * channels, channels);
        }
      }
    }
  });
  // (output row, weight) pairs per input row, in increasing output row order.
  std::vector<std::vector<std::pair<int64_t, T>>> hits(in_h);
  for (int64_t y = 0; y < out_h; ++y) {
    for (int k = 0; k < 4; ++k) {
      hits[ty.index[k * out_h + y]].emplace_back(y, ty.weight[k * out_h + y]);
    }
  }
  at::parallel_for(0, batch * in_h, grain_for(in_row * 4), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / in_h;
      T* d = out + item * in_row;
      std::fill(d, d + in_row, T(0));
      for (const auto& [y, w] : hits[item % in_h]) {
        axpy(d, w, rows.get() + (n * out_h + y) * in_row, in_row);
      }
    }
  });
}

at::ScalarType compute_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor bicubic_resize_cpu(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  check_resize(x, "x", out_h, out_w, "out_h and out_w");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x must be a CPU tensor, got ", x.device());
  const int64_t batch = x.size(0), channels = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const at::MemoryFormat format = layout_of(x);
  if (in_h == out_h && in_w == out_w) return x.clone(format);
  if (x.numel() == 0) {
    return at::empty({batch, channels, out_h, out_w}, x.options().memory_format(format));
  }
  const at::Tensor xc = x.to(compute_type(x)).contiguous(format);
  at::Tensor out = new_output({batch, channels, out_h, out_w}, xc.options(), format);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "bicubic_resize_cpu", [&] {
    if (format == at::MemoryFormat::ChannelsLast) {
      resize_channels_last(xc.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), batch,
                           channels, in_h, in_w, out_h, out_w);
    } else {
      resize_nchw(xc.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), batch * channels, in_h,
                  in_w, out_h, out_w);
    }
  });
  return out.to(x.scalar_type());
}

at::Tensor bicubic_resize_backward_cpu(const at::Tensor& grad_out, int64_t in_h, int64_t in_w) {
  check_resize(grad_out, "grad_out", in_h, in_w, "in_h and in_w");
  TORCH_CHECK_VALUE(grad_out.device().is_cpu(), "grad_out must be a CPU tensor, got ",
                    grad_out.device());
  const int64_t batch = grad_out.size(0), channels = grad_out.size(1);
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  const at::MemoryFormat format = layout_of(grad_out);
  if (in_h == out_h && in_w == out_w) return grad_out.clone(format);
  if (grad_out.numel() == 0) {
    return at::empty({batch, channels, in_h, in_w}, grad_out.options().memory_format(format));
  }
  const at::Tensor gc = grad_out.to(compute_type(grad_out)).contiguous(format);
  at::Tensor grad_x = new_output({batch, channels, in_h, in_w}, gc.options(), format);
  AT_DISPATCH_FLOATING_TYPES(gc.scalar_type(), "bicubic_resize_backward_cpu", [&] {
    if (format == at::MemoryFormat::ChannelsLast) {
      resize_backward_channels_last(gc.const_data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
                                    batch, channels, in_h, in_w, out_h, out_w);
    } else {
      resize_backward_nchw(gc.const_data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(),
                           batch * channels, in_h, in_w, out_h, out_w);
    }
  });
  return grad_x.to(grad_out.scalar_type());
}

}  // namespace
}  // namespace adaskip

TORCH_LIBRARY_IMPL(adaskip, CPU, m) {
  m.impl("bicubic_resize", &adaskip::bicubic_resize_cpu);
  m.impl("bicubic_resize_backward", &adaskip::bicubic_resize_backward_cpu);
}
