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

// Eight floats as one value (GCC/Clang vector extension): explicit SIMD that each clone lowers
// to its own ISA (one AVX register, or two SSE registers).
typedef float float8 __attribute__((vector_size(32)));
typedef int32_t int8x __attribute__((vector_size(32)));

ADASKIP_INLINE float8 load8(const float* p) {
  float8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

ADASKIP_INLINE void store8(float* p, float8 v) { std::memcpy(p, &v, sizeof(v)); }

ADASKIP_INLINE float8 splat8(float v) { return float8{v, v, v, v, v, v, v, v}; }

// exp(x) to about 2 ulp: Cody-Waite reduction x = n ln2 + r, a degree-6 polynomial for e^r,
// and 2^n built in the exponent bits. Branch-free, for float and float8 alike (std::exp and
// loops calling it do not vectorise).
template <typename T>
ADASKIP_INLINE T exp_polynomial(T r) {
  T p = r * (1.0f / 720.0f) + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2High = 0.693145751953125f, kLn2Low = 1.42860682030941723e-6f;

ADASKIP_INLINE float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = (x * kLog2e + kShifter) - kShifter;
  const float r = (x - n * kLn2High) - n * kLn2Low;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return exp_polynomial(r) * scale;
}

ADASKIP_INLINE float8 exp_approx(float8 x) {
  x = x < -87.0f ? splat8(-87.0f) : x;
  x = x > 88.0f ? splat8(88.0f) : x;
  const float8 n = (x * kLog2e + kShifter) - kShifter;
  const float8 r = (x - n * kLn2High) - n * kLn2Low;
  const int8x bits = (__builtin_convertvector(n, int8x) + 127) << 23;
  float8 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return exp_polynomial(r) * scale;
}

// silu(z) = z * sigmoid(z) = z / (1 + exp(-z)): one division.
template <typename T>
ADASKIP_INLINE T silu_approx(T z) {
  return z / (exp_approx(-z) + 1.0f);
}

}  // namespace adaskip
