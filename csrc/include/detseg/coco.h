// The COCO detection protocol of pycocotools' COCOeval (evaluateImg + accumulate), stated once
// for the C++ evaluator (cpu/coco_eval.cpp); python/detseg/reference/coco.py mirrors it line
// for line. Torch-free; every quantity is float64 as in numpy, in the same operation order,
// so that the precision / recall arrays agree with pycocotools bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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
// Scratch: order [G], sorted_ignore [G], taken [T * G]. Output: out[d * det_stride + t].
inline void match_image(const double* ious, int64_t D, int64_t G, const uint8_t* gt_ignore, const uint8_t* crowd,
                        const uint8_t* gt_id_nonzero, const uint8_t* dt_out, const double* thrs, int64_t T,
                        int64_t* order, uint8_t* sorted_ignore, uint8_t* taken, uint8_t* out, int64_t det_stride) {
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
      out[d * det_stride + t] = o;
    }
  }
}

// One precision / recall curve: pycocotools accumulate for one (t, k, a, m).
//
// pycocotools computes rc and pr at every detection, takes the suffix maximum of pr and
// samples it at searchsorted(rc, recThrs, "left"). Both only change at true positives: pr
// falls (false positive) or stays (ignored) elsewhere, so the suffix maximum at any index is
// the larger of pr there and the suffix maximum over the later true positives, and rc steps
// up only at a true positive, so every searched index past 0 is one. The curve is therefore
// evaluated at the L true positives alone, with the same float64 operations:
// rc_j = j / npig, pr_j = j / (fp_j + j + eps).
// Built one detection at a time (push, in global score order), so that one pass over the
// outcomes serves every maxDets cut. pos / rc / env: scratch of (number of TPs) entries.
struct Curve {
  int64_t* pos;
  double* rc;
  double* env;
  int64_t npig = 0, L = 0, fp = 0, nd = 0, first = -1;
  bool first_tp = false;

  inline void push(uint8_t o, int64_t i) {
    if (nd++ == 0) {
      first = i;
      first_tp = o == kTruePositive;
    }
    if (o == kTruePositive) {
      true_positive(i);
    } else if (o == kFalsePositive) {
      ++fp;
    }
  }

  inline void true_positive(int64_t i) {
    pos[L] = i;
    ++L;
    rc[L - 1] = double(L) / double(npig);
    env[L - 1] = double(L) / (double(fp) + double(L) + 2.220446049250313e-16);  // + np.spacing(1)
  }

  // Pushes a whole row of outcomes in order: row[sel[0..n)], or row[0..n) when sel is null,
  // eight at a time where a word holds no true positive.
  inline void scan(const uint8_t* row, const int64_t* sel, int64_t n) {
    if (sel) {
      for (int64_t i = 0; i < n; ++i) push(row[sel[i]], sel[i]);
      return;
    }
    constexpr uint64_t kLow = 0x0101010101010101ull;
    int64_t i = 0;
    if (n > 0) push(row[i++], 0);
    for (; i + 8 <= n; i += 8) {
      uint64_t v;
      std::memcpy(&v, row + i, 8);
      uint64_t tpm = v & kLow, fpm = (v >> 1) & kLow;  // bit 0: true positive, bit 1: false
      while (tpm) {  // each true positive, with the false positives before it in the word
        const int b = __builtin_ctzll(tpm);
        const uint64_t below = (uint64_t(1) << b) - 1;
        fp += __builtin_popcountll(fpm & below);
        fpm &= ~below;
        true_positive(i + (b >> 3));
        tpm &= tpm - 1;
      }
      fp += __builtin_popcountll(fpm);
      nd += 8;
    }
    for (; i < n; ++i) push(row[i], i);
  }

  // Writes precision[r] and scores[r] (stride `stride`) for every recall threshold; returns
  // the recall. score(i) is the score of the detection pushed with index i.
  template <typename ScoreAt>
  inline double finish(ScoreAt score, const double* rec_thrs, int64_t R, double* precision, double* scores,
                       int64_t stride) {
    for (int64_t j = L - 1; j > 0; --j)
      if (env[j] > env[j - 1]) env[j - 1] = env[j];
    const double rc0 = first_tp ? rc[0] : 0.0;  // rc at the first detection
    int64_t r = 0, last = 0;
    for (; r < R && nd > 0; ++r) {
      const double thr = rec_thrs[r];
      int64_t pi, j;
      if (thr <= rc0) {
        pi = first;
        j = 0;  // the suffix maximum at the first detection (its own pr is 0 unless a TP)
      } else {
        // Thresholds usually ascend: start from the previous answer when they do.
        int64_t lo = (r > 0 && thr >= rec_thrs[r - 1]) ? last : 0;
        while (lo < L && rc[lo] < thr) ++lo;
        if (lo >= L) break;  // past the curve: pycocotools' fill stops here
        last = lo;
        pi = pos[lo];
        j = lo;
      }
      precision[r * stride] = L > 0 ? env[j] : 0.0;
      scores[r * stride] = score(pi);
    }
    for (; r < R; ++r) precision[r * stride] = scores[r * stride] = 0;
    return nd ? double(L) / double(npig) : 0.0;
  }
};

}  // namespace detseg::coco
