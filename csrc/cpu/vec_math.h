// Helpers for CPU inner loops written as plain arithmetic on raw pointers, so that the compiler
// vectorises them. Functions marked ADASKIP_VECTORIZE are compiled three times (AVX-512, AVX2+FMA
// and the baseline ISA) and the right clone is picked at load time; the extension still runs on
// any x86-64 CPU. cpu_isa() (isa.cpp) names the clone this CPU runs.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// The x86-64 micro-architecture levels select by feature on any vendor ("arch=haswell" would not
// be picked on AMD CPUs): v4 = AVX-512 F/BW/CD/DQ/VL, v3 = AVX2 + FMA.
#if __GNUC__ >= 12
#define ADASKIP_CLONES 3
#define ADASKIP_VECTORIZE \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ADASKIP_CLONES 2
#define ADASKIP_VECTORIZE __attribute__((target_clones("avx2", "default")))
#endif
// GCC inlines a helper into a clone only when forced: the clone's arch differs from the helper's.
#define ADASKIP_INLINE inline __attribute__((always_inline))
#else
#define ADASKIP_CLONES 0
#define ADASKIP_VECTORIZE
#define ADASKIP_INLINE inline
#endif

namespace adaskip {

// The clone this CPU runs: "x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2+FMA)" or "baseline x86-64".
const char* cpu_isa();

// 8 and 16 floats as one value (GCC/Clang vector extension): explicit SIMD that each clone
// lowers to its own ISA. The loops are templates on the width and run 16 floats (one zmm
// register) in the AVX-512 clone, 8 (one ymm register, or two SSE ones) in the others: 16 would
// not fit AVX2's sixteen registers (the exp spills; measured slower than 8).
typedef float float8v __attribute__((vector_size(32)));
typedef int32_t int8v __attribute__((vector_size(32)));
typedef uint32_t uint8v __attribute__((vector_size(32)));
typedef float float16v __attribute__((vector_size(64)));
typedef int32_t int16v __attribute__((vector_size(64)));
typedef uint32_t uint16v __attribute__((vector_size(64)));

// The int32 and uint32 types of a float type's shape (scalar or vector).
template <typename T>
struct IntsOf;
template <>
struct IntsOf<float> {
  using Signed = int32_t;
  using Unsigned = uint32_t;
};
template <>
struct IntsOf<float8v> {
  using Signed = int8v;
  using Unsigned = uint8v;
};
template <>
struct IntsOf<float16v> {
  using Signed = int16v;
  using Unsigned = uint16v;
};

template <typename V>
constexpr int64_t kLanes = sizeof(V) / sizeof(float);

// True on the CPUs whose kernels are the AVX-512 clone: GCC's resolver picks that clone exactly
// when the CPU supports x86-64-v4, so a clone calls the 16-float loops only if it is that clone.
inline bool wide_vectors() {
#if ADASKIP_CLONES == 3
  static const bool wide = (__builtin_cpu_init(), __builtin_cpu_supports("x86-64-v4"));
  return wide;
#else
  return false;
#endif
}

template <typename V>
ADASKIP_INLINE V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename V>
ADASKIP_INLINE void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

// Bit casts between the float and int32 views of one value (scalar or vector).
template <typename To, typename From>
ADASKIP_INLINE To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  std::memcpy(&out, &v, sizeof(out));
  return out;
}

// e^r for |r| <= ln2 / 2: a degree-5 minimax polynomial (relative error 7.5e-8, 2.1e-7 with
// float rounding; as accurate as the degree-6 Taylor series, one FMA fewer).
template <typename T>
ADASKIP_INLINE T exp_polynomial(T r) {
  T p = r * 8.297654800e-03f + 4.191538319e-02f;
  p = p * r + 1.666757464e-01f;
  p = p * r + 4.999889433e-01f;
  p = p * r + 9.999997020e-01f;
  return p * r + 1.000000119e+00f;
}

constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
constexpr int32_t kShifterBits = 0x4B400000;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2High = 0.693145751953125f, kLn2Low = 1.42860682030941723e-6f;

// Integer minimum, scalar or vector: GCC emits (v)pminsd / (v)pminud for it. A float minimum
// compiles to a compare and a blend under IEEE semantics.
template <typename I>
ADASKIP_INLINE I min_int(I a, I b) {
  return a < b ? a : b;
}

// x clamped to [-87, 88] (where e^x stays a normal float) through its bits, two integer
// minimums: as unsigned integers negative floats sit above all positive ones and grow with their
// magnitude; as signed integers they are negative, and positive floats order by value. NaN
// clamps too; the callers keep it, through z in silu's numerator and derivative.
template <typename T, typename I = typename IntsOf<T>::Signed,
          typename U = typename IntsOf<T>::Unsigned>
ADASKIP_INLINE T clamp_exp_argument(T x) {
  const U below = min_int(bit_cast<U>(x), U{} + bit_cast<uint32_t>(-87.0f));
  return bit_cast<T>(min_int(bit_cast<I>(below), I{} + bit_cast<int32_t>(88.0f)));
}

// exp(x) to about 3 ulp: Cody-Waite reduction x = n ln2 + r, the polynomial for e^r, and 2^n
// built in the exponent bits. x log2(e) + 1.5 * 2^23 holds n in its low mantissa bits, so read
// as an integer it gives 2^n's exponent field without a float-to-int conversion. Branch-free,
// for float and vectors alike (std::exp and loops calling it do not vectorise).
template <typename T, typename I = typename IntsOf<T>::Signed>
ADASKIP_INLINE T exp_approx(T x) {
  x = clamp_exp_argument(x);
  const T shifted = x * kLog2e + kShifter;
  const T n = shifted - kShifter;
  const T r = (x - n * kLn2High) - n * kLn2Low;
  const I exponent = (bit_cast<I>(shifted) - (kShifterBits - 127)) << 23;
  return exp_polynomial(r) * bit_cast<T>(exponent);
}

// silu(z) = z * sigmoid(z) = z / (1 + exp(-z)): one division (on AVX-512 cheaper than a
// reciprocal estimate refined by Newton steps in portable code, measured).
template <typename T>
ADASKIP_INLINE T silu_approx(T z) {
  return z / (exp_approx(-z) + 1.0f);
}

}  // namespace adaskip
