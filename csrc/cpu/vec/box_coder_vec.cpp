// decode_boxes inner loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2, AVX512):
// detseg::decode_box instantiated with T = at::vec::Vectorized<scalar>, lanes over boxes. The
// xyxy rows are split into coordinate vectors and joined back: float32 on AVX2 / AVX512 with
// a 4 x 4 transpose inside each 128-bit lane (one box per lane: cheap in-lane shuffles, where
// the cross-lane permutes of deinterleave2 took half the loop's time), other types with two
// rounds of deinterleave2 / interleave2. exp: see vec_math.h.
#include "cpu/vec/box_coder_vec.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "cpu/vec/vec_math.h"
#include "detseg/box_coder.h"

namespace detseg {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// 4 * L values = L xyxy rows -> the L first coordinates, L second ones, ...
template <typename S>
void split4(const S* p, Vectorized<S> (&c)[4]) {
  constexpr int L = Vectorized<S>::size();
  const auto v0 = Vectorized<S>::loadu(p), v1 = Vectorized<S>::loadu(p + L);
  const auto v2 = Vectorized<S>::loadu(p + 2 * L), v3 = Vectorized<S>::loadu(p + 3 * L);
  // rows 0..L/2-1 as (x1, x2) / (y1, y2) pairs, then rows L/2..L-1
  const auto [e01, o01] = at::vec::deinterleave2(v0, v1);
  const auto [e23, o23] = at::vec::deinterleave2(v2, v3);
  const auto [x1, x2] = at::vec::deinterleave2(e01, e23);
  const auto [y1, y2] = at::vec::deinterleave2(o01, o23);
  c[0] = x1, c[1] = y1, c[2] = x2, c[3] = y2;
}

template <typename S>
void join4(const Vectorized<S> (&c)[4], S* p) {
  constexpr int L = Vectorized<S>::size();
  const auto [e0, e1] = at::vec::interleave2(c[0], c[2]);  // (x1, x2) pairs
  const auto [o0, o1] = at::vec::interleave2(c[1], c[3]);  // (y1, y2) pairs
  const auto [r0, r1] = at::vec::interleave2(e0, o0);
  const auto [r2, r3] = at::vec::interleave2(e1, o1);
  r0.store(p), r1.store(p + L), r2.store(p + 2 * L), r3.store(p + 3 * L);
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#if defined(CPU_CAPABILITY_AVX512)
#define DETSEG_VX(op) _mm512_##op
using reg = __m512;
#else
#define DETSEG_VX(op) _mm256_##op
using reg = __m256;
#endif
// In each 128-bit lane, rows (a, b, c, d) of four vectors -> columns: lane c of v[i] holds box
// (lanes * i + c); after the transpose element i of lane c of out[k] is that box's coordinate
// k. The transpose is its own inverse, so join4 applies it again.
inline void transpose_lanes(const reg (&v)[4], reg (&out)[4]) {
  const reg t0 = DETSEG_VX(unpacklo_ps)(v[0], v[1]), t1 = DETSEG_VX(unpacklo_ps)(v[2], v[3]);
  const reg t2 = DETSEG_VX(unpackhi_ps)(v[0], v[1]), t3 = DETSEG_VX(unpackhi_ps)(v[2], v[3]);
  out[0] = DETSEG_VX(shuffle_ps)(t0, t1, 0x44), out[1] = DETSEG_VX(shuffle_ps)(t0, t1, 0xEE);
  out[2] = DETSEG_VX(shuffle_ps)(t2, t3, 0x44), out[3] = DETSEG_VX(shuffle_ps)(t2, t3, 0xEE);
}

template <>
inline void split4(const float* p, Vectorized<float> (&c)[4]) {
  constexpr int L = Vectorized<float>::size();
  const reg v[4] = {DETSEG_VX(loadu_ps)(p), DETSEG_VX(loadu_ps)(p + L), DETSEG_VX(loadu_ps)(p + 2 * L),
                    DETSEG_VX(loadu_ps)(p + 3 * L)};
  reg o[4];
  transpose_lanes(v, o);
  for (int k = 0; k < 4; ++k) c[k] = Vectorized<float>(o[k]);
}

template <>
inline void join4(const Vectorized<float> (&c)[4], float* p) {
  constexpr int L = Vectorized<float>::size();
  const reg v[4] = {static_cast<reg>(c[0]), static_cast<reg>(c[1]), static_cast<reg>(c[2]), static_cast<reg>(c[3])};
  reg o[4];
  transpose_lanes(v, o);
  for (int k = 0; k < 4; ++k) DETSEG_VX(storeu_ps)(p + k * L, o[k]);
}
#undef DETSEG_VX
#endif

// Inlined into the loop: as a call per block it re-broadcast its constants and spilled.
template <typename S>
__attribute__((always_inline)) inline void decode_block(const DecodeArgs<S>& a, const S* d, const S* b, S* o) {
  using V = Vectorized<S>;
  V dv[4], bv[4], ov[4];
  split4(d, dv);
  split4(b, bv);
  decode_box<V>(dv, bv, V(a.wx), V(a.wy), V(a.ww), V(a.wh), V(a.clip), ov);
  join4(ov, o);
}

template <typename S>
void decode_range(const DecodeArgs<S>& a, int64_t i0, int64_t i1) {
  constexpr int L = Vectorized<S>::size();
  int64_t i = i0;
  for (; i + L <= i1; i += L) decode_block(a, a.deltas + 4 * i, a.boxes + 4 * i, a.out + 4 * i);
  if (i < i1) {
    // The tail through the same vector code: padding rows are unit boxes with zero deltas.
    S d[4 * L], b[4 * L], o[4 * L];
    std::fill(d, d + 4 * L, S(0));
    for (int k = 0; k < L; ++k) b[4 * k] = S(0), b[4 * k + 1] = S(0), b[4 * k + 2] = S(1), b[4 * k + 3] = S(1);
    const int64_t r = i1 - i;
    std::copy(a.deltas + 4 * i, a.deltas + 4 * i1, d);
    std::copy(a.boxes + 4 * i, a.boxes + 4 * i1, b);
    decode_block(a, d, b, o);
    std::copy(o, o + 4 * r, a.out + 4 * i);
  }
}

}  // namespace

void decode_boxes_k1(const DecodeArgs<float>& a, int64_t i0, int64_t i1) { decode_range(a, i0, i1); }
void decode_boxes_k1(const DecodeArgs<double>& a, int64_t i0, int64_t i1) { decode_range(a, i0, i1); }

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace detseg
