// Scatter-add of the transposed convolution's col2im and the gather of its backward's im2col (csrc/cpu/conv_transpose.cpp), compiled
// once per ISA (csrc/cpu/vec/conv_scatter_vec.cpp) and called through DETSEG_ISA_CALL.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

// out[j * stride] += src[j] for j in [0, n): one kernel tap's row landing on an output row.
DETSEG_ISA_DECLARE(void conv_scatter_add(float* out, const float* src, int64_t n, int64_t stride))
DETSEG_ISA_DECLARE(void conv_scatter_add(double* out, const double* src, int64_t n, int64_t stride))

// dst[j] = src[j * stride] for j in [0, n): the backward's im2col of one tap row.
DETSEG_ISA_DECLARE(void conv_gather(float* dst, const float* src, int64_t n, int64_t stride))
DETSEG_ISA_DECLARE(void conv_gather(double* dst, const double* src, int64_t n, int64_t stride))
