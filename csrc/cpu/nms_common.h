// The host side of greedy NMS on the CPU, shared by csrc/cpu/nms.cpp (nms, batched_nms) and
// csrc/cpu/multiclass_nms.cpp: scratch buffers, the stable descending score order (radix
// argsort of order-preserving keys) and one NMS problem (gather in priority order, set aside
// boxes that can never take part, spatial blocks, then the per-ISA greedy loop of
// csrc/cpu/vec/nms_vec.cpp). The rule itself is detseg/nms.h.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

#include "cpu/isa.h"
#include "cpu/vec/nms_vec.h"
#include "detseg/nms.h"

namespace detseg::cpu {


// Grow-only, uninitialised, 64-byte aligned scratch (std::vector would zero-fill).
template <typename T>
class Buf {
 public:
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { std::free(p_); }
  T* get(int64_t n) {
    if (static_cast<size_t>(n) > cap_) {
      std::free(p_);
      cap_ = std::max<size_t>(static_cast<size_t>(n), 2 * cap_);
      const size_t bytes = (cap_ * sizeof(T) + 63) / 64 * 64;
      p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) throw std::bad_alloc();
    }
    return p_;
  }

 private:
  T* p_ = nullptr;
  size_t cap_ = 0;
};

// ------------------------------------------------------------------ score order

// Order-preserving map of a score to an unsigned key whose ascending order is the stable
// descending score order of torch.sort: every NaN ranks first (key 0) and ties among
// themselves, -0.0 ties with +0.0.
inline uint32_t desc_key(float f) {
  if (f != f) return 0u;
  uint32_t u = f == 0.0f ? 0u : std::bit_cast<uint32_t>(f);
  const uint32_t ord = (u >> 31) ? ~u : (u | 0x80000000u);
  return ~ord;
}
inline uint64_t desc_key(double f) {
  if (f != f) return 0u;
  uint64_t u = f == 0.0 ? 0u : std::bit_cast<uint64_t>(f);
  const uint64_t ord = (u >> 63) ? ~u : (u | 0x8000000000000000ull);
  return ~ord;
}

// Below this, a comparison sort of (key, index) pairs beats clearing the histograms.
constexpr int64_t kSmallSort = 256;
// Below this, 8-bit digits: the prefix sums over 2^11 buckets would cost more than the
// extra passes.
constexpr int64_t kWideDigits = 4096;

struct SortScratch {
  Buf<uint64_t> a, b;
  Buf<uint32_t> ka, kb, ia, ib;
  Buf<uint32_t> hist;
};

// LSD radix argsort of n > kSmallSort keys: order[r] = index of the r-th smallest key, ties
// by ascending index (each pass is stable and the input is in index order).
template <int kBits, typename K>
void radix_argsort(const K* key, int64_t n, int32_t* order, SortScratch& s) {
  constexpr int kRadix = 1 << kBits;
  constexpr K kMask = static_cast<K>(kRadix - 1);
  constexpr int kPasses = (8 * static_cast<int>(sizeof(K)) + kBits - 1) / kBits;
  uint32_t* h = s.hist.get(kPasses * kRadix);
  std::fill(h, h + kPasses * kRadix, 0u);
  K* ksrc = reinterpret_cast<K*>(s.a.get(n));
  K* kdst = reinterpret_cast<K*>(s.b.get(n));
  uint32_t* isrc = s.ia.get(n);
  uint32_t* idst = s.ib.get(n);
  for (int64_t i = 0; i < n; ++i) {
    const K k = key[i];
    for (int p = 0; p < kPasses; ++p) ++h[p * kRadix + ((k >> (p * kBits)) & kMask)];
  }
  const K* kin = key;
  const uint32_t* iin = nullptr;  // identity until the first pass that moves anything
  for (int p = 0; p < kPasses; ++p) {
    uint32_t* hp = h + p * kRadix;
    const int shift = p * kBits;
    if (hp[(kin[0] >> shift) & kMask] == static_cast<uint32_t>(n)) continue;  // one digit value
    uint32_t sum = 0;
    for (int d = 0; d < kRadix; ++d) {
      const uint32_t c = hp[d];
      hp[d] = sum;
      sum += c;
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t at = hp[(kin[i] >> shift) & kMask]++;
      kdst[at] = kin[i];
      idst[at] = iin ? iin[i] : static_cast<uint32_t>(i);
    }
    kin = kdst;
    iin = idst;
    std::swap(ksrc, kdst);
    std::swap(isrc, idst);
  }
  for (int64_t i = 0; i < n; ++i) order[i] = iin ? static_cast<int32_t>(iin[i]) : static_cast<int32_t>(i);
}

