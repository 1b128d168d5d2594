// box_iou_matrix inner loop for one ISA (this file is compiled with CPU_CAPABILITY = DEFAULT,
// AVX2 and AVX512). Lanes run over columns; each lane evaluates detseg::pair_iou itself,
// instantiated with T = at::vec::Vectorized<scalar>, so every variant performs the scalar
// header's operations in the scalar header's order: results are bitwise equal to the scalar
// path on every ISA (no FMA: -ffp-contract=off; IEEE division; min/max as the header's
// selects). CIoU's atan is taken per box, in scalar code, by the caller.
#include "cpu/vec/box_iou_vec.h"

// GCC 12 flags the _mm512_undefined_pd() pass-through inside its own _mm512_min/max_pd
// as "may be used uninitialized" once inlined: a false positive of the intrinsic header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace detseg {

// The header's selects, for vector operands. x86 MINPS/MAXPS return their second operand
// unless the comparison holds, which is exactly `a < b ? a : b` / `a > b ? a : b`, NaN
// and signed zeros included; clamp_min0(x) = `x < 0 ? 0 : x` = MAXPS(0, x) (NaN passes).
#if defined(CPU_CAPABILITY_AVX512)
template <>
inline at::vec::Vectorized<float> dmin(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return _mm512_min_ps(a, b);
}
template <>
inline at::vec::Vectorized<float> dmax(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return _mm512_max_ps(a, b);
}
template <>
inline at::vec::Vectorized<float> clamp_min0(at::vec::Vectorized<float> x) {
  return _mm512_max_ps(_mm512_setzero_ps(), x);
}
template <>
inline at::vec::Vectorized<double> dmin(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return _mm512_min_pd(a, b);
}
template <>
inline at::vec::Vectorized<double> dmax(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return _mm512_max_pd(a, b);
}
template <>
inline at::vec::Vectorized<double> clamp_min0(at::vec::Vectorized<double> x) {
  return _mm512_max_pd(_mm512_setzero_pd(), x);
}
#elif defined(CPU_CAPABILITY_AVX2)
template <>
inline at::vec::Vectorized<float> dmin(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return _mm256_min_ps(a, b);
}
template <>
inline at::vec::Vectorized<float> dmax(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return _mm256_max_ps(a, b);
}
template <>
inline at::vec::Vectorized<float> clamp_min0(at::vec::Vectorized<float> x) {
  return _mm256_max_ps(_mm256_setzero_ps(), x);
}
template <>
inline at::vec::Vectorized<double> dmin(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return _mm256_min_pd(a, b);
}
template <>
inline at::vec::Vectorized<double> dmax(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return _mm256_max_pd(a, b);
}
template <>
inline at::vec::Vectorized<double> clamp_min0(at::vec::Vectorized<double> x) {
  return _mm256_max_pd(_mm256_setzero_pd(), x);
}
#else
// DEFAULT: Vectorized is a plain array; lane loops the compiler vectorises with SSE2.
template <typename S>
inline at::vec::Vectorized<S> lanes_min(const at::vec::Vectorized<S>& a, const at::vec::Vectorized<S>& b) {
  at::vec::Vectorized<S> r;
  for (int i = 0; i < at::vec::Vectorized<S>::size(); ++i) r[i] = dmin(a[i], b[i]);
  return r;
}
template <typename S>
inline at::vec::Vectorized<S> lanes_max(const at::vec::Vectorized<S>& a, const at::vec::Vectorized<S>& b) {
  at::vec::Vectorized<S> r;
  for (int i = 0; i < at::vec::Vectorized<S>::size(); ++i) r[i] = dmax(a[i], b[i]);
  return r;
}
template <typename S>
inline at::vec::Vectorized<S> lanes_clamp_min0(const at::vec::Vectorized<S>& x) {
  at::vec::Vectorized<S> r;
  for (int i = 0; i < at::vec::Vectorized<S>::size(); ++i) r[i] = clamp_min0(x[i]);
  return r;
}
template <>
inline at::vec::Vectorized<float> dmin(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return lanes_min(a, b);
}
template <>
inline at::vec::Vectorized<float> dmax(at::vec::Vectorized<float> a, at::vec::Vectorized<float> b) {
  return lanes_max(a, b);
}
template <>
inline at::vec::Vectorized<float> clamp_min0(at::vec::Vectorized<float> x) {
  return lanes_clamp_min0(x);
}
template <>
inline at::vec::Vectorized<double> dmin(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return lanes_min(a, b);
}
template <>
inline at::vec::Vectorized<double> dmax(at::vec::Vectorized<double> a, at::vec::Vectorized<double> b) {
  return lanes_max(a, b);
}
template <>
inline at::vec::Vectorized<double> clamp_min0(at::vec::Vectorized<double> x) {
  return lanes_clamp_min0(x);
}
#endif

}  // namespace detseg

