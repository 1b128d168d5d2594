// Helpers shared by the CPU RoI kernels (roi_align.cpp, roi_pool.cpp).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
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

inline int64_t by_batch_total(const std::vector<std::vector<int64_t>>& by_batch) {
  int64_t n = 0;
  for (const auto& v : by_batch) n += static_cast<int64_t>(v.size());
  return n;
}

// For NCHW input, whether to transpose it to channels-last first and run the channel-inner
// loop: the copy costs ~N*H*W*C, the NCHW loop pays a strided gather per sample and channel
// (5x slower per sample on the box-head workload). Both loops give the same bits.
inline bool roi_prefer_nhwc(int64_t k, int64_t ph, int64_t pw, int64_t n, int64_t h, int64_t w) {
  return k * ph * pw * 16 >= n * h * w;
}

// parallel_for grain for items of `per_item` work units (~ one bilinear sample each): tiny
// problems stay on the calling thread, where starting the pool costs more than the work.
inline int64_t roi_grain(int64_t per_item) {
  constexpr int64_t kWork = 1 << 14;
  return std::max<int64_t>(1, kWork / std::max<int64_t>(1, per_item));
}

}  // namespace detseg::cpu
