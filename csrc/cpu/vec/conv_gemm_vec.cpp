// AVX-512 GEMM for the transposed convolution (see conv_gemm_vec.h). A 12 x 32 register tile
// (24 accumulators) over the whole k: the weight panel (12 x k) stays in L1, the packed input
// panels (k x 32 each) in L2, and each product writes C once (no beta pass, no C reload).
#include "cpu/vec/conv_gemm_vec.h"

#include <algorithm>
#include <cstring>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace detseg::cpu::CPU_CAPABILITY {

#if defined(CPU_CAPABILITY_AVX512)

bool conv_gemm_available() { return true; }

void conv_gemm_pack_a(float* dst, const float* a, int64_t row_stride, int64_t k_stride, int64_t m, int64_t k) {
  for (int64_t p = 0; p < m; p += kGemmMr) {
    const int64_t rows = std::min(kGemmMr, m - p);
    float* d = dst + p * k;
    for (int64_t kk = 0; kk < k; ++kk, d += kGemmMr) {
      const float* s = a + p * row_stride + kk * k_stride;
      if (row_stride == 1)
        std::memcpy(d, s, rows * sizeof(float));
      else
        for (int64_t r = 0; r < rows; ++r) d[r] = s[r * row_stride];
      std::fill(d + rows, d + kGemmMr, 0.f);
    }
  }
}

namespace {

// NV = 2 vectors of columns, or 1 for a last panel of at most 16 (half the arithmetic).
template <int MR, int NV>
inline void tile(const float* ap, const float* bp, int64_t k, float* c, int64_t ldc, int64_t rows, __mmask16 m0,
                 __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk, ap += kGemmMr, bp += kGemmNr) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = NV > 1 ? _mm512_loadu_ps(bp + 16) : b0;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(ap[r]);
      acc0[r] = _mm512_fmadd_ps(a, b0, acc0[r]);
      if (NV > 1) acc1[r] = _mm512_fmadd_ps(a, b1, acc1[r]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    if (NV > 1) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

}  // namespace

void conv_gemm(const float* ap, int64_t m, int64_t k, const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc,
               float* bbuf) {
  const int64_t panels = (n + kGemmNr - 1) / kGemmNr;
  // (masked loads: nothing past b[kk, n - 1] is read; the panel's padding columns are zeros)
  for (int64_t kk = 0; kk < k; ++kk) {
    const float* src = b + kk * ldb;
    for (int64_t q = 0; q < panels; ++q) {
      float* d = bbuf + (q * k + kk) * kGemmNr;
      const int64_t cols = std::min(kGemmNr, n - q * kGemmNr);
      const __mmask16 m0 = cols >= 16 ? 0xFFFF : __mmask16((1u << cols) - 1);
      const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : __mmask16((1u << (cols - 16)) - 1);
      _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m0, src + q * kGemmNr));
      _mm512_storeu_ps(d + 16, _mm512_maskz_loadu_ps(m1, src + q * kGemmNr + 16));
    }
  }
  // Input panels in groups that stay in L2 (half of it) while every weight panel passes over
  // them: the backward's grad_input product (k = 1024, n = 1024 on U-Net 512) would otherwise
  // re-read 4 MiB of panels from L3 per weight panel.
  constexpr int64_t kL2Bytes = int64_t(512) << 10;
  const int64_t group = std::max<int64_t>(1, kL2Bytes / (k * kGemmNr * int64_t(sizeof(float))));
  for (int64_t q0 = 0; q0 < panels; q0 += group) {
    const int64_t q1 = std::min(panels, q0 + group);
    for (int64_t p = 0; p < m; p += kGemmMr) {
      const int64_t rows = std::min(kGemmMr, m - p);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t cols = std::min(kGemmNr, n - q * kGemmNr);
        const __mmask16 m0 = cols >= 16 ? 0xFFFF : __mmask16((1u << cols) - 1);
        const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : __mmask16((1u << (cols - 16)) - 1);
        float* cq = c + p * ldc + q * kGemmNr;
        if (cols > 16)
          tile<kGemmMr, 2>(ap + p * k, bbuf + q * k * kGemmNr, k, cq, ldc, rows, m0, m1);
        else
          tile<kGemmMr, 1>(ap + p * k, bbuf + q * k * kGemmNr, k, cq, ldc, rows, m0, m1);
      }
    }
  }
}

#else

bool conv_gemm_available() { return false; }
void conv_gemm_pack_a(float*, const float*, int64_t, int64_t, int64_t, int64_t) {}
void conv_gemm(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, float*) {}

#endif

}  // namespace detseg::cpu::CPU_CAPABILITY
