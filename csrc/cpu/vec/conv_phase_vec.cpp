// Rows of the sub-pixel transposed convolution for one ISA (CPU_CAPABILITY = DEFAULT, AVX2,
// AVX512). A row is a small GEMM C[m, l] = bias + A[m, k] B[k, l] with K = c_in x (taps that
// land), M = blocks of `stride` columns and N = the stride: tiles of MR blocks x NV vectors
// stay in registers for the whole K loop (AVX-512: up to 12 x 2 zmm, AVX2: 6 x 2 ymm), A values
// are broadcast, B rows are vector loads through a row pointer each, and every output is stored
// once (masked at the cropped edges, optionally past the caches). Each output lane is the same
// chain fma(a_k, b_k, .) from the bias on AVX2 and AVX-512 (bitwise equal to each other);
// DEFAULT and float64 multiply then add. Also the interleave of channels-last output rows.
#include "cpu/vec/conv_phase_vec.h"

// ATen's AVX-512 16x16 transpose trips GCC 12's -Wmaybe-uninitialized inside the masked unpack
// intrinsics: a false positive (as for roi_vec.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

constexpr int64_t P = kConvPhasePanel;

// The stored lanes [lo, hi) of panel p of block m, which starts at column col.
struct Span {
  int64_t col, lo, hi;
};

inline Span span(int64_t m, int64_t p, int64_t sw, int64_t c0, int64_t wo) {
  const int64_t col = m * sw + p * P - c0;
  return {col, std::max<int64_t>(0, -col), std::min({P, sw - p * P, wo - col})};
}

template <typename T>
void row_scalar(T* orow, int64_t wo, int64_t sw, int64_t c0, int64_t M, int64_t np, const T* a, int64_t lda,
                const T* const* b, int64_t K, T bias) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t p = 0; p < np; ++p) {
      const Span s = span(m, p, sw, c0, wo);
      if (s.hi <= s.lo) continue;
      T acc[P];
      for (int64_t l = 0; l < P; ++l) acc[l] = bias;
      for (int64_t k = 0; k < K; ++k) {
        const T av = a[k * lda + m];
        const T* bk = b[k] + p * P;
        for (int64_t l = 0; l < P; ++l) acc[l] += av * bk[l];
      }
      for (int64_t l = s.lo; l < s.hi; ++l) orow[s.col + l] = acc[l];
    }
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)

#if defined(CPU_CAPABILITY_AVX512)
using Vec = __m512;
constexpr int kLanes = 16, kMaxMR = 12, kMaxNV = 2;
inline Vec vset1(float v) { return _mm512_set1_ps(v); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
// Lanes [lo, hi) of v to p[lo, hi) (the others are neither read nor written); whole aligned
// vectors bypass the caches when `stream`.
inline void vstore(float* p, Vec v, int64_t lo, int64_t hi, bool stream) {
  if (lo == 0 && hi == kLanes && stream && (reinterpret_cast<uintptr_t>(p) & 63) == 0)
    _mm512_stream_ps(p, v);
  else if (lo == 0 && hi == kLanes)
    _mm512_storeu_ps(p, v);
  else
    _mm512_mask_storeu_ps(p, __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1)), v);
}
#else
using Vec = __m256;
constexpr int kLanes = 8, kMaxMR = 6, kMaxNV = 2;
inline Vec vset1(float v) { return _mm256_set1_ps(v); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline void vstore(float* p, Vec v, int64_t lo, int64_t hi, bool stream) {
  if (lo == 0 && hi == kLanes && stream && (reinterpret_cast<uintptr_t>(p) & 31) == 0) {
    _mm256_stream_ps(p, v);
  } else if (lo == 0 && hi == kLanes) {
    _mm256_storeu_ps(p, v);
  } else {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(int(lo) - 1)),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(int(hi)), iota));
    _mm256_maskstore_ps(p, mask, v);
  }
}
#endif
constexpr int64_t kVecPerPanel = P / kLanes;

// MR blocks from m0 x NV vectors from vector v0 (v0 counted over the whole block of np panels).
// DF / DL: the first block's first vector / the last block's last vector is cropped away
// entirely (FCN: the half blocks at both edges), so its multiply-adds are skipped.
// f(integral_constant<0>) ... f(integral_constant<N - 1>): constant indices keep the
// accumulator arrays in registers (a runtime-indexed loop spills them to the stack).
template <int N, typename F>
inline void unroll(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) { (f(std::integral_constant<int, I>{}), ...); }(
      std::make_integer_sequence<int, N>{});
}

