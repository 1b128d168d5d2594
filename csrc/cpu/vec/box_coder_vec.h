// Vectorised decode_boxes loop (one reference box per delta, K = 1), compiled once per ISA
// (csrc/cpu/vec/box_coder_vec.cpp) and called through DETSEG_ISA_CALL from
// csrc/cpu/box_coder.cpp. Plain pointers: the host side owns the tensors.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {

template <typename T>
struct DecodeArgs {
  const T* deltas;  // [n, 4] contiguous
  const T* boxes;   // [n, 4] contiguous
  T* out;           // [n, 4]
  T wx, wy, ww, wh, clip;
};

}  // namespace detseg::cpu

// Decodes boxes [i0, i1). Every box goes through the same vector code, the last partial
// vector included (padded), so the result of a box never depends on how the range is split.
DETSEG_ISA_DECLARE(void decode_boxes_k1(const ::detseg::cpu::DecodeArgs<float>& a, int64_t i0, int64_t i1))
DETSEG_ISA_DECLARE(void decode_boxes_k1(const ::detseg::cpu::DecodeArgs<double>& a, int64_t i0, int64_t i1))
