// Anchor-grid row loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2, AVX512).
#include "cpu/vec/anchors_vec.h"

#if defined(__GNUC__) && !defined(__clang__)
// GCC's AVX-512 intrinsics start from _mm512_undefined_*: false positives once inlined
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

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

#if defined(CPU_CAPABILITY_AVX512)
// float32 on AVX-512: one cell's predictions for up to 3 anchors, (tx, ty, tw, th, to) x 3, are
// 15 consecutive floats, and so are its outputs (x1, y1, x2, y2, obj) x 3: one masked load and
// store per 3 anchors, no gather into lanes over cells. The lanes of one value kind k = lane % 5
// compute yolo_decode_one's operations on their own value (sigmoid(t) = 1 / (1 + exp(-t)) for
// k = 0, 1, 4; 0.5 (anchor * exp(t)) for k = 2, 3, centre (sigmoid + cell) * stride for k = 0,
// 1); two permutes bring each box's centre and half size together for the corners. Same
// operations on the same values as the vector path over cells: the same bits.
void yolo_cells_aos(const YoloArgs<float>& a, int64_t c0, int64_t c1) {
  alignas(64) int32_t kind[16], ci[16], hi[16];
  for (int l = 0; l < 16; ++l) {
    const int k = l % 5, g = l - k;
    kind[l] = k;
    ci[l] = g + (k == 4 ? 4 : (k & 1));  // centre (x or y) of the lane's box
    hi[l] = g + 2 + (k & 1);             // half size (w or h)
    if (l == 15) ci[l] = hi[l] = 15;
  }
  const __m512i kv = _mm512_load_si512(kind), civ = _mm512_load_si512(ci), hiv = _mm512_load_si512(hi);
  const __mmask16 k0 = _mm512_cmpeq_epi32_mask(kv, _mm512_set1_epi32(0));
  const __mmask16 k1 = _mm512_cmpeq_epi32_mask(kv, _mm512_set1_epi32(1));
  const __mmask16 k4 = _mm512_cmpeq_epi32_mask(kv, _mm512_set1_epi32(4));
  const __mmask16 sig_lanes = static_cast<__mmask16>(k0 | k1 | k4);
  const __mmask16 minus = static_cast<__mmask16>(k0 | k1);  // x1 = cx - hw, y1 = cy - hh
  const __m512 sign = _mm512_set1_ps(-0.0f), one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
  const __m512 stride = _mm512_mask_blend_ps(k1, _mm512_set1_ps(a.stride_w), _mm512_set1_ps(a.stride_h));
  // per group of 3 anchors: anchor w in the tw lanes, h in the th lanes
  const int64_t groups = (a.B + 2) / 3;
  std::vector<float> anc(static_cast<size_t>(16 * groups));
  std::vector<__mmask16> lanes(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) {
    float* v = anc.data() + 16 * g;
    const int64_t nb = std::min<int64_t>(3, a.B - 3 * g);
    for (int l = 0; l < 16; ++l) {
      const int64_t b = 3 * g + l / 5;
      v[l] = (l < 15 && b < a.B && (l % 5 == 2 || l % 5 == 3)) ? a.anchors[2 * b + (l % 5 - 2)] : 1.0f;
    }
    lanes[g] = static_cast<__mmask16>((1u << (5 * nb)) - 1);
  }
  int64_t x = c0 % a.W, y = (c0 / a.W) % a.H;
  for (int64_t c = c0; c < c1; ++c) {
    const __m512 cell = _mm512_mask_blend_ps(k1, _mm512_set1_ps(static_cast<float>(x)),
                                             _mm512_set1_ps(static_cast<float>(y)));
    for (int64_t g = 0; g < groups; ++g) {
      const __m512 t = _mm512_maskz_loadu_ps(lanes[g], a.pred + c * a.P + 15 * g);
      const __m512 e = sleef_expf_u10(_mm512_mask_xor_ps(t, sig_lanes, t, sign));
      const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, e));
      const __m512 ctr = _mm512_mul_ps(_mm512_add_ps(sig, cell), stride);
      const __m512 hw = _mm512_mul_ps(half, _mm512_mul_ps(_mm512_loadu_ps(anc.data() + 16 * g), e));
      const __m512 pc = _mm512_permutexvar_ps(civ, _mm512_mask_blend_ps(k4, ctr, sig));
      const __m512 ph = _mm512_permutexvar_ps(hiv, hw);
      __m512 o = _mm512_mask_sub_ps(_mm512_add_ps(pc, ph), minus, pc, ph);
      o = _mm512_mask_blend_ps(k4, o, pc);
      _mm512_mask_storeu_ps(a.out + (c * a.B + 3 * g) * 5, lanes[g], o);
    }
    if (++x == a.W) x = 0, y = y + 1 == a.H ? 0 : y + 1;
  }
}
#endif

}  // namespace

void yolo_cells(const YoloArgs<float>& a, int64_t c0, int64_t c1) {
#if defined(CPU_CAPABILITY_AVX512)
  yolo_cells_aos(a, c0, c1);
#else
  yolo_cells_impl(a, c0, c1);
#endif
}
void yolo_cells(const YoloArgs<double>& a, int64_t c0, int64_t c1) { yolo_cells_impl(a, c0, c1); }

void shift_row(const float* tmpl, int64_t len, float sy, float* out) { shift_row_impl(tmpl, len, sy, out); }
void shift_row(const double* tmpl, int64_t len, double sy, double* out) { shift_row_impl(tmpl, len, sy, out); }

}  // namespace detseg::cpu::CPU_CAPABILITY
