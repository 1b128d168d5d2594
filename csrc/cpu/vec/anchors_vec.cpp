// Anchor-grid row loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2, AVX512).
#include "cpu/vec/anchors_vec.h"

#include <ATen/cpu/vec/vec.h>

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

}  // namespace

void shift_row(const float* tmpl, int64_t len, float sy, float* out) { shift_row_impl(tmpl, len, sy, out); }
void shift_row(const double* tmpl, int64_t len, double sy, double* out) { shift_row_impl(tmpl, len, sy, out); }

}  // namespace detseg::cpu::CPU_CAPABILITY
