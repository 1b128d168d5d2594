// Register-blocked rows of the sub-pixel transposed convolution (the "phase_direct" path of
// csrc/cpu/conv_transpose.cpp), compiled once per ISA (csrc/cpu/vec/conv_phase_vec.cpp) and
// called through DETSEG_ISA_CALL.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {
// Output columns are computed in panels of this many lanes (a block of `stride` columns spans
// ceil(stride / kConvPhasePanel) panels; lanes past the stride are computed and not stored).
constexpr int64_t kConvPhasePanel = 16;
}  // namespace detseg::cpu

// One output row of `wo` columns as M blocks of `np` panels: lane l of block m is column
// m * sw + l - c0 (stored when l < sw and the column lies in [0, wo)), and equals
//   bias + sum over k in [0, K) of a[k * lda + m] * b[k][l],
// accumulated in k order from the bias (one multiply-add per k on AVX2 / AVX-512, a multiply
// then an add on DEFAULT and for float64). Each row b[k] holds np * kConvPhasePanel readable
// values (64-byte aligned runs load fastest). `stream`: whole aligned vectors are stored with
// non-temporal stores (outputs much larger than the caches; call conv_phase_fence before other
// threads read them).
DETSEG_ISA_DECLARE(void conv_phase_row(float* orow, int64_t wo, int64_t sw, int64_t c0, int64_t M, int64_t np,
                                       const float* a, int64_t lda, const float* const* b, int64_t K,
                                       float bias, bool stream))
DETSEG_ISA_DECLARE(void conv_phase_row(double* orow, int64_t wo, int64_t sw, int64_t c0, int64_t M, int64_t np,
                                       const double* a, int64_t lda, const double* const* b, int64_t K,
                                       double bias, bool stream))

// dst[w * C + c] = src[c * W + w]: C rows of W values interleaved into one channels-last row.
DETSEG_ISA_DECLARE(void conv_interleave(float* dst, const float* src, int64_t C, int64_t W))
DETSEG_ISA_DECLARE(void conv_interleave(double* dst, const double* src, int64_t C, int64_t W))
// Orders this thread's streamed stores before what follows (the end of a parallel region).
DETSEG_ISA_DECLARE(void conv_phase_fence())
