// Vector overloads of the scalar helpers of detseg/box_coder.h, for the per-ISA loops that
// instantiate the header math with T = at::vec::Vectorized<scalar> (include after ATen's
// vec.h, before instantiating). exp is ATen's vector exp (SLEEF, 1 ulp) on AVX2 / AVX512: the
// last bit may differ from the scalar std::exp of the DEFAULT build and of the CUDA kernel.
#pragma once

#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include "detseg/box_coder.h"

namespace detseg {

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// SLEEF's expf u10 (Sleef_expf16_u10 / Sleef_expf8_u10, what Vectorized<float>::exp calls)
// restated inline: the same operations in the same order, so the same bits (checked against
// both for all 2^32 inputs), without the out-of-line call and the register spills around it
// that cost the decode loop a third of its time. x = q ln2 + s (ln2 in two parts), e^s by a
// degree-7 polynomial, times 2^q in two factors; below -104 -> 0, above 100 -> inf.
#if defined(CPU_CAPABILITY_AVX512)
using vexp_reg = __m512;
using vexp_ireg = __m512i;
#define DETSEG_VX(op) _mm512_##op
inline __m512 vexp_as_float(__m512i v) { return _mm512_castsi512_ps(v); }
#else
using vexp_reg = __m256;
using vexp_ireg = __m256i;
#define DETSEG_VX(op) _mm256_##op
inline __m256 vexp_as_float(__m256i v) { return _mm256_castsi256_ps(v); }
#endif

inline vexp_reg sleef_expf_u10(vexp_reg d) {
  const vexp_ireg q = DETSEG_VX(cvtps_epi32)(DETSEG_VX(mul_ps)(d, DETSEG_VX(set1_ps)(1.442695040888963407359924681001892137426645954152985934135449406931f)));
  const vexp_reg qf = DETSEG_VX(cvtepi32_ps)(q);
  vexp_reg s = DETSEG_VX(fmadd_ps)(qf, DETSEG_VX(set1_ps)(-0.693145751953125f), d);
  s = DETSEG_VX(fmadd_ps)(qf, DETSEG_VX(set1_ps)(-1.428606765330187045e-06f), s);
  vexp_reg u = DETSEG_VX(set1_ps)(0.000198527617612853646278381f);
  u = DETSEG_VX(fmadd_ps)(u, s, DETSEG_VX(set1_ps)(0.00139304355252534151077271f));
  u = DETSEG_VX(fmadd_ps)(u, s, DETSEG_VX(set1_ps)(0.00833336077630519866943359f));
  u = DETSEG_VX(fmadd_ps)(u, s, DETSEG_VX(set1_ps)(0.0416664853692054748535156f));
  u = DETSEG_VX(fmadd_ps)(u, s, DETSEG_VX(set1_ps)(0.166666671633720397949219f));
  u = DETSEG_VX(fmadd_ps)(u, s, DETSEG_VX(set1_ps)(0.5f));
  u = DETSEG_VX(add_ps)(DETSEG_VX(set1_ps)(1.0f), DETSEG_VX(fmadd_ps)(DETSEG_VX(mul_ps)(s, s), u, s));
  // ldexp in two halves of q, as SLEEF: 2^q alone would overflow the exponent field
  const vexp_ireg q1 = DETSEG_VX(srai_epi32)(q, 1), q2 = DETSEG_VX(sub_epi32)(q, q1);
  const vexp_ireg bias = DETSEG_VX(set1_epi32)(0x7f);
  const vexp_reg p1 = vexp_as_float(DETSEG_VX(slli_epi32)(DETSEG_VX(add_epi32)(q1, bias), 23));
  const vexp_reg p2 = vexp_as_float(DETSEG_VX(slli_epi32)(DETSEG_VX(add_epi32)(q2, bias), 23));
  u = DETSEG_VX(mul_ps)(DETSEG_VX(mul_ps)(u, p1), p2);
#if defined(CPU_CAPABILITY_AVX512)
  u = _mm512_maskz_mov_ps(static_cast<__mmask16>(~_mm512_cmp_ps_mask(d, _mm512_set1_ps(-104.f), _CMP_LT_OQ)), u);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_set1_ps(100.f), d, _CMP_LT_OQ), u,
                              _mm512_set1_ps(__builtin_inff()));
#else
  u = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(-104.f), _CMP_LT_OQ), u);
  return _mm256_blendv_ps(u, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(_mm256_set1_ps(100.f), d, _CMP_LT_OQ));
#endif
}
#undef DETSEG_VX

template <>
inline at::vec::Vectorized<float> dexp(at::vec::Vectorized<float> x) {
  return at::vec::Vectorized<float>(sleef_expf_u10(static_cast<vexp_reg>(x)));
}
#else
template <>
inline at::vec::Vectorized<float> dexp(at::vec::Vectorized<float> x) { return x.exp(); }
#endif
template <>
inline at::vec::Vectorized<double> dexp(at::vec::Vectorized<double> x) { return x.exp(); }
// `x > c ? c : x` lane by lane: the comparison is false for NaN, which passes through.
template <>
inline at::vec::Vectorized<float> clip_above(at::vec::Vectorized<float> x, at::vec::Vectorized<float> c) {
#if defined(CPU_CAPABILITY_AVX512)
  // the compare's mask register straight into the blend (Vectorized's `>` makes it a vector
  // of all-ones lanes and blendv turns that back into a mask: two more instructions)
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, c, _CMP_GT_OQ), x, c);
#else
  return at::vec::Vectorized<float>::blendv(x, c, x > c);
#endif
}
template <>
inline at::vec::Vectorized<double> clip_above(at::vec::Vectorized<double> x, at::vec::Vectorized<double> c) {
  return at::vec::Vectorized<double>::blendv(x, c, x > c);
}

}  // namespace detseg
