// Inner loop of confusion_matrix (csrc/cpu/confusion.cpp), compiled once per ISA
// (csrc/cpu/vec/confusion_vec.cpp) and called through DETSEG_ISA_CALL. Plain pointers.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace detseg::cpu {

// One run of confusion_count: pixels [0, n) of pred / target counted into `copies` uint32
// histograms of detseg::confusion_bins(c) bins each, `stride` apart (pixel i goes to copy
// i % copies: consecutive pixels of a region hit the same bin, and spreading them over copies
// breaks the load-increment-store dependency chain). The caller flushes the histograms before
// a bin can pass 2^32. ignore_index is used only with has_ignore, and is then a value of the
// label dtype.
struct ConfusionArgs {
  int64_t n;
  int64_t c;
  int64_t ignore_index;
  bool has_ignore;
  uint32_t* hist;
  int64_t stride;
  int copies;  // 1, 2 or 4
};

}  // namespace detseg::cpu

#define DETSEG_CONFUSION_DECL(T) \
  DETSEG_ISA_DECLARE(void confusion_count(const T* pred, const T* target, const ::detseg::cpu::ConfusionArgs& a))
DETSEG_CONFUSION_DECL(uint8_t)
DETSEG_CONFUSION_DECL(int8_t)
DETSEG_CONFUSION_DECL(int16_t)
DETSEG_CONFUSION_DECL(int32_t)
DETSEG_CONFUSION_DECL(int64_t)
#undef DETSEG_CONFUSION_DECL
