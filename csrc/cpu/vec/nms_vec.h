// Per-ISA inner loop of greedy NMS (csrc/cpu/vec/nms_vec.cpp, compiled once per ISA; the
// host side, csrc/cpu/nms.cpp, sorts, gathers and lays the boxes out).
//
// Layout: the m boxes of one NMS problem that can take part in a suppression are stored in
// blocks of kNmsBlock slots (x1, y1, x2, y2, area; each a run of kNmsBlock values), in a
// spatially coherent order, each block with the bounding box of its members. `alive` holds
// one bit per slot still in play. A kept box only visits blocks whose bounding box overlaps
// it: a pair with no positive overlap has IoU 0 (or NaN) and never suppresses, so skipping
// it changes no decision. Every pair that is visited goes through detseg::nms_suppresses
// itself (csrc/include/detseg/nms.h), which the compiler vectorises across a block.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {

inline constexpr int kNmsBlock = 16;
// Block bounding boxes are scanned kNmsBlock blocks at a time.
inline constexpr int kNmsChunk = 16;

template <typename T>
struct NmsBlocks {
  T* blocks;         // [nb][5][kNmsBlock]: x1, y1, x2, y2, area per slot
  T* bbox;           // [4][nbp]: min x1, min y1, max x2, max y2 per block; NaN once a block is empty
  uint32_t* alive;   // [nbp]: bit l set while slot l of the block is in play (0 for padding)
  int64_t nb;        // blocks in use
  int64_t nbp;       // nb rounded up to a multiple of kNmsChunk
};

}  // namespace detseg::cpu

// Greedy NMS. Walks the priority order p = 0..n-1: slot_of[p] < 0 marks a box that can never
// suppress nor be suppressed (kept as is); otherwise the box is kept iff its slot is still
// alive, and then clears every alive slot it suppresses (IoU > thr). Writes the kept
// priority positions, ascending, to kept[] and returns how many.
DETSEG_ISA_DECLARE(
    int64_t nms_greedy(const detseg::cpu::NmsBlocks<float>& b, const int32_t* slot_of, int64_t n, float thr,
                       int32_t* kept);
    int64_t nms_greedy(const detseg::cpu::NmsBlocks<double>& b, const int32_t* slot_of, int64_t n, double thr,
                       int32_t* kept))
