// The transition scan of run-length encoding (csrc/cpu/rle.cpp), compiled once per ISA
// (csrc/cpu/vec/rle_scan_vec.cpp) and called through DETSEG_ISA_CALL. Only finds where the
// pixel value changes; turning those positions into pycocotools' runs stays in rle.cpp.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

// Positions j in [0, a) where t[j] != t[j - 1] (t[-1] taken as 0), ascending, into pos
// (capacity a); returns their number, or -1 when a byte of t[0, a) is neither 0 nor 1 (pos is
// then garbage). AVX2 / AVX-512: compare each 32 / 64-byte vector with its one-byte-shifted
// neighbour, movemask, walk the set bits with tzcnt; DEFAULT: the same on 8-byte words.
DETSEG_ISA_DECLARE(int64_t rle_transitions(const uint8_t* t, int64_t a, uint32_t* pos))
// dst[x * h + y] = src[y * w + x]: a row-major mask [h, w] into column-major order (the order
// RLE scans), in 16 x 16 byte tiles transposed in registers (SSE2 byte unpacks).
DETSEG_ISA_DECLARE(void rle_transpose(const uint8_t* src, int64_t h, int64_t w, uint8_t* dst))
