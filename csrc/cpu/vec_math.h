// Helpers for CPU inner loops written as plain arithmetic on raw pointers, so that the compiler
// vectorises them. Functions marked ADASKIP_VECTORIZE are compiled twice (AVX2+FMA and the
// baseline ISA) and the right clone is picked at load time; the extension still runs on any
// x86-64 CPU.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// x86-64-v3 = AVX2 + FMA on any vendor ("arch=haswell" would not be picked on AMD CPUs).
#if __GNUC__ >= 12
#define ADASKIP_VECTORIZE __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ADASKIP_VECTORIZE __attribute__((target_clones("avx2", "default")))
#endif
// GCC inlines a helper into a clone only when forced: the clone's arch differs from the helper's.
#define ADASKIP_INLINE inline __attribute__((always_inline))
#else
#define ADASKIP_VECTORIZE
#define ADASKIP_INLINE inline
#endif

namespace adaskip {

// exp(x) in float to about 2 ulp (Cody-Waite reduction, degree-6 polynomial), branch-free so
// that loops calling it vectorise; std::exp does not.
ADASKIP_INLINE float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// silu(z) = z * sigmoid(z) = z / (1 + exp(-z)): one division.
ADASKIP_INLINE float silu_approx(float z) { return z / (1.0f + exp_approx(-z)); }

}  // namespace adaskip
