// CUDA kernel of the fused detection post-processing multiclass_nms (schema in csrc/ops.cpp; CPU
// kernel csrc/cpu/multiclass_nms.cpp; reference composition python/detseg/reference/postprocess.py;
// the same pipeline as python/detseg/triton/multiclass_nms.py).
//
// A host composition of CUDA kernels and ATen CUDA ops, every image of the batch at once:
//   1. activate_kernel / softmax_kernel: the activation (detseg/postprocess.h) and the strict
//      threshold into one key per (image, anchor, class): the activated score where it passes
//      (> threshold, NaN never does, the background class never does; -0.0 keyed as +0.0),
//      -inf elsewhere (a passing score is never -inf);
//   2. the passing keys compacted (nonzero), then stable at::sorts by (level or image, score
//      descending): the top k of each level, then of the image, in (score descending, flat
//      index n * C + c ascending) order: the order of the C++ kernel's keys and of the
//      reference's torch.sort;
//   3. decode_kernel: each candidate's box (shared or per class), decoded against its anchor
//      (detseg::decode_box, detseg/box_coder.h), clipped as torch.clamp, and its NMS group
//      (image, class) or (image); a rank without a candidate is a group of its own;
//   4. the bitmask NMS of cuda/nms.cu within the groups (grouped_nms_keep);
//   5. scatter_kernel: the first max_detections kept candidates of each image into the
//      padded outputs.
// Device->host syncs: the number of passing keys (nonzero), the widest image's candidate
// count (sizes steps 3-5) and the NMS mask size.
// exp is the device's (detseg::dexp): with an activation or anchors the result is the
// composition with CUDA's exp (torch.exp on CUDA), not bitwise the CPU kernel's (the C
// library's exp) where the two differ in the last bit. No atomics: deterministic.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cuda/launch.cuh"
#include "cuda/nms.h"
#include "detseg/box_coder.h"
#include "detseg/nms.h"
#include "detseg/postprocess.h"
#include "multiclass_nms_host.h"

namespace detseg::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// "none" / "sigmoid": one thread per (image, anchor, class) of scores contiguous [B, N, C].
template <typename T>
__global__ void activate_kernel(const T* __restrict__ s, T* __restrict__ key, int64_t total, int64_t c, int64_t bg,
                                T thr, bool sig) {
  grid_stride(total, [&](int64_t f) {
    const T v = sig ? sigmoid(s[f]) : s[f];
    // -0.0 keyed as +0.0, so that the order does not depend on how the radix sort treats
    // signed zeros (only "none" can yield -0.0; scatter_kernel reads its score back raw).
    key[f] = (v > thr && f % c != bg) ? (v == T(0) ? T(0) : v) : neg_inf<T>();
  });
}

// "softmax": one thread per row of C scores, softmax_row written into the row's keys, then
// thresholded in place.
template <typename T>
__global__ void softmax_kernel(const T* __restrict__ s, T* __restrict__ key, int64_t rows, int64_t c, int64_t bg,
                               T thr) {
  grid_stride(rows, [&](int64_t r) {
    T* out = key + r * c;
    softmax_row(s + r * c, c, out);
    for (int64_t k = 0; k < c; ++k) out[k] = (out[k] > thr && k != bg) ? out[k] : neg_inf<T>();
  });
}

struct DecodeParams {
  DecodeClip dc;
  bool anchors, class_agnostic;
};

// One thread per candidate q = (image b, rank r) of [B, P]: decoded, clipped box dec[q] and
// the NMS group of q.
template <typename T>
__global__ void decode_kernel(const T* __restrict__ vals, const int64_t* __restrict__ flat, Quad<T> boxes,
                              Quad<T> anchors, DecodeParams prm, int64_t bsz, int64_t p, int64_t c,
                              T* __restrict__ dec, int64_t* __restrict__ groups) {
  const CandidateBox<T> to_box(prm.dc);
  grid_stride(bsz * p, [&](int64_t q) {
    const int64_t b = q / p;
    const int64_t f = flat[q];
    const int64_t an = f / c, cl = f % c;
    T v[4], ref[4];
    boxes.load(b, an, cl, v);
    if (prm.anchors) anchors.load(b, an, 0, ref);
    to_box(v, prm.anchors ? ref : nullptr, dec + 4 * q);
    const bool valid = vals[q] != neg_inf<T>();
    groups[q] = valid ? b * c + (prm.class_agnostic ? 0 : cl) : bsz * c + q;
  });
}

