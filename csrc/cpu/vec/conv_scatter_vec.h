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

// One output row of the general forward, finished in registers: orow[x] = (start ? bias :
// orow[x]) + the taps t = 0 .. ntaps - 1 in order, tap t adding src[t][j] at x = first[t] + j * stride
// for j < count[t] (first[t] + (count[t] - 1) * stride < wo). The same additions in the same order as
// a fill followed by conv_scatter_add per tap, so the results are bitwise those.
DETSEG_ISA_DECLARE(void conv_row_taps(float* orow, int64_t wo, bool start, float bias, int ntaps,
                                      const float* const* src, const int64_t* first, const int64_t* count,
                                      int64_t stride))
DETSEG_ISA_DECLARE(void conv_row_taps(double* orow, int64_t wo, bool start, double bias, int ntaps,
                                      const double* const* src, const int64_t* first, const int64_t* count,
                                      int64_t stride))

// out[2 i] = s0[i] + bias, out[2 i + 1] = s1[i] + bias for i < n: a kernel-2 stride-2 output row
// (the non-overlapping forward's interleave).
DETSEG_ISA_DECLARE(void conv_interleave2(float* out, const float* s0, const float* s1, int64_t n, float bias))
DETSEG_ISA_DECLARE(void conv_interleave2(double* out, const double* s0, const double* s1, int64_t n, double bias))
