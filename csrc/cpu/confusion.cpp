// CPU confusion_matrix: one pass over the label maps, per-thread histograms of the bins of
// detseg/masks.h (C * C classes + an ignored and an invalid tally), summed in thread order.
// Counts are integers, so the result is the same for any thread count and split.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cpu/isa.h"
#include "cpu/vec/confusion_vec.h"
#include "detseg/masks.h"

namespace detseg::cpu {
namespace {

// Pixels per parallel task: enough to amortise zeroing and flushing the task's histograms.
constexpr int64_t kGrain = 1 << 17;
// A task flushes its uint32 histograms into int64 at least this often, so no bin overflows.
constexpr int64_t kFlush = int64_t(1) << 31;

// Copies of the uint32 histogram a task counts into: several break the dependency between
// consecutive pixels of one region (same bin). Four up to C = 255 (65536 bins; 150 classes:
// 360 KB, in L2): 8 x 512 x 512 maps, 150 classes, one thread, same run: int64 1.85 ms with four
// vs 2.0 ms with two, uint8 1.17 vs 1.35 (eight copies measured slower again: 2.3 ms).
int copies_for(int64_t bins) { return bins <= 65536 ? 4 : 1; }

// Histogram scratch is thread-local and kept between calls (the pool threads persist): a fresh
// buffer of a few hundred KB per call is mmap'd by malloc and page-faulted in every time, which
// showed as bimodal timings on a busy machine. Buffers above kKeepBytes are released.
constexpr size_t kKeepBytes = size_t(16) << 20;

template <typename V>
void release_if_large(V& v) {
  if (v.capacity() * sizeof(typename V::value_type) > kKeepBytes) V().swap(v);
}

template <typename T>
void count_range(const T* pred, const T* target, int64_t begin, int64_t end, int64_t c, std::optional<int64_t> ignore,
                 std::vector<uint32_t>& h32, int64_t* acc) {
  const int64_t bins = confusion_bins(c);
  const int copies = copies_for(bins);
  // A T can equal ignore_index only when T represents it; otherwise nothing is ignored.
  const bool has_ignore = ignore.has_value() && *ignore >= int64_t(std::numeric_limits<T>::lowest()) &&
                          *ignore <= int64_t(std::numeric_limits<T>::max());
  const T ig = has_ignore ? static_cast<T>(*ignore) : T(0);
  if (end - begin < 2 * bins * copies) {
    // Few pixels for many bins (small images counted per image): zeroing and flushing the
    // uint32 copies would cost more than the pixels; count straight into the int64 row.
    for (int64_t i = begin; i < end; ++i)
      ++acc[confusion_bin<uint32_t, T>(pred[i], target[i], static_cast<uint32_t>(c), ig, has_ignore)];
    return;
  }
  h32.assign(static_cast<size_t>(bins) * copies, 0u);
  for (int64_t s = begin; s < end; s += kFlush) {
    const int64_t e = std::min(end, s + kFlush);
    ConfusionArgs a{e - s, c, has_ignore ? *ignore : 0, has_ignore, h32.data(), bins, copies};
    DETSEG_ISA_CALL(confusion_count, pred + s, target + s, a);
    for (int k = 0; k < copies; ++k) {
      uint32_t* h = h32.data() + k * bins;
      for (int64_t b = 0; b < bins; ++b) {
        acc[b] += h[b];
        h[b] = 0;
      }
    }
  }
}

// hist: [B, bins] int64, zeroed. Whole tensor (B = 1) or one row per image.
template <typename T>
void count_all(const T* pred, const T* target, int64_t n, int64_t batch, int64_t c, std::optional<int64_t> ignore,
               int64_t* hist) {
  const int64_t bins = confusion_bins(c);
  if (n == 0) return;
  if (batch == 1) {
    const int nthreads = at::get_num_threads();
    thread_local std::vector<int64_t> partial;
    partial.assign(static_cast<size_t>(nthreads) * bins, 0);
    // The lambda runs on the pool threads, whose `partial` is their own: pass the pointer.
    int64_t* const part = partial.data();
    at::parallel_for(0, n, kGrain, [&](int64_t b0, int64_t b1) {
      thread_local std::vector<uint32_t> h32;
      count_range(pred, target, b0, b1, c, ignore, h32, part + at::get_thread_num() * bins);
      release_if_large(h32);
    });
    for (int t = 0; t < nthreads; ++t)
      for (int64_t b = 0; b < bins; ++b) hist[b] += part[t * bins + b];
    release_if_large(partial);
    return;
  }
  const int64_t per = n / batch;
  at::parallel_for(0, batch, std::max<int64_t>(1, kGrain / std::max<int64_t>(per, 1)), [&](int64_t i0, int64_t i1) {
    thread_local std::vector<uint32_t> h32;
    for (int64_t i = i0; i < i1; ++i) count_range(pred, target, i * per, (i + 1) * per, c, ignore, h32, hist + i * bins);
    release_if_large(h32);
  });
}

template <typename T>
void raise_first_invalid(const T* pred, const T* target, int64_t n, int64_t c, std::optional<int64_t> ignore) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = static_cast<int64_t>(pred[i]), t = static_cast<int64_t>(target[i]);
    if (ignore.has_value() && t == *ignore) continue;
    if (p < 0 || p >= c || t < 0 || t >= c) checks::confusion_invalid_error(i, p, t, c);
  }
}