// One thread per image: walks its ranks in priority order and stops at the k-th kept one
// (serial, as the CPU kernel's output loop; it reads at most the image's P candidates).
// raw: the scores [B, N * C] when the activation is "none" (the output score is read back
// from them, -0.0 included), else nullptr (the keys are the activated scores).
template <typename T>
__global__ void scatter_kernel(const bool* __restrict__ keep, const T* __restrict__ vals,
                               const int64_t* __restrict__ flat, const T* __restrict__ dec, const T* __restrict__ raw,
                               int64_t bsz, int64_t p, int64_t nc, int64_t c, int64_t k, int64_t* __restrict__ num,
                               T* __restrict__ ob, T* __restrict__ os, int64_t* __restrict__ oc,
                               int64_t* __restrict__ oi) {
  grid_stride(bsz, [&](int64_t b) {
    int64_t j = 0;
    for (int64_t r = 0; r < p && j < k; ++r) {
      const int64_t q = b * p + r;
      if (!keep[q] || vals[q] == neg_inf<T>()) continue;
      const int64_t row = b * k + j;
      for (int i = 0; i < 4; ++i) ob[4 * row + i] = dec[4 * q + i];
      os[row] = raw ? raw[b * nc + flat[q]] : vals[q];
      oc[row] = flat[q] % c;
      oi[row] = flat[q] / c;
      ++j;
    }
    num[b] = j;
  });
}


