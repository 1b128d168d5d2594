// Host-side pieces shared by the CPU transposed-convolution forward (conv_transpose.cpp) and
// backward (conv_transpose_backward.cpp): BLAS on raw row-major buffers, task buffers, the
// compute type. Internal to those two files.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <type_traits>

#include "conv_transpose_host.h"
#include "cpu/isa.h"
#include "cpu/vec/conv_gemm_vec.h"

namespace detseg::conv_cpu {

// Elements of one task's GEMM buffer (4 MiB of float): wide enough that each single-threaded
// GEMM runs at the full-matrix rate (measured against 1 MiB tiles on the U-Net shapes).
constexpr int64_t kBufElems = int64_t(1) << 20;

using Geom = ConvGeom;

// Row-major C[m, n] = op(A)[m, k] op(B)[k, n] (+ C when accumulate) on raw buffers with leading
// dimensions. Through at::mm_out / addmm_ (ATen's BLAS, MKL here: cpublas is not exported);
// inside at::parallel_for it runs single-threaded, which is what keeps results independent of
// the thread count.
template <typename T>
at::Tensor rm_view(const T* p, int64_t rows, int64_t cols, int64_t ld, bool transposed) {
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  void* q = const_cast<T*>(p);
  return transposed ? at::from_blob(q, {rows, cols}, {1, ld}, opts) : at::from_blob(q, {rows, cols}, {ld, 1}, opts);
}

template <typename T>
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             bool accumulate, T* c, int64_t ldc) {
  at::Tensor C = rm_view<T>(c, m, n, ldc, false);
  const at::Tensor A = rm_view<T>(a, m, k, lda, ta), B = rm_view<T>(b, k, n, ldb, tb);
  if (accumulate)
    C.addmm_(A, B);
  else
    at::mm_out(C, A, B);
}

template <typename T>
std::unique_ptr<T[]> scratch(int64_t elems) {
  return std::unique_ptr<T[]>(new T[std::max<int64_t>(elems, 1)]);
}

// Row-major C[m, n] = op(A)[m, k] B[k, n] for one A (a weight block: given transposed, a[k, m], when
// ta) and many B (input bands). Float32 on AVX-512 packs op(A) once for the csrc/cpu/vec/conv_gemm_vec
// kernel (faster than MKL's sgemm here, see its header); otherwise each product goes through
// gemm_rm. Either way a product is single-threaded and its sums do not depend on the thread
// count. DETSEG_CONV_OWN_GEMM=0 (read at construction) forces gemm_rm: the fallback's tests.
template <typename T>
class WeightGemm {
 public:
  WeightGemm(bool ta, int64_t m, int64_t k, const T* a, int64_t lda, int64_t n_max)
      : ta_(ta), m_(m), k_(k), a_(a), lda_(lda) {
    if constexpr (std::is_same_v<T, float>) {
      const char* off = std::getenv("DETSEG_CONV_OWN_GEMM");
      if (m > 0 && k > 0 && !(off && off[0] == '0') && DETSEG_ISA_CALL(conv_gemm_available)) {
        packed_a_ = scratch<float>(cpu::gemm_packed_a_elems(m, k));
        packed_b_ = scratch<float>(cpu::gemm_packed_b_elems(n_max, k));
        n_max_ = n_max;
        DETSEG_ISA_CALL(conv_gemm_pack_a, packed_a_.get(), a, ta ? 1 : lda, ta ? lda : 1, m, k);
      }
    }
  }

  // C = op(A) B for n <= n_max columns.
  void operator()(int64_t n, const T* b, int64_t ldb, T* c, int64_t ldc) const {
    if (n <= 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (packed_a_) {
        TORCH_INTERNAL_ASSERT(n <= n_max_);
        DETSEG_ISA_CALL(conv_gemm, packed_a_.get(), m_, k_, b, ldb, n, c, ldc, packed_b_.get());
        return;
      }
    }
    gemm_rm<T>(ta_, false, m_, n, k_, a_, lda_, b, ldb, false, c, ldc);
  }

 private:
  bool ta_;
  int64_t m_, k_;
  const T* a_;
  int64_t lda_, n_max_ = 0;
  std::unique_ptr<float[]> packed_a_, packed_b_;
};

// Rows of `per_row` elements that fill a task buffer, in [1, limit].
inline int64_t rows_for(int64_t per_row, int64_t limit, int64_t elems = kBufElems) {
  return std::clamp<int64_t>(elems / std::max<int64_t>(per_row, 1), 1, limit);
}

// Half types accumulate in float32.
inline at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Buffer elements of a GEMM whose output is read back by a scatter (col2im): small enough to
// stay in L2 between the GEMM and the scatter (MKL runs as fast on such tiles).
// Measured on the 3x3 decoder: 1 MiB of float runs as fast as 4 MiB without the recomputed
// input rows of output-row bands.
constexpr int64_t kL2Elems = int64_t(1) << 18;

// The sub-pixel forward paths (conv_transpose_phase.cpp; float and double): x, wt as given to
// the forward (NCHW input, weight [C_in, C_out / groups, kH, kW]); out NCHW, or channels-last
// for forward_phase_direct when `channels_last`.
template <typename T>
void forward_phase(const Geom& g, const T* x, const T* wt, const T* bias, T* out);
template <typename T>
void forward_phase_direct(const Geom& g, const T* x, const T* wt, const T* bias, T* out, bool channels_last);

}  // namespace detseg::conv_cpu