std::tuple<at::Tensor, at::Tensor> confusion_matrix_cpu(const at::Tensor& pred_in, const at::Tensor& target_in,
                                                        int64_t num_classes, std::optional<int64_t> ignore_index,
                                                        bool per_image, c10::string_view invalid) {
  checks::confusion_matrix(pred_in, target_in, num_classes, per_image, std::string_view(invalid.data(), invalid.size()));
  const bool count_invalid = invalid == "count";
  // bool labels are 0 / 1 bytes; mixed dtypes meet in their promoted type (one kernel per dtype).
  at::ScalarType st = pred_in.scalar_type() == at::kBool ? at::kByte : pred_in.scalar_type();
  const at::ScalarType st2 = target_in.scalar_type() == at::kBool ? at::kByte : target_in.scalar_type();
  if (st2 != st) st = at::promote_types(st, st2);
  const at::Tensor pred = pred_in.to(st).contiguous();
  const at::Tensor target = target_in.to(st).contiguous();
  const int64_t c = num_classes, bins = confusion_bins(c);
  const int64_t batch = per_image ? pred.size(0) : 1;
  const int64_t n = pred.numel();
  at::Tensor hist = at::zeros({batch, bins}, pred.options().dtype(at::kLong));
  AT_DISPATCH_SWITCH(st, "confusion_matrix",
      AT_DISPATCH_CASE(at::kByte, [&] { count_all<uint8_t>(pred.const_data_ptr<uint8_t>(), target.const_data_ptr<uint8_t>(), n, batch, c, ignore_index, hist.mutable_data_ptr<int64_t>()); })
      AT_DISPATCH_CASE(at::kChar, [&] { count_all<int8_t>(pred.const_data_ptr<int8_t>(), target.const_data_ptr<int8_t>(), n, batch, c, ignore_index, hist.mutable_data_ptr<int64_t>()); })
      AT_DISPATCH_CASE(at::kShort, [&] { count_all<int16_t>(pred.const_data_ptr<int16_t>(), target.const_data_ptr<int16_t>(), n, batch, c, ignore_index, hist.mutable_data_ptr<int64_t>()); })
      AT_DISPATCH_CASE(at::kInt, [&] { count_all<int32_t>(pred.const_data_ptr<int32_t>(), target.const_data_ptr<int32_t>(), n, batch, c, ignore_index, hist.mutable_data_ptr<int64_t>()); })
      AT_DISPATCH_CASE(at::kLong, [&] { count_all<int64_t>(pred.const_data_ptr<int64_t>(), target.const_data_ptr<int64_t>(), n, batch, c, ignore_index, hist.mutable_data_ptr<int64_t>()); }));
  at::Tensor invalid_count = hist.select(1, confusion_invalid_bin(c)).clone();
  if (!count_invalid && invalid_count.sum().item<int64_t>() > 0) {
    AT_DISPATCH_SWITCH(st, "confusion_matrix",
        AT_DISPATCH_CASE(at::kByte, [&] { raise_first_invalid<uint8_t>(pred.const_data_ptr<uint8_t>(), target.const_data_ptr<uint8_t>(), n, c, ignore_index); })
        AT_DISPATCH_CASE(at::kChar, [&] { raise_first_invalid<int8_t>(pred.const_data_ptr<int8_t>(), target.const_data_ptr<int8_t>(), n, c, ignore_index); })
        AT_DISPATCH_CASE(at::kShort, [&] { raise_first_invalid<int16_t>(pred.const_data_ptr<int16_t>(), target.const_data_ptr<int16_t>(), n, c, ignore_index); })
        AT_DISPATCH_CASE(at::kInt, [&] { raise_first_invalid<int32_t>(pred.const_data_ptr<int32_t>(), target.const_data_ptr<int32_t>(), n, c, ignore_index); })
        AT_DISPATCH_CASE(at::kLong, [&] { raise_first_invalid<int64_t>(pred.const_data_ptr<int64_t>(), target.const_data_ptr<int64_t>(), n, c, ignore_index); }));
  }
  at::Tensor matrix = hist.narrow(1, 0, c * c).reshape({batch, c, c});
  if (!per_image) {
    matrix = matrix.squeeze(0);
    invalid_count = invalid_count.squeeze(0);
  }
  return {matrix.contiguous(), invalid_count};
}

}  // namespace

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("confusion_matrix", &confusion_matrix_cpu);
}

}  // namespace detseg::cpu
