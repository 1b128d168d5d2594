// CPU kernel of the fused detection post-processing multiclass_nms (schema in csrc/ops.cpp;
// reference composition in python/detseg/reference/postprocess.py).
//
// Per image (images run in parallel, each with its own scratch, so the result cannot depend
// on the thread count): one pass over the scores (the activation, detseg/postprocess.h, is
// evaluated only on scores that can pass) collects every (anchor, class)
// with score > threshold as a 64/96-bit key whose ascending order is the output priority
// (score descending, NaN never passes, then flat index n * C + c ascending); nth_element keeps
// the top k per level and per image; the best of the survivors are sorted, decoded
// (detseg/box_coder.h) and clipped into one buffer, grouped by class, and each class goes
// through the same NMS problem as batched_nms (cpu/nms_common.h), on a prefix of the
// candidates that grows until it yields max_detections boxes. The first max_detections kept
// candidates in priority order are written out.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cpu/nms_common.h"
#include "detseg/box_coder.h"
#include "detseg/postprocess.h"
#include "multiclass_nms_host.h"

namespace detseg::cpu {
namespace {

// Priority key of a candidate: desc_key(score) in the high bits, the flat index below, so
// one integer comparison is the (score descending, index ascending) order.
inline uint64_t cand_key(float s, uint32_t flat) { return (static_cast<uint64_t>(desc_key(s)) << 32) | flat; }
inline unsigned __int128 cand_key(double s, uint32_t flat) {
  return (static_cast<unsigned __int128>(desc_key(s)) << 32) | flat;
}
template <typename T>
using KeyOf = decltype(cand_key(T(0), 0u));

// Strided read-only 4-vectors: boxes [B, N, 4] / [B, N, C, 4], anchors [N, 4] / [B, N, 4].
struct Options {
  DecodeClip dc;
  double score_threshold;
  std::vector<int64_t> levels;
  int64_t level_top_k, pre_nms_top_k;
  double iou_threshold;
  int64_t max_detections;
  bool class_agnostic;
  int64_t background_class;
  checks::ScoreActivation act;
  double prefilter;  // raw scores < prefilter cannot pass (none, sigmoid)
};

template <typename T>
struct Outputs {
  int64_t* num;
  T* boxes;
  T* scores;
  int64_t* classes;
  int64_t* index;
};

// Keeps the k smallest keys of v[begin, end) at its front; returns the new end.
template <typename K>
int64_t keep_top(std::vector<K>& v, int64_t begin, int64_t end, int64_t k) {
  if (k < 0 || end - begin <= k) return end;
  std::nth_element(v.begin() + begin, v.begin() + begin + k, v.begin() + end);
  return begin + k;
}

template <typename T>
struct ImageScratch {
  std::vector<KeyOf<T>> keys;
  std::vector<T> decoded;  // [P, 4]
  std::vector<int32_t> grouped;
  std::vector<int64_t> seg, cnt;
  std::vector<uint8_t> keep;
  std::vector<T> row;  // one softmax row
  Workspace<T> ws;
};

// The activated score of flat index f (as the threshold pass computed it).
template <typename T>
T activated(const T* s, int64_t f, int64_t c, checks::ScoreActivation act, T* row) {
  if (act == checks::ScoreActivation::kSigmoid) return sigmoid(s[f]);
  if (act == checks::ScoreActivation::kSoftmax) {
    softmax_row(s + (f / c) * c, c, row);
    return row[f % c];
  }
  return s[f];
}

template <typename T>
void one_image(int64_t b, const T* s, int64_t n, int64_t c, const Quad<T>& boxes, bool per_class,
               const std::optional<Quad<T>>& anchors, const Options& o, const Outputs<T>& out, ImageScratch<T>& sc) {
  using K = KeyOf<T>;
  const T thr = threshold_of<T>(o.score_threshold);
  const int64_t bg = o.background_class;
  std::vector<K>& keys = sc.keys;
  keys.clear();

  // Threshold pass, level by level; a level keeps its top k before the next one is scanned.
  // Raw scores are screened (>= pre) against `pre` (the threshold itself, or for the sigmoid a logit a
  // little below the boundary); the activation is evaluated on the few that pass.
  const T pre = static_cast<T>(o.prefilter);
  T* row = sc.row.data();
  int64_t a0 = 0;
  for (const int64_t size : o.levels) {
    const int64_t begin = static_cast<int64_t>(keys.size());
    if (o.act == checks::ScoreActivation::kSoftmax) {
      const bool screen = pre > -std::numeric_limits<T>::infinity();
      for (int64_t an = a0; an < a0 + size; ++an) {
        const T* x = s + an * c;
        if (screen) {
          // A value e_k / sum <= e_k = exp(x_k - max) can pass only if x_k - max >= pre.
          T mx = x[0];
          for (int64_t k = 1; k < c; ++k) mx = x[k] > mx ? x[k] : mx;
          bool any = false;
          for (int64_t k = 0; k < c; ++k) any |= (x[k] - mx) >= pre;
          if (!any) continue;
        }
        softmax_row(x, c, row);
        for (int64_t k = 0; k < c; ++k) {
          if (row[k] > thr && k != bg) keys.push_back(cand_key(row[k], static_cast<uint32_t>(an * c + k)));
        }
      }
    } else {
      const bool sig = o.act == checks::ScoreActivation::kSigmoid;
      const int64_t lo = a0 * c, hi = (a0 + size) * c;
      constexpr int64_t kChunk = 32;
      int64_t f0 = lo;
      auto take = [&](int64_t f) {
        const T v = sig ? sigmoid(s[f]) : s[f];
        if (v > thr && (bg < 0 || f % c != bg)) keys.push_back(cand_key(v, static_cast<uint32_t>(f)));
      };
      for (; f0 + kChunk <= hi; f0 += kChunk) {
        uint32_t m = 0;  // one vector compare per chunk; most chunks have no bit set
        for (int l = 0; l < kChunk; ++l) m |= static_cast<uint32_t>(s[f0 + l] >= pre) << l;
        while (m) {
          take(f0 + __builtin_ctz(m));
          m &= m - 1;
        }
      }
      for (int64_t f = f0; f < hi; ++f) {
        if (s[f] >= pre) take(f);
      }
    }
    keys.resize(keep_top(keys, begin, static_cast<int64_t>(keys.size()), o.level_top_k));
    a0 += size;
  }
  const int64_t p = keep_top(keys, 0, static_cast<int64_t>(keys.size()), o.pre_nms_top_k);
  keys.resize(p);

  // NMS runs on the best `r_end` candidates first: greedy NMS decides a candidate from the
  // better ones of its class only, so once that prefix keeps max_detections boxes they are the
  // answer; otherwise the prefix grows 4x. Each round sorts and decodes only what it adds.
  sc.decoded.resize(4 * std::max<int64_t>(p, 1));
  T* dec = sc.decoded.data();
  sc.grouped.resize(std::max<int64_t>(p, 1));
  int32_t* grouped = sc.grouped.data();
  sc.keep.resize(std::max<int64_t>(p, 1));
  uint8_t* keep = sc.keep.data();
  const CandidateBox<T> to_box(o.dc);
  const BoxesView<T> bv{dec, 4, 1, std::is_same_v<T, double> ? at::kDouble : at::kFloat};
  const T iou_thr = threshold_of<T>(o.iou_threshold);
  int64_t done = 0;  // keys[0, done) are sorted and decoded
  int64_t r_end = std::min(p, std::max<int64_t>(8 * o.max_detections, 1024));
  while (true) {
    if (r_end < p) std::nth_element(keys.begin() + done, keys.begin() + r_end, keys.end());
    std::sort(keys.begin() + done, keys.begin() + r_end);
    // Decode and clip the new candidates, in priority order.
    for (int64_t r = done; r < r_end; ++r) {
      const int64_t f = static_cast<int64_t>(static_cast<uint32_t>(keys[r]));
      const int64_t an = f / c, cl = f % c;
      T v[4], ref[4];
      boxes.load(b, an, per_class ? cl : 0, v);
      if (anchors) anchors->load(b, an, 0, ref);
      to_box(v, anchors ? ref : nullptr, dec + 4 * r);
    }
    done = r_end;

    // Group the ranks by class (ascending rank within a class), one NMS problem per group.
    std::vector<int64_t>& seg = sc.seg;
    seg.clear();
    if (o.class_agnostic) {
      for (int64_t r = 0; r < r_end; ++r) grouped[r] = static_cast<int32_t>(r);
      if (r_end) seg.push_back(0);
    } else {
      std::vector<int64_t>& cnt = sc.cnt;
      cnt.assign(c, 0);
      for (int64_t r = 0; r < r_end; ++r) ++cnt[static_cast<uint32_t>(keys[r]) % c];
      int64_t sum = 0;
      for (int64_t k = 0; k < c; ++k) {
        const int64_t v = cnt[k];
        if (v) seg.push_back(sum);
        cnt[k] = sum;
        sum += v;
      }
      for (int64_t r = 0; r < r_end; ++r) {
        grouped[cnt[static_cast<uint32_t>(keys[r]) % c]++] = static_cast<int32_t>(r);
      }
    }
    const int64_t nseg = static_cast<int64_t>(seg.size());
    seg.push_back(r_end);
    std::fill(keep, keep + r_end, uint8_t{0});
    int64_t nkept = 0;
    for (int64_t g = 0; g < nseg; ++g) {
      const int64_t a = seg[g], m = seg[g + 1] - seg[g];
      int64_t k = 0;
      const int32_t* kept = nms_problem<T>(bv, grouped + a, m, iou_thr, sc.ws, &k);
      // A class contributes at most max_detections boxes to the output.
      k = std::min(k, o.max_detections);
      for (int64_t i = 0; i < k; ++i) keep[grouped[a + kept[i]]] = 1;
      nkept += k;
    }
    if (nkept >= o.max_detections || r_end == p) break;
    r_end = std::min(p, 4 * r_end);
  }
  const int64_t p_used = done;

  const int64_t kmax = o.max_detections;
  int64_t j = 0;
  for (int64_t r = 0; r < p_used && j < kmax; ++r) {
    if (!keep[r]) continue;
    const int64_t f = static_cast<int64_t>(static_cast<uint32_t>(keys[r]));
    const int64_t row = b * kmax + j;
    for (int i = 0; i < 4; ++i) out.boxes[4 * row + i] = dec[4 * r + i];
    out.scores[row] = activated(s, f, c, o.act, sc.row.data());
    out.classes[row] = f % c;
    out.index[row] = f / c;
    ++j;
  }
  out.num[b] = j;
}

// The raw-score screen of the threshold pass: every x with activation(x) > threshold has
// x >= prefilter (softmax: x - row max >= prefilter). For the sigmoid, the logit of the
// threshold (softmax: its log) less a margin far wider than the few ulps by which the
// evaluated activation can differ from the exact one.
double prefilter_of(checks::ScoreActivation act, double thr, bool f64) {
  if (act == checks::ScoreActivation::kNone) return f64 ? thr : static_cast<double>(threshold_of<float>(thr));
  if (!(thr > 0.0)) return -std::numeric_limits<double>::infinity();
  if (thr >= 1.0) return std::numeric_limits<double>::infinity();
  // softmax: screened on x_k - max of the row (see the threshold pass).
  const double l = act == checks::ScoreActivation::kSoftmax ? std::log(thr) : std::log(thr) - std::log1p(-thr);
  return l - 1e-3 * std::max(1.0, std::abs(l));
}

template <typename T>
void run_all(const at::Tensor& boxes, const at::Tensor& s, const std::optional<at::Tensor>& anchors,
             const Options& o, const Outputs<T>& out) {
  const int64_t bsz = s.size(0), n = s.size(1), c = s.size(2);
  const T* sp = s.const_data_ptr<T>();
  const Quad<T> bq = quad_of<T>(boxes, true);
  std::optional<Quad<T>> aq;
  if (anchors) aq = quad_of<T>(*anchors, anchors->dim() == 3);
  const bool per_class = boxes.dim() == 4;
  auto body = [&](int64_t begin, int64_t end) {
    ImageScratch<T> scratch;
    scratch.row.resize(std::max<int64_t>(c, 1));
    for (int64_t b = begin; b < end; ++b) one_image<T>(b, sp + b * n * c, n, c, bq, per_class, aq, o, out, scratch);
  };
  if (bsz <= 1 || at::get_num_threads() == 1) {
    body(0, bsz);
  } else {
    at::parallel_for(0, bsz, 1, body);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& anchors,
    at::ArrayRef<double> weights, double bbox_xform_clip, at::IntArrayRef image_size, double score_threshold,
    at::IntArrayRef level_sizes, int64_t level_top_k, int64_t pre_nms_top_k, double iou_threshold,
    int64_t max_detections, bool class_agnostic, int64_t background_class, c10::string_view score_activation) {
  McnmsCall call = multiclass_nms_begin(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold,
                                        level_sizes, level_top_k, pre_nms_top_k, iou_threshold, max_detections,
                                        background_class, score_activation);
  if (call.nothing_to_select()) return call.out;
  auto& [num, ob, os, oc, oi] = call.out;
  const int64_t n = call.n, k = call.k;
  const checks::ScoreActivation act = call.act;

  const at::Tensor s = scores.contiguous();

  Options o;
  o.dc = decode_clip_of(weights, bbox_xform_clip, image_size);
  o.score_threshold = score_threshold;
  o.levels.assign(level_sizes.begin(), level_sizes.end());
  if (o.levels.empty()) o.levels.push_back(n);
  o.level_top_k = level_top_k;
  o.pre_nms_top_k = pre_nms_top_k;
  o.iou_threshold = iou_threshold;
  o.max_detections = k;
  o.class_agnostic = class_agnostic;
  o.background_class = background_class;
  o.act = act;
  o.prefilter = prefilter_of(act, score_threshold, scores.scalar_type() == at::kDouble);

  if (scores.scalar_type() == at::kDouble) {
    run_all<double>(boxes, s, anchors, o,
                    {num.data_ptr<int64_t>(), ob.data_ptr<double>(), os.data_ptr<double>(), oc.data_ptr<int64_t>(),
                     oi.data_ptr<int64_t>()});
  } else {
    run_all<float>(boxes, s, anchors, o,
                   {num.data_ptr<int64_t>(), ob.data_ptr<float>(), os.data_ptr<float>(), oc.data_ptr<int64_t>(),
                    oi.data_ptr<int64_t>()});
  }
  return {num, ob, os, oc, oi};
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("multiclass_nms", &detseg::cpu::multiclass_nms_cpu);
}
