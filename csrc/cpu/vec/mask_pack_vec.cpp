// Mask bit packing for one ISA (see mask_pack_vec.h).
#include "cpu/vec/mask_pack_vec.h"

#include <immintrin.h>

#include <cstring>

namespace detseg::cpu::CPU_CAPABILITY {
namespace {

// 8 bytes -> 8 bits (byte k -> bit k), nonzero bytes -> 1: the high bit of each byte is set
// iff the byte is nonzero, then the multiply gathers the 8 high bits into the top byte.
inline uint64_t pack8(uint64_t x) {
  constexpr uint64_t lo7 = 0x7F7F7F7F7F7F7F7FULL, hi = 0x8080808080808080ULL;
  const uint64_t nz = (((x & lo7) + lo7) | x) & hi;
  return ((nz >> 7) * 0x0102040810204080ULL) >> 56;
}

inline uint64_t load8(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

inline int64_t popcount64(uint64_t x) { return __builtin_popcountll(x); }

}  // namespace

void pack_mask(const uint8_t* src, int64_t h, int64_t w, uint64_t* dst, int64_t ww, uint64_t* col_or,
               PackedMask* out) {
  const int64_t full = w / 64;
  int64_t area = 0, y0 = -1, y1 = -1;
  uint64_t or_scalar = 0;
  std::memset(col_or, 0, sizeof(uint64_t) * ww);
#if defined(CPU_CAPABILITY_AVX512)
  __m512i or_vec = _mm512_setzero_si512();
#elif defined(CPU_CAPABILITY_AVX2)
  __m256i or_vec = _mm256_setzero_si256();
  const __m256i zero = _mm256_setzero_si256();
#endif
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = src + y * w;
    uint64_t* drow = dst + y * ww;
    uint64_t row_any = 0;
    for (int64_t j = 0; j < full; ++j) {
      const uint8_t* p = row + 64 * j;
#if defined(CPU_CAPABILITY_AVX512)
      const __m512i v = _mm512_loadu_si512(p);
      or_vec = _mm512_or_si512(or_vec, v);
      const uint64_t word = _mm512_test_epi8_mask(v, v);
#elif defined(CPU_CAPABILITY_AVX2)
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
      or_vec = _mm256_or_si256(or_vec, _mm256_or_si256(a, b));
      const uint64_t za = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, zero)));
      const uint64_t zb = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, zero)));
      const uint64_t word = ~(za | (zb << 32));
#else
      uint64_t word = 0;
      for (int k = 0; k < 8; ++k) {
        const uint64_t x = load8(p + 8 * k);
        or_scalar |= x;
        word |= pack8(x) << (8 * k);
      }
#endif
      drow[j] = word;
      col_or[j] |= word;
      row_any |= word;
      area += popcount64(word);
    }
    if (full < ww) {  // the row's tail, fewer than 64 pixels
      uint64_t word = 0;
      for (int64_t x = 64 * full; x < w; ++x) {
        or_scalar |= row[x];
        word |= uint64_t(row[x] != 0) << (x - 64 * full);
      }
      drow[full] = word;
      col_or[full] |= word;
      row_any |= word;
      area += popcount64(word);
    }
    if (row_any) {
      if (y0 < 0) y0 = y;
      y1 = y;
    }
  }
#if defined(CPU_CAPABILITY_AVX512)
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, or_vec);
  for (uint64_t v : lanes) or_scalar |= v;
#elif defined(CPU_CAPABILITY_AVX2)
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), or_vec);
  for (uint64_t v : lanes) or_scalar |= v;
#endif
  uint8_t or_bytes = 0;
  for (int k = 0; k < 8; ++k) or_bytes |= static_cast<uint8_t>(or_scalar >> (8 * k));
  int64_t x0 = 1, x1 = 0;  // empty
  for (int64_t j = 0; j < ww; ++j) {
    if (col_or[j]) {
      x0 = 64 * j + __builtin_ctzll(col_or[j]);
      break;
    }
  }
  for (int64_t j = ww - 1; j >= 0; --j) {
    if (col_or[j]) {
      x1 = 64 * j + 63 - __builtin_clzll(col_or[j]);
      break;
    }
  }
  if (y0 < 0) y0 = 1, y1 = 0;
  *out = PackedMask{area, x0, y0, x1, y1, or_bytes};
}

int64_t packed_intersection(const uint64_t* a, const uint64_t* b, int64_t ww, int64_t y0, int64_t y1, int64_t w0,
                            int64_t w1) {
  int64_t inter = 0;
  for (int64_t y = y0; y <= y1; ++y) {
    const uint64_t* ra = a + y * ww;
    const uint64_t* rb = b + y * ww;
    for (int64_t j = w0; j <= w1; ++j) inter += popcount64(ra[j] & rb[j]);
  }
  return inter;
}

}  // namespace detseg::cpu::CPU_CAPABILITY
