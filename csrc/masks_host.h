// Host-side preparation of paste_masks_in_image shared by the CPU (csrc/cpu/masks.cpp) and CUDA
// (csrc/cuda/masks.cu) kernels: torch-only, no at::parallel_for and no CUDA headers, so g++ and
// nvcc both compile it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "checks.h"

namespace detseg {

// Checked arguments of paste_masks_in_image: masks and boxes in the compute type st (float64
// for float64, float32 otherwise), contiguous. The result is bool with a threshold, else the
// masks' dtype; half / bfloat16 masks are computed in float32 and rounded once at the end
// (narrow: the kernel writes st, finish() converts).
struct PasteMasksArgs {
  checks::PasteConvention conv;
  at::ScalarType st, out_dt;
  bool narrow;
  at::Tensor m, b;  // [N, M, M], [N, 4] in st
  int64_t n;
  at::ScalarType kernel_dtype() const { return narrow ? st : out_dt; }
  at::Tensor finish(const at::Tensor& out) const { return narrow ? out.to(out_dt) : out; }
};

inline PasteMasksArgs paste_masks_args(const at::Tensor& masks, const at::Tensor& boxes, int64_t height,
                                       int64_t width, int64_t padding, std::string_view convention,
                                       const std::optional<double>& threshold) {
  PasteMasksArgs a;
  a.conv = checks::paste_masks(masks, boxes, height, width, padding, convention);
  a.st = masks.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  a.m = masks.to(a.st).contiguous();
  a.b = boxes.to(a.st).contiguous();
  a.n = a.m.size(0);
  a.out_dt = threshold.has_value() ? at::kBool : masks.scalar_type();
  a.narrow = !threshold.has_value() && a.out_dt != a.st;
  return a;
}

}  // namespace detseg
