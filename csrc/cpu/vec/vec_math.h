// Vector overloads of the scalar helpers of detseg/box_coder.h, for the per-ISA loops that
// instantiate the header math with T = at::vec::Vectorized<scalar> (include after ATen's
// vec.h, before instantiating). exp is ATen's vector exp (SLEEF, 1 ulp) on AVX2 / AVX512: the
// last bit may differ from the scalar std::exp of the DEFAULT build and of the CUDA kernel.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "detseg/box_coder.h"

namespace detseg {

template <>
inline at::vec::Vectorized<float> dexp(at::vec::Vectorized<float> x) { return x.exp(); }
template <>
inline at::vec::Vectorized<double> dexp(at::vec::Vectorized<double> x) { return x.exp(); }
// `x > c ? c : x` lane by lane: the comparison is false for NaN, which passes through.
template <>
inline at::vec::Vectorized<float> clip_above(at::vec::Vectorized<float> x, at::vec::Vectorized<float> c) {
  return at::vec::Vectorized<float>::blendv(x, c, x > c);
}
template <>
inline at::vec::Vectorized<double> clip_above(at::vec::Vectorized<double> x, at::vec::Vectorized<double> c) {
  return at::vec::Vectorized<double>::blendv(x, c, x > c);
}

}  // namespace detseg
