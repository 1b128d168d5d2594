// Anchor-grid row loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2, AVX512).
#include "cpu/vec/anchors_vec.h"

#if defined(__GNUC__) && !defined(__clang__)
// GCC's AVX-512 intrinsics start from _mm512_undefined_*: false positives once inlined
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "cpu/vec/vec_math.h"
#include "detseg/anchors.h"

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

template <typename S>
void shift_row_impl(const S* tmpl, int64_t len, S sy, S* out) {
  using V = at::vec::Vectorized<S>;
  constexpr int L = V::size();  // even on every ISA: the (0, sy) pattern stays in phase
  alignas(64) S pattern[L];
  for (int k = 0; k < L; ++k) pattern[k] = (k & 1) ? sy : S(0);
  const V add = V::loadu(pattern);
  int64_t j = 0;
  for (; j + L <= len; j += L) (V::loadu(tmpl + j) + add).store(out + j);
  for (; j < len; ++j) out[j] = tmpl[j] + ((j & 1) ? sy : S(0));
}

template <typename S>
void yolo_cells_impl(const YoloArgs<S>& a, int64_t c0, int64_t c1) {
  using V = at::vec::Vectorized<S>;
  constexpr int L = V::size();
  const V sw(a.stride_w), sh(a.stride_h);
  for (int64_t c = c0; c < c1; c += L) {
    const int64_t cnt = std::min<int64_t>(L, c1 - c);
    // the cells' (x, y) once per vector and by increments: two 64-bit divisions per lane and
    // anchor were a third of the kernel's time
    alignas(64) S xs[L] = {}, ys[L] = {};
    int64_t x = c % a.W, y = (c / a.W) % a.H;
    for (int64_t l = 0; l < cnt; ++l) {
      xs[l] = S(x), ys[l] = S(y);
      if (++x == a.W) x = 0, y = y + 1 == a.H ? 0 : y + 1;
    }
    const V xv = V::loadu(xs), yv = V::loadu(ys);
    for (int64_t b = 0; b < a.B; ++b) {
      alignas(64) S t[5][L] = {}, o[5][L];
      for (int64_t l = 0; l < cnt; ++l) {
        const S* p = a.pred + (c + l) * a.P + 5 * b;
        for (int k = 0; k < 5; ++k) t[k][l] = p[k];
      }
      V pv[5], ov[5];
      for (int k = 0; k < 5; ++k) pv[k] = V::loadu(t[k]);
      yolo_decode_one<V>(pv, xv, yv, V(a.anchors[2 * b]), V(a.anchors[2 * b + 1]), sw, sh, ov);
      for (int k = 0; k < 5; ++k) ov[k].store(o[k]);
      for (int64_t l = 0; l < cnt; ++l) {
        S* q = a.out + ((c + l) * a.B + b) * 5;
        for (int k = 0; k < 5; ++k) q[k] = o[k][l];
      }
    }
  }
}

}  // namespace

void yolo_cells(const YoloArgs<float>& a, int64_t c0, int64_t c1) { yolo_cells_impl(a, c0, c1); }
void yolo_cells(const YoloArgs<double>& a, int64_t c0, int64_t c1) { yolo_cells_impl(a, c0, c1); }

void shift_row(const float* tmpl, int64_t len, float sy, float* out) { shift_row_impl(tmpl, len, sy, out); }
void shift_row(const double* tmpl, int64_t len, double sy, double* out) { shift_row_impl(tmpl, len, sy, out); }

}  // namespace detseg::cpu::CPU_CAPABILITY
