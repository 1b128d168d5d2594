// Bit packing of binary masks and the popcount of a pair's intersection (csrc/cpu/masks.cpp),
// compiled once per ISA (csrc/cpu/vec/mask_pack_vec.cpp) and called through DETSEG_ISA_CALL:
// the AVX2 / AVX-512 builds turn 32 / 64 bytes into a word with one compare and use the popcnt
// instruction (the DEFAULT build has neither).
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {

// What packing one mask learns on the way: its area (nonzero pixels), its tight box with
// inclusive ends (x0 > x1 when empty) and the OR of all its bytes (> 1: not a 0 / 1 mask).
struct PackedMask {
  int64_t area;
  int64_t x0, y0, x1, y1;
  uint8_t or_bytes;
};

}  // namespace detseg::cpu

// src: one mask [h, w] of bytes (nonzero = inside); dst: [h, ww] words, ww = ceil(w / 64),
// bit k of word j of a row = pixel 64 j + k; tail bits 0. col_or: scratch of ww words.
DETSEG_ISA_DECLARE(void pack_mask(const uint8_t* src, int64_t h, int64_t w, uint64_t* dst, int64_t ww,
                                  uint64_t* col_or, ::detseg::cpu::PackedMask* out))
// popcount of a & b over rows [y0, y1] and words [w0, w1] (inclusive) of two packed masks.
DETSEG_ISA_DECLARE(int64_t packed_intersection(const uint64_t* a, const uint64_t* b, int64_t ww, int64_t y0,
                                               int64_t y1, int64_t w0, int64_t w1))
