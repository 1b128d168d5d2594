// Channel-inner loops of the channels-last RoI kernels for one ISA (compiled with
// CPU_CAPABILITY = DEFAULT, AVX2 and AVX512). Element-wise loops the compiler vectorises:
// every lane performs the scalar code's operations in the scalar code's order (no FMA under
// -ffp-contract=off, no reassociation), so each ISA gives the generic loop's bits.
#include "cpu/vec/roi_vec.h"

namespace detseg::cpu::CPU_CAPABILITY {

void roi_bilinear_accumulate(float* __restrict__ acc, const float* __restrict__ p1, const float* __restrict__ p2,
                             const float* __restrict__ p3, const float* __restrict__ p4, float w1, float w2, float w3,
                             float w4, int64_t n) {
  for (int64_t c = 0; c < n; ++c) acc[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c];
}

void roi_scatter_corner(float* __restrict__ dst, const float* __restrict__ g, float w, float count, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] += g[c] * w / count;
}

// Branch-free form of pool_takes(v, b, false) so the loop vectorises; same comparisons, same bits.
void roi_pool_max_update(float* __restrict__ best, int32_t* __restrict__ am, const float* __restrict__ px,
                         int32_t pos, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    const float v = px[c], b = best[c];
    const bool take = (v > b) | ((v != v) & (b == b));
    best[c] = take ? v : b;
    am[c] = take ? pos : am[c];
  }
}

}  // namespace detseg::cpu::CPU_CAPABILITY
