// Batches of RLEs on the host, shared by the RLE kernels (rle.cpp) and the COCO evaluator
// (coco_eval.cpp): the int64 (counts, offsets) tensors of the op schemas read once into
// uint32 runs (pycocotools' width), checked on the way.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

#include "checks.h"
#include "detseg/rle.h"

namespace detseg::cpu {

struct RleBatch {
  std::vector<uint32_t> runs;
  std::vector<int64_t> off;  // N + 1
  int64_t size() const { return int64_t(off.size()) - 1; }
  const uint32_t* data(int64_t i) const { return runs.data() + off[i]; }
  int64_t len(int64_t i) const { return off[i + 1] - off[i]; }
};

inline RleBatch load_runs(const char* op, const char* prefix, const at::Tensor& counts_t, const at::Tensor& offsets_t) {
  const int64_t n = checks::rle_runs(op, prefix, counts_t, offsets_t);
  const at::Tensor counts = counts_t.contiguous(), offsets = offsets_t.contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  const int64_t* o = offsets.data_ptr<int64_t>();
  const int64_t total = counts.size(0);
  RleBatch b;
  b.off.assign(o, o + n + 1);
  TORCH_CHECK_VALUE(b.off[0] == 0 && b.off[n] == total, "detseg.", op, ": ", prefix,
              "offsets must run from 0 to len(counts) = ", total, ", got ", b.off[0], " ... ", b.off[n]);
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK_VALUE(b.off[i] <= b.off[i + 1], "detseg.", op, ": ", prefix,
                "offsets must be non-decreasing, got ", b.off[i], " then ", b.off[i + 1], " at ", i);
  b.runs.resize(total);
  bool bad = false;
  for (int64_t j = 0; j < total; ++j) {
    bad |= (c[j] < 0) | (c[j] > int64_t(UINT32_MAX));
    b.runs[j] = uint32_t(c[j]);
  }
  TORCH_CHECK_VALUE(!bad, "detseg.", op, ": ", prefix, "counts must be run lengths in [0, 2^32)");
  return b;
}

// Runs of compressed strings: chars uint8 Tensor[total], offsets int64 Tensor[N + 1].
inline RleBatch load_strings(const char* op, const at::Tensor& chars_t, const at::Tensor& offsets_t) {
  TORCH_CHECK_VALUE(chars_t.dim() == 1, "detseg.", op, ": chars must be a Tensor[total], got shape ", chars_t.sizes());
  TORCH_CHECK_TYPE(chars_t.scalar_type() == at::kByte, "detseg.", op, ": chars must be a uint8 tensor, got ",
              chars_t.scalar_type());
  TORCH_CHECK_VALUE(offsets_t.dim() == 1 && offsets_t.size(0) >= 1 && offsets_t.scalar_type() == at::kLong, "detseg.",
              op, ": offsets must be an int64 Tensor[N + 1], got ", offsets_t.scalar_type(), " ", offsets_t.sizes());
  const at::Tensor chars = chars_t.contiguous(), offsets = offsets_t.contiguous();
  const int64_t n = offsets.size(0) - 1;
  const int64_t* o = offsets.data_ptr<int64_t>();
  const char* s = reinterpret_cast<const char*>(chars.data_ptr<uint8_t>());
  TORCH_CHECK_VALUE(o[0] == 0 && o[n] == chars.size(0), "detseg.", op, ": offsets must run from 0 to len(chars) = ",
              chars.size(0), ", got ", o[0], " ... ", o[n]);
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK_VALUE(o[i] <= o[i + 1], "detseg.", op, ": offsets must be non-decreasing, got ", o[i], " then ",
                o[i + 1], " at ", i);
  // A string of L chars holds at most L runs: decode in place into a buffer of that size,
  // then pack (each string decoded by one thread, packed in order).
  std::vector<uint32_t> tmp(chars.size(0));
  std::vector<int64_t> m(n);
  at::parallel_for(0, n, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) m[i] = rle::from_string(s + o[i], o[i + 1] - o[i], tmp.data() + o[i]);
  });
  RleBatch b;
  b.off.resize(n + 1);
  b.off[0] = 0;
  for (int64_t i = 0; i < n; ++i) b.off[i + 1] = b.off[i] + m[i];
  b.runs.resize(b.off[n]);
  for (int64_t i = 0; i < n; ++i) std::copy_n(tmp.data() + o[i], m[i], b.runs.data() + b.off[i]);
  return b;
}

}  // namespace detseg::cpu
