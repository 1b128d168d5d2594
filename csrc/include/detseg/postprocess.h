// Score activations of the fused post-processing (multiclass_nms), one statement for every
// backend (mirrored in python/detseg/reference/postprocess.py). exp is the C library's
// (detseg::dexp), so that the kernel can evaluate an activation only where it is needed (a
// candidate), not on the whole [B, N, C] tensor, and still agree with the reference bitwise.
#pragma once

#include <cstdint>

#include "detseg/box_coder.h"
#include "detseg/host_device.h"

namespace detseg {

// 1 / (1 + exp(-x)); NaN stays NaN.
template <typename T>
DETSEG_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + dexp(-x));
}

// Softmax of one row of c scores: m = max (NaN-propagating, as torch.max), e_k = exp(x_k - m),
// s = e_0 + e_1 + ... in class order, out_k = e_k / s.
template <typename T>
DETSEG_HOST_DEVICE void softmax_row(const T* x, int64_t c, T* out) {
  T m = x[0];
  for (int64_t k = 1; k < c; ++k) {
    if (m == m && !(x[k] <= m)) m = x[k];
  }
  T s = T(0);
  for (int64_t k = 0; k < c; ++k) {
    out[k] = dexp(x[k] - m);
    s = s + out[k];
  }
  for (int64_t k = 0; k < c; ++k) out[k] = out[k] / s;
}

}  // namespace detseg
