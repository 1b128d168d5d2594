// CPU kernels of nms and batched_nms (schemas in csrc/ops.cpp; rule in detseg/nms.h).
//
// Order of work: one radix argsort of the scores (stable, descending, NaN first); for each
// problem (the whole input, or one category) the boxes are gathered in that order into the
// compute type, boxes that can never take part in a suppression are set aside (always
// kept), the others are laid out in blocks of 16 in a space-filling-curve order so that a
// kept box only visits the few blocks it overlaps; the greedy loop itself is per ISA
// (csrc/cpu/vec/nms_vec.cpp). Memory is O(N); no N x N mask. The machinery lives in
// cpu/nms_common.h (shared with multiclass_nms).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "checks.h"
#include "cpu/nms_common.h"

namespace detseg::cpu {
namespace {

// ------------------------------------------------------------------ nms

template <typename T>
at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  const int64_t n = boxes.size(0);
  SortScratch ss;
  Buf<int32_t> order_buf;
  int32_t* order = order_buf.get(n);
  score_order(scores, order, ss);
  Workspace<T> ws;
  int64_t k = 0;
  const int32_t* kept = nms_problem<T>(view_of<T>(boxes), order, n, threshold_of<T>(iou_threshold), ws, &k);
  at::Tensor out = at::empty({k}, boxes.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i) o[i] = order[kept[i]];
  return out;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  checks::nms(boxes, scores, iou_threshold);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  check_size("nms", n);
  if (boxes.scalar_type() == at::kDouble) return nms_impl<double>(boxes, scores, iou_threshold);
  return nms_impl<float>(boxes, scores, iou_threshold);
}

// ------------------------------------------------------------------ batched_nms

// Category of every box as int64 (any integer dtype, any stride).
void read_idxs(const at::Tensor& idxs_in, int64_t* cls) {
  at::Tensor idxs = idxs_in;
  switch (idxs.scalar_type()) {
    case at::kByte: case at::kChar: case at::kShort: case at::kInt: case at::kLong: break;
    default: idxs = idxs.to(at::kLong);  // unsigned wide types: equality is all that matters
  }
  const int64_t n = idxs.size(0);
  const int64_t st = idxs.stride(0);
  AT_DISPATCH_INTEGRAL_TYPES(idxs.scalar_type(), "detseg_batched_nms_idxs", [&] {
    const scalar_t* p = idxs.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) cls[i] = static_cast<int64_t>(p[i * st]);
  });
}

template <typename T>
at::Tensor batched_nms_impl(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  const int64_t n = boxes.size(0);
  SortScratch ss;
  Buf<int32_t> order_buf, grouped_buf, ids_buf;
  Buf<int64_t> cls_buf, seg_buf;
  int32_t* order = order_buf.get(n);
  score_order(scores, order, ss);
  int64_t* cls = cls_buf.get(n);
  read_idxs(idxs, cls);

  // grouped[] = ranks r (priority positions) grouped by category, ascending r within each;
  // seg[] = start of each category's run, seg[nseg] = n.
  int32_t* grouped = grouped_buf.get(n);
  int64_t* seg = seg_buf.get(n + 1);
  int64_t nseg = 0;
  const auto [lo_it, hi_it] = std::minmax_element(cls, cls + n);
  const int64_t lo = *lo_it, hi = *hi_it;
  // Counting sort when the categories span a small range; a comparison sort otherwise.
  const bool dense = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) < static_cast<uint64_t>(2 * n + 1024);
  if (dense) {
    const int64_t range = hi - lo + 1;
    Buf<int64_t> cnt_buf;
    int64_t* cnt = cnt_buf.get(range);
    std::fill(cnt, cnt + range, 0);
    for (int64_t i = 0; i < n; ++i) ++cnt[cls[i] - lo];
    int64_t sum = 0;
    for (int64_t c = 0; c < range; ++c) {
      const int64_t v = cnt[c];
      if (v) seg[nseg++] = sum;
      cnt[c] = sum;
      sum += v;
    }
    for (int64_t r = 0; r < n; ++r) grouped[cnt[cls[order[r]] - lo]++] = static_cast<int32_t>(r);
  } else {
    std::vector<std::pair<int64_t, int32_t>> v(n);
    for (int64_t r = 0; r < n; ++r) v[r] = {cls[order[r]], static_cast<int32_t>(r)};
    std::sort(v.begin(), v.end());
    for (int64_t r = 0; r < n; ++r) {
      grouped[r] = v[r].second;
      if (r == 0 || v[r].first != v[r - 1].first) seg[nseg++] = r;
    }
  }
  seg[nseg] = n;

  // ids[] = original indices in grouped order (what the per-category problems gather).
  int32_t* ids = ids_buf.get(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = order[grouped[i]];

  // Categories are independent, so threads split them by box count and the result cannot
  // depend on the split. Each category writes the ranks it keeps into its own run of
  // kept_rank[] (threads never share a cache line but at run borders); the keep flags are
  // set afterwards.
  Buf<int32_t> kept_rank_buf;
  Buf<int64_t> nkept_buf;
  int32_t* kept_rank = kept_rank_buf.get(n);
  int64_t* nkept = nkept_buf.get(nseg);
  const BoxesView<T> bv = view_of<T>(boxes);
  const T thr = threshold_of<T>(iou_threshold);
  auto run = [&](int64_t begin, int64_t end) {
    // Categories whose run starts in [begin, end).
    int64_t s = std::lower_bound(seg, seg + nseg, begin) - seg;
    Workspace<T> ws;
    for (; s < nseg && seg[s] < end; ++s) {
      const int64_t a = seg[s], m = seg[s + 1] - seg[s];
      int64_t k = 0;
      const int32_t* kept = nms_problem<T>(bv, ids + a, m, thr, ws, &k);
      for (int64_t i = 0; i < k; ++i) kept_rank[a + i] = grouped[a + kept[i]];
      nkept[s] = k;
    }
  };
  // A parallel region costs a scheduler wake-up (far more on a busy machine); below ~32k
  // boxes (torch's own grain) the whole call is cheaper than that risk.
  constexpr int64_t kGrain = 16384;
  if (n < 2 * kGrain || at::get_num_threads() == 1) {
    run(0, n);
  } else {
    at::parallel_for(0, n, kGrain, run);
  }
  Buf<uint8_t> keep_buf;
  uint8_t* keep = keep_buf.get(n);
  std::fill(keep, keep + n, uint8_t{0});
  for (int64_t s = 0; s < nseg; ++s) {
    for (int64_t i = 0; i < nkept[s]; ++i) keep[kept_rank[seg[s] + i]] = 1;
  }

  int64_t k = 0;
  for (int64_t r = 0; r < n; ++r) k += keep[r];
  at::Tensor out = at::empty({k}, boxes.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t r = 0, j = 0; r < n; ++r) {
    if (keep[r]) o[j++] = order[r];
  }
  return out;
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  checks::batched_nms(boxes, scores, idxs, iou_threshold);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  check_size("batched_nms", n);
  if (boxes.scalar_type() == at::kDouble) return batched_nms_impl<double>(boxes, scores, idxs, iou_threshold);
  return batched_nms_impl<float>(boxes, scores, idxs, iou_threshold);
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("nms", &detseg::cpu::nms_cpu);
  m.impl("batched_nms", &detseg::cpu::batched_nms_cpu);
}