template <typename K>
void argsort_keys(const K* key, int64_t n, int32_t* order, SortScratch& s) {
  if (n <= kSmallSort) {
    // (key, index) pairs are distinct, so any sort of them is the stable order.
    auto* v = reinterpret_cast<std::pair<K, uint32_t>*>(s.a.get(2 * n));
    for (int64_t i = 0; i < n; ++i) v[i] = {key[i], static_cast<uint32_t>(i)};
    std::sort(v, v + n);
    for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(v[i].second);
  } else if (n < kWideDigits) {
    radix_argsort<8>(key, n, order, s);
  } else {
    radix_argsort<11>(key, n, order, s);
  }
}

// Fills order[0..n) with the priority order of `scores` (any floating dtype, any stride).
inline void score_order(const at::Tensor& scores, int32_t* order, SortScratch& s) {
  const int64_t n = scores.size(0);
  const int64_t st = scores.stride(0);
  if (scores.scalar_type() == at::kDouble) {
    const double* p = scores.const_data_ptr<double>();
    uint64_t* key = reinterpret_cast<uint64_t*>(s.kb.get(2 * n));  // kb is free until the sort
    for (int64_t i = 0; i < n; ++i) key[i] = desc_key(p[i * st]);
    argsort_keys(key, n, order, s);
    return;
  }
  uint32_t* key = s.ka.get(n);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "detseg_nms_keys", [&] {
    const scalar_t* p = scores.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) key[i] = desc_key(static_cast<float>(p[i * st]));
  });
  argsort_keys(key, n, order, s);
}

// ------------------------------------------------------------------ one NMS problem

// Problems with at most this many active boxes keep them in priority order: the spatial
// sort would cost more than the block visits it saves.
constexpr int64_t kSpatialMin = 256;
// Cells of the spatial sort: up to 2^6 x 2^6, so a single counting pass over at most 4096
// buckets; finer cells would not make the 16-box blocks any tighter.
constexpr int kCellBitsMax = 6;

inline uint32_t spread6(uint32_t v) {  // bit i -> bit 2i (Z-order of the cells)
  v &= 0x3fu;
  v = (v | (v << 4)) & 0x0f0fu;
  v = (v | (v << 2)) & 0x3333u;
  v = (v | (v << 1)) & 0x5555u;
  return v;
}

template <typename T>
struct Box4 {
  T x1, y1, x2, y2;
};

template <typename T>
struct Workspace {
  Buf<Box4<T>> box;
  Buf<T> blocks, bbox;
  Buf<int32_t> active, slot_of, kept, tmp;
  Buf<uint32_t> key, alive;
  Buf<float> cx, cy;
  Buf<int64_t> hist;
};

template <typename T>
struct BoxesView {
  const void* data;
  int64_t s0, s1;
  at::ScalarType dtype;
};

template <typename T, typename S>
inline void gather_as(const S* p, int64_t s0, int64_t s1, const int32_t* ids, int64_t m, Box4<T>* out) {
  for (int64_t q = 0; q < m; ++q) {
    const S* b = p + static_cast<int64_t>(ids[q]) * s0;
    out[q] = Box4<T>{static_cast<T>(b[0]), static_cast<T>(b[s1]), static_cast<T>(b[2 * s1]),
                     static_cast<T>(b[3 * s1])};
  }
}

