// Float32 GEMM of the transposed convolution's forward (csrc/cpu/conv_transpose.cpp): the weight
// side packed once per task, each input band packed per product. MKL's sgemm runs at ~90% of
// what oneDNN's JIT reaches on this AMD machine (the ATen channels-last peer), so the forward
// uses its own AVX-512 micro-kernel; builds without one report false and the caller falls back
// to BLAS. Compiled once per ISA (csrc/cpu/vec/conv_gemm_vec.cpp), called through DETSEG_ISA_CALL.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {
// Panel widths: the weight side in rows of kGemmMr, the input side in columns of kGemmNr.
constexpr int64_t kGemmMr = 12, kGemmNr = 32;
inline int64_t gemm_packed_a_elems(int64_t m, int64_t k) { return (m + kGemmMr - 1) / kGemmMr * kGemmMr * k; }
inline int64_t gemm_packed_b_elems(int64_t n, int64_t k) { return (n + kGemmNr - 1) / kGemmNr * kGemmNr * k; }
}  // namespace detseg::cpu

// Whether this ISA has the kernel.
DETSEG_ISA_DECLARE(bool conv_gemm_available())
// dst (gemm_packed_a_elems(m, k)) = panels of A[m, k], element (i, j) at a[i * row_stride + j * k_stride]
// (row_stride 1: A given as its transpose, the forward's weight).
DETSEG_ISA_DECLARE(void conv_gemm_pack_a(float* dst, const float* a, int64_t row_stride, int64_t k_stride, int64_t m,
                                         int64_t k))
// Row-major c[m, n] (ldc) = A b, A packed by conv_gemm_pack_a, b[k, n] (ldb); bbuf holds
// gemm_packed_b_elems(n, k) floats. Each element is one FMA chain over k in order.
DETSEG_ISA_DECLARE(void conv_gemm(const float* ap, int64_t m, int64_t k, const float* b, int64_t ldb, int64_t n,
                                  float* c, int64_t ldc, float* bbuf))
