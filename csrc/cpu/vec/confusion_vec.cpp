// confusion_matrix inner loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2,
// AVX512). Narrow labels (<= 16 bits): two passes over a block that fits L1, the bin of every
// pixel (detseg::confusion_bin, branch-free, vectorised in 16-bit lanes) then a scalar
// histogram of the bins. Wide labels: one fused pass; on AVX-512 the bins of 16 pixels
// are computed in vector lanes one group ahead of their increments (count_wide), elsewhere
// one scalar loop. A bin pass then an increment pass measured slower for wide labels (the bin
// pass waits on memory, the increments on nothing): 8 x 512 x 512, C = 21, one thread, int64:
// two-pass 2.1-2.3 ms, scalar fused 1.5-1.6 ms, count_wide 1.32-1.35 ms.
// Either way pixel i is counted into copy i % copies of the histogram, which breaks the
// load-increment-store chain through one bin along a region. Integer counts: the result does
// not depend on the split.
#include "cpu/vec/confusion_vec.h"

#include "detseg/masks.h"

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

constexpr int64_t kBlock = 2048;

template <typename W, typename T>
void count_two_pass(const T* __restrict pred, const T* __restrict target, const ConfusionArgs& a, T ignore,
                    bool has_ignore) {
  alignas(64) W bins[kBlock];
  const W c = static_cast<W>(a.c);
  uint32_t* __restrict h0 = a.hist;
  for (int64_t start = 0; start < a.n; start += kBlock) {
    const int64_t len = a.n - start < kBlock ? a.n - start : kBlock;
    const T* p = pred + start;
    const T* t = target + start;
    for (int64_t i = 0; i < len; ++i) bins[i] = confusion_bin<W, T>(p[i], t[i], c, ignore, has_ignore);
    if (a.copies == 4) {
      uint32_t* __restrict h1 = h0 + a.stride;
      uint32_t* __restrict h2 = h1 + a.stride;
      uint32_t* __restrict h3 = h2 + a.stride;
      int64_t i = 0;
      for (; i + 4 <= len; i += 4) {
        ++h0[bins[i]];
        ++h1[bins[i + 1]];
        ++h2[bins[i + 2]];
        ++h3[bins[i + 3]];
      }
      for (; i < len; ++i) ++h0[bins[i]];
    } else if (a.copies == 2) {
      uint32_t* __restrict h1 = h0 + a.stride;
      int64_t i = 0;
      for (; i + 2 <= len; i += 2) {
        ++h0[bins[i]];
        ++h1[bins[i + 1]];
      }
      for (; i < len; ++i) ++h0[bins[i]];
    } else {
      for (int64_t i = 0; i < len; ++i) ++h0[bins[i]];
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// confusion_bin of the 16 pixels at p, t: the range test in the label's own width (unsigned
// max, one compare), the bin in 32-bit lanes.
template <typename T>
inline __m512i bins16(const T* p, const T* t, uint32_t c, T ignore, bool has_ignore) {
  const __m512i vc = _mm512_set1_epi32(static_cast<int>(c));
  __m512i p32, t32;
  __mmask16 valid, ign = 0;
  if constexpr (sizeof(T) == 8) {
    const __m512i pa = _mm512_loadu_si512(p), pb = _mm512_loadu_si512(p + 8);
    const __m512i ta = _mm512_loadu_si512(t), tb = _mm512_loadu_si512(t + 8);
    const __m512i c64 = _mm512_set1_epi64(static_cast<int64_t>(c));
    valid = static_cast<__mmask16>(_mm512_cmplt_epu64_mask(_mm512_max_epu64(pa, ta), c64) |
                                   (_mm512_cmplt_epu64_mask(_mm512_max_epu64(pb, tb), c64) << 8));
    if (has_ignore) {
      const __m512i ig = _mm512_set1_epi64(static_cast<int64_t>(ignore));
      ign = static_cast<__mmask16>(_mm512_cmpeq_epi64_mask(ta, ig) | (_mm512_cmpeq_epi64_mask(tb, ig) << 8));
    }
    p32 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(pa)), _mm512_cvtepi64_epi32(pb), 1);
    t32 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(ta)), _mm512_cvtepi64_epi32(tb), 1);
  } else {
    p32 = _mm512_loadu_si512(p), t32 = _mm512_loadu_si512(t);
    valid = _mm512_cmplt_epu32_mask(_mm512_max_epu32(p32, t32), vc);
    if (has_ignore) ign = _mm512_cmpeq_epi32_mask(t32, _mm512_set1_epi32(static_cast<int32_t>(ignore)));
  }
  __m512i bin = _mm512_add_epi32(_mm512_mullo_epi32(t32, vc), p32);
  bin = _mm512_mask_blend_epi32(valid, _mm512_set1_epi32(static_cast<int>(c * c + 1)), bin);
  return _mm512_mask_blend_epi32(ign, bin, _mm512_set1_epi32(static_cast<int>(c * c)));
}