// Order of candidates (held in (image, flat index) order) by (segment ascending, score
// descending, position ascending): two stable sorts. Returns (order, the ordered segments,
// the rank of each ordered candidate in its segment).
std::tuple<at::Tensor, at::Tensor, at::Tensor> by_segment(const at::Tensor& v, const at::Tensor& seg) {
  at::Tensor o = std::get<1>(at::sort(v, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  o = o.index_select(0, std::get<1>(at::sort(seg.index_select(0, o), /*stable=*/true, /*dim=*/0,
                                             /*descending=*/false)));
  const at::Tensor s = seg.index_select(0, o).contiguous();
  const at::Tensor rank = at::arange(s.numel(), s.options()).sub(at::searchsorted(s, s));
  return {o, s, rank};
}

// After the per-level top k: the image of each candidate (in its original position), or bsz
// (a segment after every image, never written out) where its level dropped it.
__global__ void level_drop_kernel(const int64_t* __restrict__ order, const int64_t* __restrict__ rank,
                                  const int64_t* __restrict__ img, int64_t m, int64_t k, int64_t bsz,
                                  int64_t* __restrict__ seg) {
  grid_stride(m, [&](int64_t i) {
    const int64_t j = order[i];
    seg[j] = rank[i] < k ? img[j] : bsz;
  });
}

// Candidate i of the image ordering (segment seg[i], rank[i]) -> [B, P] slot seg * P + rank.
template <typename T>
__global__ void pack_kernel(const T* __restrict__ key, const int64_t* __restrict__ order,
                            const int64_t* __restrict__ seg, const int64_t* __restrict__ rank,
                            const int64_t* __restrict__ f, int64_t m, int64_t nc, int64_t bsz, int64_t p,
                            T* __restrict__ vals, int64_t* __restrict__ flat) {
  grid_stride(m, [&](int64_t i) {
    const int64_t b = seg[i];
    if (b >= bsz || rank[i] >= p) return;
    const int64_t ff = f[order[i]];
    vals[b * p + rank[i]] = key[b * nc + ff];
    flat[b * p + rank[i]] = ff;
  });
}

// Keys [B, N * C] -> (scores [B, P], flat indices [B, P]) in priority order, -inf where an
// image has fewer than P candidates. The passing keys are compacted first, so the sorts cost
// what the candidates do, not B * N * C. Device->host syncs: nonzero's count, P.
template <typename T>
std::tuple<at::Tensor, at::Tensor> candidates(const at::Tensor& key, int64_t c, const std::vector<int64_t>& levels,
                                              int64_t level_top_k, int64_t pre_nms_top_k, cudaStream_t stream) {
  const int64_t bsz = key.size(0), nc = key.size(1);
  const at::Tensor nz = key.ne(-std::numeric_limits<double>::infinity()).nonzero();  // (image, flat) ascending
  const at::Tensor b = nz.select(1, 0).contiguous(), f = nz.select(1, 1).contiguous();
  const int64_t m = b.numel();
  const at::Tensor v = key.reshape({-1}).index_select(0, b.mul(nc).add(f));
  at::Tensor seg = b;
  if (level_top_k >= 0 && m > 0) {
    // level of a flat index: the number of level ends (in flat units) at or below it
    at::Tensor ends = at::empty({static_cast<int64_t>(levels.size())}, at::TensorOptions().dtype(at::kLong));
    int64_t acc = 0;
    for (size_t l = 0; l < levels.size(); ++l) {
      acc += levels[l];
      ends.mutable_data_ptr<int64_t>()[l] = acc * c;
    }
    const at::Tensor lev = at::searchsorted(ends.to(key.device()), f, /*out_int32=*/false, /*right=*/true);
    const auto [o, s, rank] = by_segment(v, b.mul(static_cast<int64_t>(levels.size())).add(lev));
    (void)s;
    seg = at::empty_like(b);
    level_drop_kernel<<<grid_1d(m), kThreads, 0, stream>>>(o.const_data_ptr<int64_t>(), rank.const_data_ptr<int64_t>(),
                                                           b.const_data_ptr<int64_t>(), m, level_top_k, bsz,
                                                           seg.mutable_data_ptr<int64_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  }
  const auto [o, s, rank] = by_segment(v, seg);
  // Device->host sync: the widest image's candidate count (the dropped segment bsz aside).
  int64_t p = m ? rank.masked_fill(s.ge(bsz), -1).max().item<int64_t>() + 1 : 0;
  if (pre_nms_top_k >= 0) p = std::min(p, pre_nms_top_k);
  at::Tensor vals = at::full({bsz, p}, -std::numeric_limits<double>::infinity(), key.options());
  at::Tensor flat = at::zeros({bsz, p}, b.options());
  if (p > 0) {
    pack_kernel<T><<<grid_1d(m), kThreads, 0, stream>>>(key.const_data_ptr<T>(), o.const_data_ptr<int64_t>(),
                                                         s.const_data_ptr<int64_t>(), rank.const_data_ptr<int64_t>(),
                                                         f.const_data_ptr<int64_t>(), m, nc, bsz, p,
                                                         vals.mutable_data_ptr<T>(), flat.mutable_data_ptr<int64_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  }
  return {vals, flat};
}

template <typename T>
void run(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& anchors,
         const DecodeParams& prm, double score_threshold, const std::vector<int64_t>& levels, int64_t level_top_k,
         int64_t pre_nms_top_k, double iou_threshold, int64_t bg, checks::ScoreActivation act,
         McnmsOutputs& out, cudaStream_t stream) {
  const int64_t bsz = scores.size(0), n = scores.size(1), c = scores.size(2);
  const int64_t k = std::get<1>(out).size(1);
  const T thr = std::is_same_v<T, double> ? static_cast<T>(score_threshold)
                                          : static_cast<T>(nms_threshold_f32(score_threshold));
  const at::Tensor s = scores.contiguous();
  at::Tensor key = at::empty({bsz, n * c}, s.options());
  if (act == checks::ScoreActivation::kSoftmax) {
    const int64_t rows = bsz * n;
    softmax_kernel<T><<<grid_1d(rows), kThreads, 0, stream>>>(s.const_data_ptr<T>(), key.mutable_data_ptr<T>(), rows,
                                                               c, bg, thr);
  } else {
    const int64_t total = bsz * n * c;
    activate_kernel<T><<<grid_1d(total), kThreads, 0, stream>>>(s.const_data_ptr<T>(), key.mutable_data_ptr<T>(),
                                                                 total, c, bg, thr,
                                                                 act == checks::ScoreActivation::kSigmoid);
  }
  DETSEG_CUDA_LAUNCH_CHECK();

  at::Tensor vals, flat;
  std::tie(vals, flat) = candidates<T>(key, c, levels, level_top_k, pre_nms_top_k, stream);
  const int64_t p = vals.size(1);
  if (p == 0) return;

  const Quad<T> bq = quad_of<T>(boxes, true);
  const Quad<T> aq = anchors ? quad_of<T>(*anchors, anchors->dim() == 3) : Quad<T>{};
  at::Tensor dec = at::empty({bsz * p, 4}, s.options());
  at::Tensor groups = at::empty({bsz * p}, flat.options());
  decode_kernel<T><<<grid_1d(bsz * p), kThreads, 0, stream>>>(vals.const_data_ptr<T>(), flat.const_data_ptr<int64_t>(),
                                                               bq, aq, prm, bsz, p, c, dec.mutable_data_ptr<T>(),
                                                               groups.mutable_data_ptr<int64_t>());
  DETSEG_CUDA_LAUNCH_CHECK();

  // Device->host sync (inside): the NMS mask size.
  const at::Tensor keep = grouped_nms_keep(dec, groups, iou_threshold, "multiclass_nms");

  auto& [num, ob, os, oc, oi] = out;
  scatter_kernel<T><<<grid_1d(bsz, 64), 64, 0, stream>>>(
      keep.const_data_ptr<bool>(), vals.const_data_ptr<T>(), flat.const_data_ptr<int64_t>(), dec.const_data_ptr<T>(),
      act == checks::ScoreActivation::kNone ? s.const_data_ptr<T>() : nullptr, bsz, p, n * c, c, k,
      num.mutable_data_ptr<int64_t>(), ob.mutable_data_ptr<T>(), os.mutable_data_ptr<T>(),
      oc.mutable_data_ptr<int64_t>(), oi.mutable_data_ptr<int64_t>());
  DETSEG_CUDA_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& anchors,
    at::ArrayRef<double> weights, double bbox_xform_clip, at::IntArrayRef image_size, double score_threshold,
    at::IntArrayRef level_sizes, int64_t level_top_k, int64_t pre_nms_top_k, double iou_threshold,
    int64_t max_detections, bool class_agnostic, int64_t background_class, c10::string_view score_activation) {
  DeviceScope scope(scores);
  McnmsCall call = multiclass_nms_begin(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold,
                                        level_sizes, level_top_k, pre_nms_top_k, iou_threshold, max_detections,
                                        background_class, score_activation);
  if (call.nothing_to_select()) return call.out;
  const int64_t n = call.n;
  const checks::ScoreActivation act = call.act;
  auto& out = call.out;

  DecodeParams prm{};
  prm.dc = decode_clip_of(weights, bbox_xform_clip, image_size);
  prm.anchors = anchors.has_value();
  prm.class_agnostic = class_agnostic;
  std::vector<int64_t> levels(level_sizes.begin(), level_sizes.end());
  if (levels.empty()) levels.push_back(n);

  if (scores.scalar_type() == at::kDouble) {
    run<double>(boxes, scores, anchors, prm, score_threshold, levels, level_top_k, pre_nms_top_k, iou_threshold,
                background_class, act, out, scope.stream);
  } else {
    run<float>(boxes, scores, anchors, prm, score_threshold, levels, level_top_k, pre_nms_top_k, iou_threshold,
               background_class, act, out, scope.stream);
  }
  return out;
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("multiclass_nms", &detseg::cuda::multiclass_nms_cuda);
}
