// Helpers shared by the box-family CUDA files (boxes.cu, box_iou.cu): loading a box into
// the op-math type, torch's per-op rounding, and output dtypes / layouts.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include "detseg/boxes.h"

namespace detseg::cuda {

template <typename acc_t, typename scalar_t>
__device__ __forceinline__ Box<acc_t> load_box(const scalar_t* p) {
  return {static_cast<acc_t>(p[0]), static_cast<acc_t>(p[1]), static_cast<acc_t>(p[2]),
          static_cast<acc_t>(p[3])};
}

// Round an op-math value to the storage dtype and back (identity for float / double).
template <typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> rnd(at::opmath_type<scalar_t> x) {
  return static_cast<at::opmath_type<scalar_t>>(static_cast<scalar_t>(x));
}

// Outputs whose fake kernel is empty_like(input) must carry the input's strides; the
// kernels write contiguous buffers, so copy only when the layouts differ.
inline at::Tensor like_input(const at::Tensor& contiguous_result, const at::Tensor& input) {
  if (input.is_contiguous()) return contiguous_result;
  return at::empty_like(input, contiguous_result.options()).copy_(contiguous_result);
}

inline at::ScalarType compute_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace detseg::cuda