// 32- and 64-bit labels, four histogram copies (pixel i into copy i % 4, as everywhere): one loop that computes the bins of the next 16
// pixels while counting the previous 16 (a two-slot ring), so the label loads overlap the
// increments. A pass of bins then a pass of increments serialises them: the bin pass waits
// on memory, the increments on nothing (measured 2.1 ms vs 1.5 for int64, C = 21, one thread).
template <typename T>
void count_wide(const T* __restrict pred, const T* __restrict target, const ConfusionArgs& a, T ignore,
                bool has_ignore) {
  alignas(64) uint32_t ring[32];
  const uint32_t c = static_cast<uint32_t>(a.c);
  uint32_t* const h = a.hist;
  const int64_t stride = a.stride;
  const int64_t groups = a.n / 16;
  for (int64_t g = 0; g <= groups; ++g) {
    if (g < groups) _mm512_store_si512(ring + (g & 1) * 16, bins16<T>(pred + g * 16, target + g * 16, c, ignore, has_ignore));
    if (g == 0) continue;
    const uint32_t* b = ring + ((g - 1) & 1) * 16;
#pragma GCC unroll 16
    for (int k = 0; k < 16; ++k) ++h[(k % 4) * stride + b[k]];
  }
  for (int64_t i = groups * 16; i < a.n; ++i)
    ++h[confusion_bin<uint32_t, T>(pred[i], target[i], c, ignore, has_ignore)];
}
#endif

template <typename T, bool kIgnore>
void count_fused(const T* __restrict pred, const T* __restrict target, const ConfusionArgs& a, T ignore) {
  const uint32_t c = static_cast<uint32_t>(a.c);
  uint32_t* __restrict h0 = a.hist;
  int64_t i = 0;
  if (a.copies == 4) {
    uint32_t* __restrict h1 = h0 + a.stride;
    uint32_t* __restrict h2 = h1 + a.stride;
    uint32_t* __restrict h3 = h2 + a.stride;
    for (; i + 4 <= a.n; i += 4) {
      ++h0[confusion_bin<uint32_t, T>(pred[i], target[i], c, ignore, kIgnore)];
      ++h1[confusion_bin<uint32_t, T>(pred[i + 1], target[i + 1], c, ignore, kIgnore)];
      ++h2[confusion_bin<uint32_t, T>(pred[i + 2], target[i + 2], c, ignore, kIgnore)];
      ++h3[confusion_bin<uint32_t, T>(pred[i + 3], target[i + 3], c, ignore, kIgnore)];
    }
  } else if (a.copies == 2) {
    uint32_t* __restrict h1 = h0 + a.stride;
    for (; i + 2 <= a.n; i += 2) {
      ++h0[confusion_bin<uint32_t, T>(pred[i], target[i], c, ignore, kIgnore)];
      ++h1[confusion_bin<uint32_t, T>(pred[i + 1], target[i + 1], c, ignore, kIgnore)];
    }
  }
  for (; i < a.n; ++i) ++h0[confusion_bin<uint32_t, T>(pred[i], target[i], c, ignore, kIgnore)];
}

template <typename T>
void count(const T* pred, const T* target, const ConfusionArgs& a) {
  const T ignore = static_cast<T>(a.ignore_index);
  if constexpr (sizeof(T) <= 2) {
    if (confusion_bins(a.c) <= 65536) return count_two_pass<uint16_t, T>(pred, target, a, ignore, a.has_ignore);
    return count_two_pass<uint32_t, T>(pred, target, a, ignore, a.has_ignore);
  } else {
#if defined(CPU_CAPABILITY_AVX512)
    if (a.copies == 4) return count_wide<T>(pred, target, a, ignore, a.has_ignore);
#endif
    if (a.has_ignore) return count_fused<T, true>(pred, target, a, ignore);
    return count_fused<T, false>(pred, target, a, ignore);
  }
}

}  // namespace

void confusion_count(const uint8_t* p, const uint8_t* t, const ConfusionArgs& a) { count(p, t, a); }
void confusion_count(const int8_t* p, const int8_t* t, const ConfusionArgs& a) { count(p, t, a); }
void confusion_count(const int16_t* p, const int16_t* t, const ConfusionArgs& a) { count(p, t, a); }
void confusion_count(const int32_t* p, const int32_t* t, const ConfusionArgs& a) { count(p, t, a); }
void confusion_count(const int64_t* p, const int64_t* t, const ConfusionArgs& a) { count(p, t, a); }

}  // namespace detseg::cpu::CPU_CAPABILITY
