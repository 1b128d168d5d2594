// Compiled once per ISA (CPU_CAPABILITY = DEFAULT / AVX2 / AVX512); see nms_vec.h. Raw
// pointers only: an inline std:: template instantiated here with AVX-512 flags could be
// picked by the linker for the DEFAULT path too.
#include "cpu/vec/nms_vec.h"

#include <ATen/cpu/vec/vec.h>

#include "detseg/nms.h"

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Bit l set iff kept box i suppresses slot l of the block. A plain loop over the shared
// rule: g++ turns it into vector min/max/div over the block (-fno-trapping-math), with the
// same operations in the same order as the scalar call, so decisions are identical. The
// 0/1 lanes go through a vector compare so that the mask is one instruction (kmov /
// movmsk), not a chain of shifts and ors.
template <typename T>
inline uint32_t suppress_mask(const T* blk, T ix1, T iy1, T ix2, T iy2, T iarea, T thr) {
  const T* x1 = blk;
  const T* y1 = blk + kNmsBlock;
  const T* x2 = blk + 2 * kNmsBlock;
  const T* y2 = blk + 3 * kNmsBlock;
  const T* ar = blk + 4 * kNmsBlock;
  alignas(64) T hit[kNmsBlock];
  for (int l = 0; l < kNmsBlock; ++l) {
    hit[l] = detseg::nms_suppresses(ix1, iy1, ix2, iy2, iarea, x1[l], y1[l], x2[l], y2[l], ar[l], thr) ? T(1) : T(0);
  }
  using Vec = Vectorized<T>;
  constexpr int kW = Vec::size();
  uint32_t m = 0;
  for (int v = 0; v < kNmsBlock; v += kW) {
    m |= (~static_cast<uint32_t>(Vec::loadu(hit + v).zero_mask()) & ((1u << kW) - 1u)) << v;
  }
  return m;
}

// Bit j set iff the bounding box of block c0 + j overlaps (ix1, iy1, ix2, iy2) with positive
// width and height. An emptied block has a NaN bounding box and never matches.
template <typename T>
inline uint32_t overlap_chunk(const T* bx1, const T* by1, const T* bx2, const T* by2, int64_t c0,
                              const Vectorized<T>& ix1, const Vectorized<T>& iy1, const Vectorized<T>& ix2,
                              const Vectorized<T>& iy2) {
  using Vec = Vectorized<T>;
  constexpr int kW = Vec::size();
  uint32_t m = 0;
  for (int v = 0; v < kNmsChunk; v += kW) {
    const int64_t o = c0 + v;
    const Vec c = (Vec::loadu(bx1 + o) < ix2) & (Vec::loadu(bx2 + o) > ix1) & (Vec::loadu(by1 + o) < iy2) &
                  (Vec::loadu(by2 + o) > iy1);
    m |= (~static_cast<uint32_t>(c.zero_mask()) & ((1u << kW) - 1u)) << v;
  }
  return m;
}

template <typename T>
int64_t greedy(const NmsBlocks<T>& b, const int32_t* slot_of, int64_t n, T thr, int32_t* kept) {
  using Vec = Vectorized<T>;
  const int64_t nbp = b.nbp;
  T* bx1 = b.bbox;
  T* by1 = b.bbox + nbp;
  T* bx2 = b.bbox + 2 * nbp;
  T* by2 = b.bbox + 3 * nbp;
  uint32_t* alive = b.alive;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  int64_t k = 0;
  for (int64_t p = 0; p < n; ++p) {
    const int32_t s = slot_of[p];
    if (s < 0) {
      kept[k++] = static_cast<int32_t>(p);
      continue;
    }
    const int64_t blk = s / kNmsBlock;
    const int lane = s % kNmsBlock;
    if (!((alive[blk] >> lane) & 1u)) continue;
    kept[k++] = static_cast<int32_t>(p);
    if ((alive[blk] &= ~(1u << lane)) == 0) bx1[blk] = nan;
    const T* me = b.blocks + blk * 5 * kNmsBlock;
    const T ix1 = me[lane], iy1 = me[kNmsBlock + lane], ix2 = me[2 * kNmsBlock + lane],
            iy2 = me[3 * kNmsBlock + lane], ia = me[4 * kNmsBlock + lane];
    const Vec vx1(ix1), vy1(iy1), vx2(ix2), vy2(iy2);
    for (int64_t c0 = 0; c0 < nbp; c0 += kNmsChunk) {
      uint32_t ov = overlap_chunk<T>(bx1, by1, bx2, by2, c0, vx1, vy1, vx2, vy2);
      while (ov) {
        const int64_t j = c0 + __builtin_ctz(ov);
        ov &= ov - 1;
        const uint32_t sup = suppress_mask<T>(b.blocks + j * 5 * kNmsBlock, ix1, iy1, ix2, iy2, ia, thr);
        // No branch on the result: the next block's division can start while this one's
        // is still in flight.
        const uint32_t left = alive[j] & ~sup;
        alive[j] = left;
        bx1[j] = left ? bx1[j] : nan;
      }
    }
  }
  return k;
}

}  // namespace

int64_t nms_greedy(const NmsBlocks<float>& b, const int32_t* slot_of, int64_t n, float thr, int32_t* kept) {
  return greedy<float>(b, slot_of, n, thr, kept);
}
int64_t nms_greedy(const NmsBlocks<double>& b, const int32_t* slot_of, int64_t n, double thr, int32_t* kept) {
  return greedy<double>(b, slot_of, n, thr, kept);
}

}  // namespace detseg::cpu::CPU_CAPABILITY
