// Argument checks of the RLE and COCO evaluation (issues 6 and 7).
#pragma once

#include "checks/common.h"

namespace detseg::checks {

// Runs of a batch of RLEs: counts int64 Tensor[total] (each in [0, 2^32)), offsets int64
// Tensor[N + 1] from 0 to total, non-decreasing. Returns N.
inline int64_t rle_runs(const char* op, const char* prefix, const at::Tensor& counts, const at::Tensor& offsets) {
  TORCH_CHECK_VALUE(counts.dim() == 1, "detseg.", op, ": ", prefix, "counts must be a Tensor[total], got shape ",
              counts.sizes());
  TORCH_CHECK_TYPE(counts.scalar_type() == at::kLong, "detseg.", op, ": ", prefix,
              "counts must be an int64 tensor, got ", counts.scalar_type());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.size(0) >= 1, "detseg.", op, ": ", prefix,
              "offsets must be a Tensor[N + 1], got shape ", offsets.sizes());
  TORCH_CHECK_TYPE(offsets.scalar_type() == at::kLong, "detseg.", op, ": ", prefix,
              "offsets must be an int64 tensor, got ", offsets.scalar_type());
  TORCH_CHECK_VALUE(counts.device().is_cpu() && offsets.device().is_cpu(), "detseg.", op, ": ", prefix,
              "counts and offsets must be CPU tensors (run-length coding is sequential per mask), got ",
              counts.device());
  return offsets.size(0) - 1;
}

inline void rle_sizes(const char* op, const char* arg, const at::Tensor& sizes, int64_t n) {
  TORCH_CHECK_VALUE(sizes.dim() == 2 && sizes.size(0) == n && sizes.size(1) == 2, "detseg.", op, ": ", arg,
              " must be a Tensor[", n, ", 2] of (height, width), got shape ", sizes.sizes());
  TORCH_CHECK_TYPE(sizes.scalar_type() == at::kLong, "detseg.", op, ": ", arg, " must be an int64 tensor, got ",
              sizes.scalar_type());
}

inline void rle_masks(const char* op, const at::Tensor& masks) {
  TORCH_CHECK_VALUE(masks.dim() == 3, "detseg.", op, ": masks must be a Tensor[N, H, W], got shape ", masks.sizes());
  TORCH_CHECK_TYPE(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte, "detseg.", op,
              ": masks must be a bool or uint8 tensor, got ", masks.scalar_type());
  TORCH_CHECK_VALUE(masks.device().is_cpu(), "detseg.", op, ": masks must be a CPU tensor, got ", masks.device());
  TORCH_CHECK_VALUE(masks.size(1) * masks.size(2) < (int64_t(1) << 32), "detseg.", op,
              ": masks must have fewer than 2^32 pixels each (pycocotools' uint32 runs), got ", masks.size(1), " x ",
              masks.size(2));
}

}  // namespace detseg::checks
