// The COCO detection protocol of pycocotools' COCOeval (evaluateImg + accumulate), stated once
// for the C++ evaluator (cpu/coco_eval.cpp); python/detseg/reference/coco.py mirrors it line
// for line. Torch-free; every quantity is float64 as in numpy, in the same operation order,
// so that the precision / recall arrays agree with pycocotools bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

namespace detseg::coco {

// pycocotools sorts -score ascending with numpy's stable mergesort, which puts NaN last:
// detections rank by descending score, NaN after everything, ties in input order (the
// caller's stable sort keeps that order).
inline bool score_before(double a, double b) {
  const double ka = -a, kb = -b;
  return !std::isnan(ka) && (std::isnan(kb) || ka < kb);
}

// Per-detection outcome at one IoU threshold.
enum Outcome : uint8_t { kIgnored = 0, kTruePositive = 1, kFalsePositive = 2 };

// Greedy matching of one (image, category) at one area range (pycocotools evaluateImg).
//   ious       [D, G] row-major, detections in score order (already cut to maxDets[-1]),
//              ground truths in input order.
//   gt_ignore  [G] per input GT: iscrowd, or its area outside the range.
//   crowd      [G] iscrowd; gt_id_nonzero [G]: a match to annotation id 0 reads as none.
//   dt_out     [D] detection area outside the range.
//   thrs       [T] IoU thresholds.
// Scratch: order [G], sorted_ignore [G], taken [T * G]. Output: out [T, D] Outcome.
inline void match_image(const double* ious, int64_t D, int64_t G, const uint8_t* gt_ignore, const uint8_t* crowd,
                        const uint8_t* gt_id_nonzero, const uint8_t* dt_out, const double* thrs, int64_t T,
                        int64_t* order, uint8_t* sorted_ignore, uint8_t* taken, uint8_t* out) {
  // Ignored GTs last, each part in input order (the stable argsort of the ignore flags).
  int64_t k = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t g = 0; g < G; ++g)
      if (gt_ignore[g] == pass) {
        order[k] = g;
        sorted_ignore[k++] = uint8_t(pass);
      }
  for (int64_t i = 0; i < T * G; ++i) taken[i] = 0;
  for (int64_t t = 0; t < T; ++t) {
    uint8_t* tk = taken + t * G;
    const double thr = thrs[t] < 1 - 1e-10 ? thrs[t] : 1 - 1e-10;
    for (int64_t d = 0; d < D; ++d) {
      const double* row = ious + d * G;
      double best = thr;
      int64_t m = -1;
      for (int64_t gi = 0; gi < G; ++gi) {
        const int64_t g = order[gi];
        if (tk[gi] && !crowd[g]) continue;
        // Once matched to a regular GT, the ignored ones (all after it) cannot win.
        if (m > -1 && !sorted_ignore[m] && sorted_ignore[gi]) break;
        if (row[g] < best) continue;  // ">=": on equal IoU the later GT wins
        best = row[g];
        m = gi;
      }
      uint8_t o;
      if (m == -1) {
        o = dt_out[d] ? kIgnored : kFalsePositive;
      } else {
        tk[m] = 1;
        const bool matched = gt_id_nonzero[order[m]] != 0;
        const bool ignored = sorted_ignore[m] || (!matched && dt_out[d]);
        o = ignored ? kIgnored : (matched ? kTruePositive : kFalsePositive);
      }
      out[t * D + d] = o;
    }
  }
}

// One precision / recall curve (pycocotools accumulate, one (t, k, a, m)). outcome(i) gives
// the i-th detection, in global score order, of nd; score(i) its score. Writes precision[r]
// and scores[r] (stride `stride`) for each recall threshold and returns the recall. rc and pr
// are scratch of nd entries.
template <typename OutcomeAt, typename ScoreAt>
inline double curve(OutcomeAt outcome, ScoreAt score, int64_t nd, int64_t npig, const double* rec_thrs, int64_t R,
                    double* rc, double* pr, double* precision, double* scores, int64_t stride) {
  const double eps = 2.220446049250313e-16;  // np.spacing(1)
  double tp = 0, fp = 0;
  for (int64_t i = 0; i < nd; ++i) {
    const uint8_t o = outcome(i);
    tp += o == kTruePositive;
    fp += o == kFalsePositive;
    rc[i] = tp / double(npig);
    pr[i] = tp / (fp + tp + eps);
  }
  for (int64_t i = nd - 1; i > 0; --i)
    if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
  int64_t r = 0;
  for (; r < R; ++r) {
    // searchsorted(rc, thr, side="left"); the first threshold past the curve ends the fill.
    int64_t lo = 0, hi = nd;
    while (lo < hi) {
      const int64_t mid = (lo + hi) >> 1;
      if (rc[mid] < rec_thrs[r]) lo = mid + 1; else hi = mid;
    }
    if (lo >= nd) break;
    precision[r * stride] = pr[lo];
    scores[r * stride] = score(lo);
  }
  for (; r < R; ++r) precision[r * stride] = scores[r * stride] = 0;
  return nd ? rc[nd - 1] : 0.0;
}

}  // namespace detseg::coco
