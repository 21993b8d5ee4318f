// Which clone of the ADASKIP_VECTORIZE kernels runs on this CPU, decided as GCC's target_clones
// resolver decides: the first clone, in priority order, whose ISA the CPU (and OS) supports.
#include "cpu/vec_math.h"

namespace adaskip {

const char* cpu_isa() {
#if ADASKIP_CLONES == 3
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA)";
  return "baseline x86-64";
#elif ADASKIP_CLONES == 2
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") ? "AVX2" : "baseline x86-64";
#else
  return "not cloned (compiler default)";
#endif
}

}  // namespace adaskip
