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

namespace detseg::cpu {

template <typename T>
struct YoloArgs {
  const T* pred;     // [cells, P] contiguous, cells = N * H * W
  const T* anchors;  // [B, 2]
  T* out;            // [cells, B, 5]
  int64_t P, B, H, W;
  T stride_h, stride_w;
};

}  // namespace detseg::cpu

// Decodes cells [c0, c1): lanes over cells, one anchor at a time (detseg::yolo_decode_one with
// vector T); a partial last vector goes through the same code, padded.
DETSEG_ISA_DECLARE(void yolo_cells(const ::detseg::cpu::YoloArgs<float>& a, int64_t c0, int64_t c1))
DETSEG_ISA_DECLARE(void yolo_cells(const ::detseg::cpu::YoloArgs<double>& a, int64_t c0, int64_t c1))
