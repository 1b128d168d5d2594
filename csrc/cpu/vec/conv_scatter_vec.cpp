// Scatter-add for one ISA (CPU_CAPABILITY = DEFAULT, AVX2, AVX512). Stride 2 (the 3x3 stride-2
// decoder's col2im, whose scalar strided adds cost about a tenth of the forward) spreads src
// into the even lanes of a vector (an expanding load on AVX-512, a permute on AVX2) and adds it; other
// strides and float64 stay scalar. Each element gets the same single addition as the scalar
// loop: results are bitwise identical across ISAs. Masked loads and stores: the odd lanes
// (another tap's outputs, or past the end of the row) are neither read nor written.
#include "cpu/vec/conv_scatter_vec.h"

#include <algorithm>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace detseg::cpu::CPU_CAPABILITY {

void conv_scatter_add(float* out, const float* src, int64_t n, int64_t stride) {
  int64_t j = 0;
  if (stride == 1) {
    for (; j < n; ++j) out[j] += src[j];
    return;
  }
#if defined(CPU_CAPABILITY_AVX512)
  if (stride == 2) {
    for (; j + 8 <= n; j += 8) {
      const __m512 s = _mm512_maskz_expandloadu_ps(0x5555, src + j);
      const __m512 o = _mm512_maskz_loadu_ps(0x5555, out + 2 * j);
      _mm512_mask_storeu_ps(out + 2 * j, 0x5555, _mm512_add_ps(o, s));
    }
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if (stride == 2) {
    const __m256i idx = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    const __m256i even = _mm256_set_epi32(0, -1, 0, -1, 0, -1, 0, -1);
    for (; j + 4 <= n; j += 4) {
      const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + j)), idx);
      const __m256 o = _mm256_maskload_ps(out + 2 * j, even);
      _mm256_maskstore_ps(out + 2 * j, even, _mm256_add_ps(o, s));
    }
  }
#endif
  for (; j < n; ++j) out[j * stride] += src[j];
}

void conv_scatter_add(double* out, const double* src, int64_t n, int64_t stride) {
  for (int64_t j = 0; j < n; ++j) out[j * stride] += src[j];
}

namespace {

template <typename T>
void row_taps_scalar(T* orow, int64_t wo, bool start, T bias, int ntaps, const T* const* src, const int64_t* first,
                     const int64_t* count, int64_t stride) {
  if (start) std::fill(orow, orow + wo, bias);
  for (int t = 0; t < ntaps; ++t) conv_scatter_add(orow + first[t], src[t], count[t], stride);
}

}  // namespace

// Stride 2 on AVX-512: 16 outputs per step, each tap's values expanded into its parity's lanes
// (masked to the lanes it covers), one store per step.
void conv_row_taps(float* orow, int64_t wo, bool start, float bias, int ntaps, const float* const* src,
                   const int64_t* first, const int64_t* count, int64_t stride) {
#if defined(CPU_CAPABILITY_AVX512)
  if (stride == 2) {
    const __m512 b = _mm512_set1_ps(bias);
    // (expanding loads from memory are slow on AMD cores: the edge steps only)
    const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    // Steps [fast0, fast1] are inside every tap's run and the row: per tap one fixed pointer
    // and parity, no per-step range arithmetic (the general step below does the same adds).
    constexpr int kMaxFast = 16;
    const float* base[kMaxFast];
    __mmask16 par[kMaxFast];
    int64_t fast0 = 0, fast1 = ntaps <= kMaxFast ? wo - 16 : -1;
    for (int t = 0; t < ntaps && t < kMaxFast; ++t) {
      fast0 = std::max(fast0, first[t] - 1);
      fast1 = std::min(fast1, first[t] + 2 * count[t] - 16);
      base[t] = src[t] + ((first[t] & 1) - first[t]) / 2;
      par[t] = (first[t] & 1) ? __mmask16(0xAAAA) : __mmask16(0x5555);
    }
    for (int64_t x0 = 0; x0 < wo; x0 += 16) {
      if (x0 >= fast0 && x0 <= fast1) {
        __m512 acc = start ? b : _mm512_loadu_ps(orow + x0);
        for (int t = 0; t < ntaps; ++t) {
          const __m512 v = _mm512_maskz_loadu_ps(0xFF, base[t] + x0 / 2);
          acc = _mm512_mask_add_ps(acc, par[t], acc, _mm512_maskz_permutexvar_ps(par[t], pairs, v));
        }
        _mm512_storeu_ps(orow + x0, acc);
        continue;
      }
      const __mmask16 live = wo - x0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (wo - x0)) - 1);
      __m512 acc = start ? b : _mm512_maskz_loadu_ps(live, orow + x0);
      for (int t = 0; t < ntaps; ++t) {
        // Tap t's j-th value lands on lane lo + 2 j of this step.
        const int64_t lo = first[t] - x0, hi = lo + 2 * count[t];
        if (hi <= 0 || lo >= 16) continue;
        const __mmask16 parity = (lo & 1) ? __mmask16(0xAAAA) : __mmask16(0x5555);
        if (lo <= 1 && hi >= 16) {  // all 8 lanes of the parity: a plain load spread by a permute
          const __m512 v = _mm512_maskz_loadu_ps(0xFF, src[t] + ((lo & 1) - lo) / 2);
          acc = _mm512_mask_add_ps(acc, parity, acc, _mm512_maskz_permutexvar_ps(parity, pairs, v));
          continue;
        }
        const uint32_t a = uint32_t(std::max<int64_t>(lo, 0)), e = uint32_t(std::min<int64_t>(hi, 16));
        const uint32_t range = ((1u << e) - 1) & ~((1u << a) - 1);
        const __mmask16 m = __mmask16(range) & parity;
        const float* s = src[t] + (lo >= 0 ? 0 : ((lo & 1) - lo) / 2);
        acc = _mm512_mask_add_ps(acc, m, acc, _mm512_maskz_expandloadu_ps(m, s));
      }
      _mm512_mask_storeu_ps(orow + x0, live, acc);
    }
    return;
  }
