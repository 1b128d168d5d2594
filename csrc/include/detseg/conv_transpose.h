// Geometry of a transposed convolution along one spatial axis (the same formulas on both
// axes), shared by the CPU and CUDA kernels; detseg/triton/conv.py and
// detseg/reference/conv.py mirror it.
//
// Input position i reaches output position o = i * stride - pad + t * dil through kernel tap
// t in [0, k). The scatter form (CPU: GEMM then col2im) walks (i, t); the gather form (CUDA,
// Triton) walks the taps t of one output o and keeps those with (o + pad - t * dil) divisible
// by stride and the quotient in [0, in).
#pragma once

#include <cstdint>

#include "detseg/host_device.h"

namespace detseg {

// (in - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1 (torch.nn.ConvTranspose2d).
DETSEG_HOST_DEVICE int64_t conv_transpose_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad,
                                                   int64_t dil, int64_t out_pad) {
  return (in - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1;
}

// Floor / ceiling of a / b for b > 0 and any sign of a.
DETSEG_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
DETSEG_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// The inputs i in [0, in) that tap t sends into outputs [o0, o1): [*lo, *hi) (empty: lo >= hi).
DETSEG_HOST_DEVICE void conv_transpose_tap_inputs(int64_t t, int64_t o0, int64_t o1, int64_t in, int64_t stride,
                                                  int64_t pad, int64_t dil, int64_t* lo, int64_t* hi) {
  const int64_t off = pad - t * dil;  // i * stride = o + off
  int64_t a = ceil_div(o0 + off, stride);
  int64_t b = floor_div(o1 - 1 + off, stride) + 1;
  *lo = a < 0 ? 0 : a;
  *hi = b > in ? in : b;
}

// The inputs that reach any of outputs [o0, o1) through some tap: [*lo, *hi).
DETSEG_HOST_DEVICE void conv_transpose_band_inputs(int64_t o0, int64_t o1, int64_t in, int64_t k, int64_t stride,
                                                   int64_t pad, int64_t dil, int64_t* lo, int64_t* hi) {
  int64_t a = ceil_div(o0 + pad - (k - 1) * dil, stride);
  int64_t b = floor_div(o1 - 1 + pad, stride) + 1;
  *lo = a < 0 ? 0 : a;
  *hi = b > in ? in : b;
}

// Gather form: the input of output o through tap t, or -1 when the tap does not land there.
DETSEG_HOST_DEVICE int64_t conv_transpose_tap_source(int64_t o, int64_t t, int64_t in, int64_t stride, int64_t pad,
                                                     int64_t dil) {
  const int64_t u = o + pad - t * dil;
  if (u < 0 || u % stride != 0) return -1;
  const int64_t i = u / stride;
  return i < in ? i : -1;
}

// Each output receives at most one tap (a pure rearrangement of the GEMM columns: U-Net and
// Mask R-CNN's kernel-2 stride-2 upsampling) when the kernel's footprint fits in one stride.
DETSEG_HOST_DEVICE bool conv_transpose_non_overlapping(int64_t k, int64_t stride, int64_t dil) {
  return (k - 1) * dil < stride;
}

}  // namespace detseg