template <int MR, int NV, bool DF, bool DL>
void tile(float* orow, int64_t wo, int64_t sw, int64_t c0, int64_t m0, int64_t v0, const float* a, int64_t lda,
          const float* const* b, int64_t K, float bias, bool stream) {
  constexpr auto live = [](int i, int v) { return !(DF && i == 0 && v == 0) && !(DL && i == MR - 1 && v == NV - 1); };
  Vec c[MR][NV];
  const Vec bv = vset1(bias);
  unroll<MR>([&](auto i) { unroll<NV>([&](auto v) { c[i][v] = bv; }); });
  const float* ak = a + m0;
  for (int64_t k = 0; k < K; ++k, ak += lda) {
    const float* bk = b[k] + v0 * kLanes;
    Vec bb[NV];
    unroll<NV>([&](auto v) { bb[v] = vload(bk + v * kLanes); });
    unroll<MR>([&](auto i) {
      const Vec av = vset1(ak[i]);
      unroll<NV>([&](auto v) {
        if constexpr (live(i, v)) c[i][v] = vfma(av, bb[v], c[i][v]);
      });
    });
  }
  unroll<MR>([&](auto i) {
    unroll<NV>([&](auto v) {
      if constexpr (live(i, v)) {
        const int64_t vv = v0 + v, p = vv / kVecPerPanel, off = (vv % kVecPerPanel) * kLanes;
        const Span s = span(m0 + i, p, sw, c0, wo);
        const int64_t lo = std::max<int64_t>(s.lo - off, 0), hi = std::min<int64_t>(s.hi - off, kLanes);
        if (hi > lo) vstore(orow + s.col + off, c[i][v], lo, hi, stream);
      }
    });
  });
}

using TileFn = void (*)(float*, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                        const float* const*, int64_t, float, bool);

// kTiles[nv - 1][dead first][dead last][mr - 1]
template <int NV, bool DF, bool DL, std::size_t... I>
constexpr std::array<TileFn, kMaxMR> tile_row(std::index_sequence<I...>) {
  return {&tile<int(I) + 1, NV, DF, DL>...};
}

template <int NV>
constexpr std::array<std::array<std::array<TileFn, kMaxMR>, 2>, 2> tile_nv() {
  constexpr auto seq = std::make_index_sequence<kMaxMR>();
  return {{{tile_row<NV, false, false>(seq), tile_row<NV, false, true>(seq)},
           {tile_row<NV, true, false>(seq), tile_row<NV, true, true>(seq)}}};
}

template <std::size_t... V>
constexpr auto tile_tables(std::index_sequence<V...>) {
  return std::array<std::array<std::array<std::array<TileFn, kMaxMR>, 2>, 2>, sizeof...(V)>{tile_nv<int(V) + 1>()...};
}

constexpr auto kTiles = tile_tables(std::make_index_sequence<kMaxNV>());

#endif

}  // namespace

void conv_phase_row(float* orow, int64_t wo, int64_t sw, int64_t c0, int64_t M, int64_t np, const float* a,
                    int64_t lda, const float* const* b, int64_t K, float bias, bool stream) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  const int64_t nvec = np * kVecPerPanel;
  // Tiles of near-equal height (17 blocks: 9 + 8), so none runs short of independent chains.
  const int64_t nt = (M + kMaxMR - 1) / kMaxMR;
  // Vectors that no stored lane of the first / last block reaches.
  auto dead = [&](int64_t m, int64_t v) {
    const Span s = span(m, v / kVecPerPanel, sw, c0, wo);
    const int64_t off = (v % kVecPerPanel) * kLanes;
    return std::min<int64_t>(s.hi - off, kLanes) <= std::max<int64_t>(s.lo - off, 0);
  };
  for (int64_t v0 = 0; v0 < nvec; v0 += kMaxNV) {
    const int64_t nv = std::min<int64_t>(kMaxNV, nvec - v0);
    for (int64_t t = 0, m0 = 0; t < nt; ++t) {
      const int64_t mr = M / nt + (t < M % nt);
      const bool df = t == 0 && dead(0, v0), dl = t == nt - 1 && dead(M - 1, v0 + nv - 1);
      kTiles[nv - 1][df][dl][mr - 1](orow, wo, sw, c0, m0, v0, a, lda, b, K, bias, stream);
      m0 += mr;
    }
  }
#else
  (void)stream;
  row_scalar<float>(orow, wo, sw, c0, M, np, a, lda, b, K, bias);
#endif
}

void conv_phase_fence() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

void conv_interleave(float* dst, const float* src, int64_t C, int64_t W) {
  constexpr int B = 16;
  int64_t c = 0;
  // 16 x 16 register transposes (ATen's, per ISA), then the leftover channels / columns.
  for (; c + B <= C; c += B) {
    int64_t w = 0;
    for (; w + B <= W; w += B) at::vec::transpose_mxn<float, B, B>(src + c * W + w, W, dst + w * C + c, C);
    for (; w < W; ++w)
      for (int64_t i = c; i < c + B; ++i) dst[w * C + i] = src[i * W + w];
  }
  for (int64_t w = 0; w < W; ++w)
    for (int64_t i = c; i < C; ++i) dst[w * C + i] = src[i * W + w];
}

void conv_interleave(double* dst, const double* src, int64_t C, int64_t W) {
  for (int64_t w = 0; w < W; ++w)
    for (int64_t c = 0; c < C; ++c) dst[w * C + c] = src[c * W + w];
}

void conv_phase_row(double* orow, int64_t wo, int64_t sw, int64_t c0, int64_t M, int64_t np, const double* a,
                    int64_t lda, const double* const* b, int64_t K, double bias, bool) {
  row_scalar<double>(orow, wo, sw, c0, M, np, a, lda, b, K, bias);
}

}  // namespace detseg::cpu::CPU_CAPABILITY
