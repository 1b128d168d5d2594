// Helpers shared by the CPU RoI kernels (roi_align.cpp, roi_pool.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace detseg::cpu {

// RoIs are read in the compute type of the data (float64 for float64, float32 otherwise),
// whatever their own floating dtype: float16 boxes would lose whole pixels.
inline at::Tensor roi_rows(const at::Tensor& rois, at::ScalarType data_type) {
  const at::ScalarType t = data_type == at::kDouble ? at::kDouble : at::kFloat;
  return rois.to(t).contiguous();
}

// RoI indices of each batch element, in RoI order: the fixed order in which a backward task
// accumulates into its gradient plane. Batch indices are checked beforehand.
template <typename acc_t>
std::vector<std::vector<int64_t>> rois_by_batch(const acc_t* rois, int64_t k, int64_t n) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < k; ++i) out[static_cast<size_t>(rois[5 * i])].push_back(i);
  return out;
}

}  // namespace detseg::cpu