namespace detseg::cpu::CPU_CAPABILITY {

namespace {

// Boxes [j, j + count) of xyxy rows p as four coordinate vectors (count <= lanes; the
// missing lanes are zero): two rounds of even/odd splits of 4 consecutive vectors.
template <typename V, typename T>
inline Box<V> load_rows_as_columns(const T* p, int64_t count) {
  constexpr int64_t W = V::size();
  V v[4];
  for (int64_t k = 0; k < 4; ++k) {
    const int64_t c = 4 * count - k * W;
    v[k] = c >= W ? V::loadu(p + k * W) : c > 0 ? V::loadu(p + k * W, c) : V(T(0));
  }
  const auto [e01, o01] = at::vec::deinterleave2(v[0], v[1]);  // x1 x2 .. / y1 y2 .. of boxes 0..W/2
  const auto [e23, o23] = at::vec::deinterleave2(v[2], v[3]);
  const auto [x1, x2] = at::vec::deinterleave2(e01, e23);
  const auto [y1, y2] = at::vec::deinterleave2(o01, o23);
  return Box<V>{x1, y1, x2, y2};
}

template <IouKind K, bool kAos, typename T>
void tasks_kind(const IouMatrixArgs<T>& p, int64_t t0, int64_t t1) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t W = V::size();
  const V eps(p.eps);
  const V zero(T(0));
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t row = t / p.n_chunks;
    const int64_t c0 = (t % p.n_chunks) * p.chunk;
    const int64_t c1 = c0 + p.chunk < p.m ? c0 + p.chunk : p.m;
    const T* ar = p.a + row * 4;
    const Box<V> a{V(ar[0]), V(ar[1]), V(ar[2]), V(ar[3])};
    const V a_atan = K == IouKind::kCIoU ? V(p.a_atan[row]) : zero;
    const T* soa = p.b_soa + (row / p.n) * p.cols * p.m;
    const T *bx1 = soa, *by1 = soa + p.m, *bx2 = soa + 2 * p.m, *by2 = soa + 3 * p.m;
    const T* bat = K == IouKind::kCIoU ? soa + (p.cols - 1) * p.m : nullptr;
    const T* aos = kAos ? p.b_aos + (row / p.n) * p.m * 4 : nullptr;
    T* out = p.out + row * p.m;
    int64_t j = c0;
    for (; j + W <= c1; j += W) {
      const Box<V> b = kAos ? load_rows_as_columns<V>(aos + j * 4, W)
                            : Box<V>{V::loadu(bx1 + j), V::loadu(by1 + j), V::loadu(bx2 + j), V::loadu(by2 + j)};
      const V b_atan = K == IouKind::kCIoU ? V::loadu(bat + j) : zero;
      pair_iou<K, IouForm::kMatrix>(a, b, eps, a_atan, b_atan).store(out + j);
    }
    if (j < c1) {
      // Partial vector: the unused lanes compute on zeros and are not stored.
      const int64_t r = c1 - j;
      const Box<V> b = kAos ? load_rows_as_columns<V>(aos + j * 4, r)
                            : Box<V>{V::loadu(bx1 + j, r), V::loadu(by1 + j, r), V::loadu(bx2 + j, r),
                                     V::loadu(by2 + j, r)};
      const V b_atan = K == IouKind::kCIoU ? V::loadu(bat + j, r) : zero;
      pair_iou<K, IouForm::kMatrix>(a, b, eps, a_atan, b_atan).store(out + j, static_cast<int>(r));
    }
  }
}

template <bool kAos, typename T>
void tasks_layout(const IouMatrixArgs<T>& p, int64_t t0, int64_t t1) {
  switch (p.kind) {
    case IouKind::kIoU: return tasks_kind<IouKind::kIoU, kAos>(p, t0, t1);
    case IouKind::kGIoU: return tasks_kind<IouKind::kGIoU, kAos>(p, t0, t1);
    case IouKind::kDIoU: return tasks_kind<IouKind::kDIoU, kAos>(p, t0, t1);
    case IouKind::kCIoU: return tasks_kind<IouKind::kCIoU, kAos>(p, t0, t1);
  }
}

template <typename T>
void tasks_any(const IouMatrixArgs<T>& p, int64_t t0, int64_t t1) {
  if (p.b_aos != nullptr) return tasks_layout<true>(p, t0, t1);
  return tasks_layout<false>(p, t0, t1);
}

}  // namespace

void iou_matrix_tasks(const IouMatrixArgs<float>& p, int64_t t0, int64_t t1) { tasks_any(p, t0, t1); }
void iou_matrix_tasks(const IouMatrixArgs<double>& p, int64_t t0, int64_t t1) { tasks_any(p, t0, t1); }

}  // namespace detseg::cpu::CPU_CAPABILITY