#endif
  row_taps_scalar(orow, wo, start, bias, ntaps, src, first, count, stride);
}

void conv_interleave2(float* out, const float* s0, const float* s1, int64_t n, float bias) {
  int64_t i = 0;
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 b = _mm512_set1_ps(bias);
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (; i + 16 <= n; i += 16) {
    const __m512 a = _mm512_add_ps(_mm512_loadu_ps(s0 + i), b), c = _mm512_add_ps(_mm512_loadu_ps(s1 + i), b);
    _mm512_storeu_ps(out + 2 * i, _mm512_permutex2var_ps(a, lo, c));
    _mm512_storeu_ps(out + 2 * i + 16, _mm512_permutex2var_ps(a, hi, c));
  }
#endif
  for (; i < n; ++i) {
    out[2 * i] = s0[i] + bias;
    out[2 * i + 1] = s1[i] + bias;
  }
}

void conv_interleave2(double* out, const double* s0, const double* s1, int64_t n, double bias) {
  for (int64_t i = 0; i < n; ++i) {
    out[2 * i] = s0[i] + bias;
    out[2 * i + 1] = s1[i] + bias;
  }
}

void conv_row_taps(double* orow, int64_t wo, bool start, double bias, int ntaps, const double* const* src,
                   const int64_t* first, const int64_t* count, int64_t stride) {
  row_taps_scalar(orow, wo, start, bias, ntaps, src, first, count, stride);
}

// Stride 2: the even lanes of two vectors (masked loads: nothing past src[2 (n - 1)] is read).
void conv_gather(float* dst, const float* src, int64_t n, int64_t stride) {
  int64_t j = 0;
  if (stride == 1) {
    for (; j < n; ++j) dst[j] = src[j];
    return;
  }
#if defined(CPU_CAPABILITY_AVX512)
  if (stride == 2) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (; j + 16 <= n; j += 16) {
      const __m512 lo = _mm512_maskz_loadu_ps(0x5555, src + 2 * j);
      const __m512 hi = _mm512_maskz_loadu_ps(0x5555, src + 2 * j + 16);
      _mm512_storeu_ps(dst + j, _mm512_permutex2var_ps(lo, evens, hi));
    }
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if (stride == 2) {
    const __m256i even = _mm256_set_epi32(0, -1, 0, -1, 0, -1, 0, -1);
    for (; j + 8 <= n; j += 8) {
      const __m256 lo = _mm256_maskload_ps(src + 2 * j, even);
      const __m256 hi = _mm256_maskload_ps(src + 2 * j + 8, even);
      // (lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6) -> lanes in order
      const __m256 mix = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
      _mm256_storeu_ps(dst + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(mix), 0xD8)));
    }
  }
#endif
  for (; j < n; ++j) dst[j] = src[j * stride];
}

void conv_gather(double* dst, const double* src, int64_t n, int64_t stride) {
  for (int64_t j = 0; j < n; ++j) dst[j] = src[j * stride];
}

}  // namespace detseg::cpu::CPU_CAPABILITY
