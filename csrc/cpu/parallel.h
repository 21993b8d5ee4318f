// Grain sizes for at::parallel_for: small tensors stay on one thread (spawning costs more than
// the work), large ones split into chunks of about at::internal::GRAIN_SIZE elements.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace adaskip {

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, work_per_item));
}

}  // namespace adaskip
