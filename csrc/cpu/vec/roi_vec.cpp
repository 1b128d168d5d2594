// Channel-inner loops of the channels-last RoI kernels for one ISA (compiled with
// CPU_CAPABILITY = DEFAULT, AVX2 and AVX512). Element-wise loops the compiler vectorises:
// every lane performs the scalar code's operations in the scalar code's order (no FMA under
// -ffp-contract=off, no reassociation), so each ISA gives the generic loop's bits.
#include "cpu/vec/roi_vec.h"

#include <ATen/cpu/vec/vec.h>

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

namespace {

// One chain of pool_takes(v, cur, false) updates over the pixels [w0, w1) of row h, every
// `step`-th one; positions grow along a chain, so ties keep the chain's first pixel.
inline void pool_chain(const float* __restrict__ row, int64_t pos0, int64_t w0, int64_t w1, float* __restrict__ b,
                       int32_t* __restrict__ a) {
  constexpr int B = kRoiPoolBlock;
  for (int64_t w = w0; w < w1; w += 2) {
    const float* px = row + w * B;
    const int32_t pos = static_cast<int32_t>(pos0 + w);
    for (int c = 0; c < B; ++c) {
      const float v = px[c], cur = b[c];
      const bool take = (v > cur) | ((v != v) & (cur == cur));
      b[c] = take ? v : cur;
      a[c] = take ? pos : a[c];
    }
  }
}

}  // namespace

// Two interleaved chains (even / odd columns) halve the compare-and-select dependency chain;
// the merge takes the odd chain's pixel where it is better or, on a tie, earlier in scan
// order, which is pool_takes' first-maximum rule.
void roi_pool_block(const float* __restrict__ bp, int64_t W, const int64_t* hr, const int64_t* wr, int ph, int pw,
                    float* __restrict__ best, int32_t* __restrict__ am) {
  constexpr int B = kRoiPoolBlock;
  float b2[B];
  int32_t a2[B];
  for (int p = 0; p < ph; ++p) {
    const int64_t h0 = hr[2 * p], h1 = hr[2 * p + 1];
    for (int q = 0; q < pw; ++q) {
      const int64_t w0 = wr[2 * q], w1 = wr[2 * q + 1];
      float* b = best + (p * pw + q) * B;
      int32_t* a = am + (p * pw + q) * B;
      if (h1 <= h0 || w1 <= w0) {
        for (int c = 0; c < B; ++c) b[c] = 0.0f, a[c] = -1;
        continue;
      }
      // Both chains start at the first pixel, which always wins (pool_takes with first = true).
      const float* px0 = bp + (h0 * W + w0) * B;
      for (int c = 0; c < B; ++c) b[c] = b2[c] = px0[c], a[c] = a2[c] = static_cast<int32_t>(h0 * W + w0);
      for (int64_t h = h0; h < h1; ++h) {
        const float* row = bp + h * W * B;
        const int64_t start = h == h0 ? w0 + 1 : w0;
        pool_chain(row, h * W, start, w1, b, a);
        pool_chain(row, h * W, start + 1, w1, b2, a2);
      }
      for (int c = 0; c < B; ++c) {
        const float x = b[c], y = b2[c];
        const bool xn = x != x, yn = y != y, earlier = a2[c] < a[c];
        const bool take = (y > x) | (yn & !xn) | (((y == x) | (xn & yn)) & earlier);
        b[c] = take ? y : x;
        a[c] = take ? a2[c] : a[c];
      }
    }
  }
}

void roi_pool_block_fill(const float* __restrict__ src, int64_t HW, int64_t nc, float* __restrict__ dst) {
  constexpr int B = kRoiPoolBlock;
  int64_t pos = 0;
  if (nc == B) {
    // 16 x 16 register transposes (ATen's, per ISA): one vector store per pixel.
    for (; pos + B <= HW; pos += B) at::vec::transpose_mxn<float, B, B>(src + pos, HW, dst + pos * B, B);
  }
  for (; pos < HW; ++pos)
    for (int64_t j = 0; j < B; ++j) dst[pos * B + j] = j < nc ? src[j * HW + pos] : 0.0f;
}

}  // namespace detseg::cpu::CPU_CAPABILITY