template <typename T>
void gather(const BoxesView<T>& bv, const int32_t* ids, int64_t m, Box4<T>* out) {
  switch (bv.dtype) {
    case at::kDouble: gather_as(static_cast<const double*>(bv.data), bv.s0, bv.s1, ids, m, out); break;
    case at::kFloat:
      if (bv.s1 == 1) {
        gather_as(static_cast<const float*>(bv.data), bv.s0, int64_t{1}, ids, m, out);
      } else {
        gather_as(static_cast<const float*>(bv.data), bv.s0, bv.s1, ids, m, out);
      }
      break;
    case at::kHalf: gather_as(static_cast<const at::Half*>(bv.data), bv.s0, bv.s1, ids, m, out); break;
    case at::kBFloat16: gather_as(static_cast<const at::BFloat16*>(bv.data), bv.s0, bv.s1, ids, m, out); break;
    default: TORCH_CHECK(false, "detseg.nms: unexpected boxes dtype ", bv.dtype);
  }
}

// Greedy NMS over the boxes ids[0..m) (original indices, in priority order). Writes the kept
// positions q (ascending) to the returned array and their count to *k.
template <typename T>
const int32_t* nms_problem(const BoxesView<T>& bv, const int32_t* ids, int64_t m, T thr, Workspace<T>& ws,
                           int64_t* k) {
  if (thr >= T(1)) {
    // IoU never exceeds 1 in floating point either: inter <= min(area_i, area_j) (same
    // products of smaller factors), so area_i + area_j rounds to at least 2 * inter and the
    // union to at least inter. Nothing can be suppressed.
    int32_t* kept = ws.kept.get(m);
    for (int64_t q = 0; q < m; ++q) kept[q] = static_cast<int32_t>(q);
    *k = m;
    return kept;
  }
  Box4<T>* box = ws.box.get(m);
  gather(bv, ids, m, box);

  // A box takes part only with positive width and height and a finite area; any other box
  // has IoU 0 or NaN with every box, so it is kept and suppresses nothing.
  int32_t* active = ws.active.get(m);
  int32_t* slot_of = ws.slot_of.get(m);
  int64_t na = 0;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  for (int64_t q = 0; q < m; ++q) {
    const Box4<T> bq = box[q];
    const T w = bq.x2 - bq.x1;
    const T h = bq.y2 - bq.y1;
    const bool on = w > T(0) && h > T(0) && w * h < kInf;
    slot_of[q] = -1;
    active[na] = static_cast<int32_t>(q);
    na += on;
  }

  int32_t* placed = active;  // active boxes in block order
  if (na > kSpatialMin) {
    // Z-order of the box centres over a grid of cells: boxes that share a block are near
    // each other, so block bounding boxes stay tight and a kept box visits few blocks.
    float* cx = ws.cx.get(na);
    float* cy = ws.cy.get(na);
    constexpr float kFInf = std::numeric_limits<float>::infinity();
    float lox = kFInf, hix = -kFInf, loy = kFInf, hiy = -kFInf;
    for (int64_t a = 0; a < na; ++a) {
      const Box4<T> bq = box[active[a]];
      const float u = static_cast<float>(bq.x1 * T(0.5) + bq.x2 * T(0.5));
      const float v = static_cast<float>(bq.y1 * T(0.5) + bq.y2 * T(0.5));
      cx[a] = u;
      cy[a] = v;
      lox = std::min(lox, u);
      hix = std::max(hix, u);
      loy = std::min(loy, v);
      hiy = std::max(hiy, v);
    }
    int bits = 2;  // about four blocks' worth of boxes per cell
    while (bits < kCellBitsMax && (int64_t{1} << (2 * bits)) * 64 < na) ++bits;
    const float kMax = static_cast<float>((1 << bits) - 1);
    const float rx = hix - lox, ry = hiy - loy;
    const float sx = rx > 0.0f && rx < kFInf ? kMax / rx : 0.0f;
    const float sy = ry > 0.0f && ry < kFInf ? kMax / ry : 0.0f;
    auto quant = [&](float v) -> uint32_t {
      return v > 0.0f ? (v < kMax ? static_cast<uint32_t>(v) : static_cast<uint32_t>(kMax)) : 0u;
    };
    uint32_t* key = ws.key.get(na);
    const int64_t nk = int64_t{1} << (2 * bits);
    int64_t* h = ws.hist.get(nk);
    std::fill(h, h + nk, 0);
    for (int64_t a = 0; a < na; ++a) {
      const uint32_t kk = spread6(quant((cx[a] - lox) * sx)) | (spread6(quant((cy[a] - loy) * sy)) << 1);
      key[a] = kk;
      ++h[kk];
    }
    int64_t sum = 0;
    for (int64_t d = 0; d < nk; ++d) {
      const int64_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    placed = ws.tmp.get(na);
    for (int64_t a = 0; a < na; ++a) placed[h[key[a]]++] = active[a];
  }

  const int64_t nb = (na + kNmsBlock - 1) / kNmsBlock;
  const int64_t nbp = (nb + kNmsChunk - 1) / kNmsChunk * kNmsChunk;
  T* blocks = ws.blocks.get(std::max<int64_t>(nb, 1) * 5 * kNmsBlock);
  T* bbox = ws.bbox.get(std::max<int64_t>(nbp, 1) * 4);
  uint32_t* alive = ws.alive.get(std::max<int64_t>(nbp, 1));
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t b = nb; b < nbp; ++b) {
    alive[b] = 0;
    bbox[b] = bbox[nbp + b] = bbox[2 * nbp + b] = bbox[3 * nbp + b] = nan;
  }
  for (int64_t b = 0; b < nb; ++b) {
    T* blk = blocks + b * 5 * kNmsBlock;
    const int64_t a0 = b * kNmsBlock;
    const int lanes = static_cast<int>(std::min<int64_t>(kNmsBlock, na - a0));
    T lx = kInf, ly = kInf, hx = -kInf, hy = -kInf;
    for (int l = 0; l < lanes; ++l) {
      const int32_t q = placed[a0 + l];
      const Box4<T> bq = box[q];
      slot_of[q] = static_cast<int32_t>(a0 + l);
      blk[l] = bq.x1;
      blk[kNmsBlock + l] = bq.y1;
      blk[2 * kNmsBlock + l] = bq.x2;
      blk[3 * kNmsBlock + l] = bq.y2;
      // The area as every caller of detseg::nms_suppresses computes it.
      blk[4 * kNmsBlock + l] = (bq.x2 - bq.x1) * (bq.y2 - bq.y1);
      lx = std::min(lx, bq.x1);
      ly = std::min(ly, bq.y1);
      hx = std::max(hx, bq.x2);
      hy = std::max(hy, bq.y2);
    }
    for (int l = lanes; l < kNmsBlock; ++l) {
      for (int c = 0; c < 5; ++c) blk[c * kNmsBlock + l] = T(0);
    }
    alive[b] = lanes == 32 ? ~0u : ((1u << lanes) - 1u);
    bbox[b] = lx;
    bbox[nbp + b] = ly;
    bbox[2 * nbp + b] = hx;
    bbox[3 * nbp + b] = hy;
  }

  NmsBlocks<T> nbk{blocks, bbox, alive, nb, nbp};
  int32_t* kept = ws.kept.get(m);
  *k = DETSEG_ISA_CALL(nms_greedy, nbk, slot_of, m, thr, kept);
  return kept;
}

template <typename T>
BoxesView<T> view_of(const at::Tensor& boxes) {
  return BoxesView<T>{boxes.const_data_ptr(), boxes.stride(0), boxes.stride(1), boxes.scalar_type()};
}

template <typename T>
T threshold_of(double t) {
  if constexpr (std::is_same_v<T, double>) {
    return t;
  } else {
    return detseg::nms_threshold_f32(t);
  }
}

inline void check_size(const char* op, int64_t n) {
  TORCH_CHECK_VALUE(n < std::numeric_limits<int32_t>::max(), "detseg.", op,
                    ": boxes must have fewer than 2^31 - 1 rows, got ", n);
}

}  // namespace detseg::cpu
