// confusion_matrix inner loop for one ISA (compiled with CPU_CAPABILITY = DEFAULT, AVX2,
// AVX512). Narrow labels (<= 16 bits): two passes over a block that fits L1, the bin of every
// pixel (detseg::confusion_bin, branch-free, vectorised in 16-bit lanes) then a scalar
// histogram of the bins. Wide labels: one fused scalar pass, which measured faster than the
// vectorised bins (the 64-bit lanes cost more shuffles than the loads they save):
// 8 x 512 x 512, C = 21, one thread: int64 1.6 ms fused vs 2.3 ms two-pass; uint8 0.9 vs 1.4.
// Either way pixel i is counted into copy i % copies of the histogram, which breaks the
// load-increment-store chain through one bin along a region. Integer counts: the result does
// not depend on the split.
#include "cpu/vec/confusion_vec.h"

#include "detseg/masks.h"

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
