// Bicubic interpolation exactly as ATen's upsample_bicubic2d (align_corners=False):
// A = -0.75, source index scale * (dst + 0.5) - 0.5 (not clamped), taps clamped to [0, in - 1].
#pragma once
#include <c10/macros/Macros.h>
#include <cmath>
#include <cstdint>

namespace adaskip {

constexpr float kCubicA = -0.75f;

// Scale from output to input coordinates when only sizes are given (F.interpolate(size=...)).
inline float bicubic_scale(int64_t in_size, int64_t out_size) {
  return static_cast<float>(in_size) / static_cast<float>(out_size);
}

// The four taps and weights for output coordinate dst along one axis.
struct CubicTaps {
  int64_t index[4];
  float weight[4];
};

C10_HOST_DEVICE inline CubicTaps cubic_taps(float scale, int64_t dst, int64_t in_size) {
  const float real = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  const float floor_real = floorf(real);
  const float t = real - floor_real;
  const int64_t base = static_cast<int64_t>(floor_real);
  CubicTaps taps;
  const float x1 = t + 1.0f;  // |x| in (1, 2): ((A x - 5A) x + 8A) x - 4A
  taps.weight[0] = ((kCubicA * x1 - 5.0f * kCubicA) * x1 + 8.0f * kCubicA) * x1 - 4.0f * kCubicA;
  // |x| <= 1: ((A + 2) x - (A + 3)) x^2 + 1
  taps.weight[1] = ((kCubicA + 2.0f) * t - (kCubicA + 3.0f)) * t * t + 1.0f;
  const float u = 1.0f - t;
  taps.weight[2] = ((kCubicA + 2.0f) * u - (kCubicA + 3.0f)) * u * u + 1.0f;
  const float u1 = u + 1.0f;
  taps.weight[3] = ((kCubicA * u1 - 5.0f * kCubicA) * u1 + 8.0f * kCubicA) * u1 - 4.0f * kCubicA;
  for (int k = 0; k < 4; ++k) {
    const int64_t i = base - 1 + k;
    taps.index[k] = i < 0 ? 0 : (i > in_size - 1 ? in_size - 1 : i);
  }
  return taps;
}

}  // namespace adaskip
