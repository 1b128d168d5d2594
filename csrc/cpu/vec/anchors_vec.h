// The row loop of the CPU anchor grid, compiled once per ISA (csrc/cpu/vec/anchors_vec.cpp)
// and called through DETSEG_ISA_CALL from csrc/cpu/anchors.cpp.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

// out[j] = tmpl[j] + (j odd ? sy : 0) for j < len (len even): one grid row of anchors from the
// row template (x shifts applied) and the row's y shift. Plain IEEE additions: every ISA, and
// the scalar tail, give the same bits.
DETSEG_ISA_DECLARE(void shift_row(const float* tmpl, int64_t len, float sy, float* out))
DETSEG_ISA_DECLARE(void shift_row(const double* tmpl, int64_t len, double sy, double* out))
