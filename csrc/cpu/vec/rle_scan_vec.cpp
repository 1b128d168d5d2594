// Transition scan of RLE encoding for one ISA (see rle_scan_vec.h). A mask is mostly long
// runs, so the scan is a stream of loads and compares whose masks are almost always zero; the
// rare set bits are walked with tzcnt. Validity (every byte 0 or 1) is the OR of all bytes,
// checked once at the end.
#include "cpu/vec/rle_scan_vec.h"

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

// Appends base + (bit index) for every set bit of m.
inline uint32_t* emit(uint64_t m, int64_t base, uint32_t* out) {
  while (m) {
    *out++ = uint32_t(base + __builtin_ctzll(m));
    m &= m - 1;
  }
  return out;
}

// Bytes [j, a), j >= 1, one at a time: the tail of the vector loops.
inline uint32_t* scalar_tail(const uint8_t* t, int64_t j, int64_t a, uint8_t& any, uint32_t* out) {
  for (; j < a; ++j) {
    any |= t[j];
    if (t[j] != t[j - 1]) *out++ = uint32_t(j);
  }
  return out;
}

}  // namespace

int64_t rle_transitions(const uint8_t* t, int64_t a, uint32_t* pos) {
  if (a <= 0) return 0;
  uint32_t* out = pos;
  uint8_t any = t[0];
  if (t[0] != 0) *out++ = 0;
  // j >= 1 from here on, so t + j - 1 (the shifted neighbour) is always readable.
  int64_t j = 1;
#if defined(CPU_CAPABILITY_AVX512)
  __m512i acc = _mm512_setzero_si512();
  for (; j + 256 <= a; j += 256) {
    const uint8_t* p = t + j;
    const __m512i v0 = _mm512_loadu_si512(p), v1 = _mm512_loadu_si512(p + 64);
    const __m512i v2 = _mm512_loadu_si512(p + 128), v3 = _mm512_loadu_si512(p + 192);
    const uint64_t m0 = _mm512_cmpneq_epi8_mask(v0, _mm512_loadu_si512(p - 1));
    const uint64_t m1 = _mm512_cmpneq_epi8_mask(v1, _mm512_loadu_si512(p + 63));
    const uint64_t m2 = _mm512_cmpneq_epi8_mask(v2, _mm512_loadu_si512(p + 127));
    const uint64_t m3 = _mm512_cmpneq_epi8_mask(v3, _mm512_loadu_si512(p + 191));
    // 0xFE: bits set in any byte of a OR b OR c (ternary logic a | b | c = 0xFE).
    acc = _mm512_ternarylogic_epi64(acc, v0, v1, 0xFE);
    acc = _mm512_ternarylogic_epi64(acc, v2, v3, 0xFE);
    if ((m0 | m1 | m2 | m3) == 0) continue;
    out = emit(m0, j, out);
    out = emit(m1, j + 64, out);
    out = emit(m2, j + 128, out);
    out = emit(m3, j + 192, out);
  }
  for (; j + 64 <= a; j += 64) {
    const __m512i v = _mm512_loadu_si512(t + j);
    acc = _mm512_or_si512(acc, v);
    out = emit(_mm512_cmpneq_epi8_mask(v, _mm512_loadu_si512(t + j - 1)), j, out);
  }
  // Any byte with a bit other than bit 0 set?
  if (_mm512_test_epi8_mask(acc, _mm512_set1_epi8(char(0xFE)))) return -1;
#elif defined(CPU_CAPABILITY_AVX2)
  __m256i acc = _mm256_setzero_si256();
  auto neq = [](const uint8_t* p) -> uint64_t {
    const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p - 1));
    const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 31));
    const uint64_t e0 = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(a0, b0)));
    const uint64_t e1 = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(a1, b1)));
    return ~(e0 | (e1 << 32));
  };
  auto or64 = [](const uint8_t* p) {
    return _mm256_or_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
  };
  for (; j + 128 <= a; j += 128) {
    const uint64_t m0 = neq(t + j), m1 = neq(t + j + 64);
    acc = _mm256_or_si256(acc, _mm256_or_si256(or64(t + j), or64(t + j + 64)));
    if ((m0 | m1) == 0) continue;
    out = emit(m0, j, out);
    out = emit(m1, j + 64, out);
  }
  for (; j + 64 <= a; j += 64) {
    acc = _mm256_or_si256(acc, or64(t + j));
    out = emit(neq(t + j), j, out);
  }
  if (!_mm256_testz_si256(acc, _mm256_set1_epi8(char(0xFE)))) return -1;
#else
  // 8 bytes per word (little-endian): byte k of w ^ (w << 8 | t[j - 1]) is nonzero iff pixel
  // j + k differs from its left neighbour; its high bit, gathered, marks the transition.
  constexpr uint64_t lo7 = 0x7F7F7F7F7F7F7F7FULL, hi = 0x8080808080808080ULL;
  uint64_t acc = 0;
  for (; j + 8 <= a; j += 8) {
    uint64_t w;
    std::memcpy(&w, t + j, 8);
    acc |= w;
    const uint64_t d = w ^ ((w << 8) | t[j - 1]);
    if (d == 0) continue;
    const uint64_t nz = (((d & lo7) + lo7) | d) & hi;  // 0x80 in every nonzero byte
    uint64_t m = nz;
    while (m) {
      *out++ = uint32_t(j + (__builtin_ctzll(m) >> 3));
      m &= m - 1;
    }
  }
  if (acc & ~0x0101010101010101ULL) return -1;
#endif
  out = scalar_tail(t, j, a, any, out);
  if (any > 1) return -1;
  return out - pos;
}

void rle_transpose(const uint8_t* src, int64_t h, int64_t w, uint8_t* dst) {
  const int64_t hf = h & ~int64_t(15), wf = w & ~int64_t(15);
  for (int64_t y0 = 0; y0 < hf; y0 += 16) {
#if defined(__SSE2__)
    for (int64_t x0 = 0; x0 < wf; x0 += 16) {
      __m128i r[16], u[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (y0 + i) * w + x0));
      // Four rounds of interleaving row i with row i + 8 transpose a 16 x 16 byte tile.
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8; ++i) {
          u[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
          u[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
        }
        for (int i = 0; i < 16; ++i) r[i] = u[i];
      }
      for (int i = 0; i < 16; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (x0 + i) * h + y0), r[i]);
    }
    const int64_t xs = wf;
#else
    const int64_t xs = 0;
#endif
    for (int64_t x = xs; x < w; ++x)
      for (int64_t y = y0; y < y0 + 16; ++y) dst[x * h + y] = src[y * w + x];
  }
  for (int64_t y = hf; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) dst[x * h + y] = src[y * w + x];
}

}  // namespace detseg::cpu::CPU_CAPABILITY
