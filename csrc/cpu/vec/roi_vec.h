// Channel-inner loops of the channels-last RoI kernels (csrc/cpu/roi_align.cpp, roi_pool.cpp), compiled
// once per ISA (csrc/cpu/vec/roi_vec.cpp) and called through DETSEG_ISA_CALL. Plain
// pointers; float32 only (the other dtypes keep the generic loop, which gives the same bits).
#pragma once

#include <cstdint>

#include "cpu/isa.h"

// acc[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c]   (detseg::bilinear_value's order)
DETSEG_ISA_DECLARE(void roi_bilinear_accumulate(float* acc, const float* p1, const float* p2, const float* p3,
                                                const float* p4, float w1, float w2, float w3, float w4, int64_t n))
// dst[c] += g[c] * w / count   (the backward's per-corner update)
DETSEG_ISA_DECLARE(void roi_scatter_corner(float* dst, const float* g, float w, float count, int64_t n))
// One pixel of a roi_pool bin: for each channel, px[c] replaces best[c] (and pos am[c]) under
// detseg::pool_takes with first = false. int32 positions keep the lanes as wide as the floats.
DETSEG_ISA_DECLARE(void roi_pool_max_update(float* best, int32_t* am, const float* px, int32_t pos, int64_t n))
// One RoI over a channel block of kRoiPoolBlock channels of a channel-blocked plane
// bp[H * W][kRoiPoolBlock]: for bin (p, q) = rows [hr[2p], hr[2p+1]) x columns [wr[2q], wr[2q+1]),
// each channel's first maximum under detseg::pool_takes (scan order h, then w) and its position
// h * W + w; an empty bin gives 0 and -1. best, am: [ph * pw][kRoiPoolBlock].
constexpr int kRoiPoolBlock = 16;
DETSEG_ISA_DECLARE(void roi_pool_block(const float* bp, int64_t W, const int64_t* hr, const int64_t* wr, int ph, int pw,
                                       float* best, int32_t* am))
// Fills the channel-blocked buffer dst[HW][kRoiPoolBlock] from nc <= kRoiPoolBlock channel
// planes src[nc][HW] (channels nc.. of the block are zero).
DETSEG_ISA_DECLARE(void roi_pool_block_fill(const float* src, int64_t HW, int64_t nc, float* dst))
