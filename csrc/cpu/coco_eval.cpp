// COCOeval (evaluate + accumulate) on the CPU. The protocol is detseg/coco.h, the IoUs are
// detseg/rle.h (bbox_iou, iou). Work is split over (image, category) groups for the matching
// and over categories for the accumulation; each output element is written by one thread from
// a fixed sequence of operations, so the arrays do not depend on the thread count. Memory:
// O(annotations * areas * thresholds) bytes of outcomes, never images x categories.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "checks.h"
#include "cpu/rle_runs.h"
#include "detseg/coco.h"
#include "detseg/rle.h"

namespace detseg::cpu {
namespace {

constexpr const char* kOp = "coco_evaluate";

template <typename T>
std::vector<T> read_vec(const at::Tensor& t, at::ScalarType dtype, const char* arg, int64_t n, int64_t cols = 0) {
  TORCH_CHECK_VALUE(cols == 0 ? (t.dim() == 1 && t.size(0) == n) : (t.dim() == 2 && t.size(0) == n && t.size(1) == cols),
              "detseg.", kOp, ": ", arg, " must be a Tensor[", n, cols ? ", 4" : "", "], got shape ", t.sizes());
  TORCH_CHECK_VALUE(t.device().is_cpu(), "detseg.", kOp, ": ", arg, " must be a CPU tensor, got ", t.device());
  const at::Tensor c = t.to(dtype).contiguous();
  const T* p = c.data_ptr<T>();
  return std::vector<T>(p, p + c.numel());
}

// Stable order of n items by (major, minor) keys, both small dense ranges: two counting sorts.
std::vector<int64_t> order_by(const std::vector<int64_t>& major, int64_t nmajor, const std::vector<int64_t>& minor,
                              int64_t nminor) {
  const int64_t n = int64_t(major.size());
  auto counting = [n](const std::vector<int64_t>& key, int64_t nkey, const std::vector<int64_t>& in) {
    std::vector<int64_t> start(nkey + 1, 0), out(n);
    for (int64_t i : in) ++start[key[i] + 1];
    for (int64_t k = 0; k < nkey; ++k) start[k + 1] += start[k];
    for (int64_t i : in) out[start[key[i]]++] = i;
    return out;
  };
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  return counting(major, nmajor, counting(minor, nminor, idx));
}

struct Group {
  int64_t k, image;       // k: category index (use_cats) or 0
  int64_t g0, g1;         // ground truths: positions in the gt order
  int64_t d0, d1;         // detections: positions in the cut, score-sorted dt order
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> coco_evaluate_cpu(
    const at::Tensor& gt_image_t, const at::Tensor& gt_category_t, const at::Tensor& gt_boxes_t,
    const at::Tensor& gt_area_t, const at::Tensor& gt_crowd_t, const at::Tensor& gt_ids_t,
    const at::Tensor& dt_image_t, const at::Tensor& dt_category_t, const at::Tensor& dt_boxes_t,
    const at::Tensor& dt_area_t, const at::Tensor& dt_scores_t, const std::optional<at::Tensor>& gt_counts,
    const std::optional<at::Tensor>& gt_offsets, const std::optional<at::Tensor>& gt_sizes,
    const std::optional<at::Tensor>& dt_counts, const std::optional<at::Tensor>& dt_offsets,
    const std::optional<at::Tensor>& dt_sizes, const at::Tensor& iou_thrs_t, const at::Tensor& rec_thrs_t,
    at::IntArrayRef max_dets, const at::Tensor& area_rng_t, int64_t num_images, int64_t num_categories,
    bool use_cats) {
  TORCH_CHECK_VALUE(num_images >= 0 && num_categories >= 0, "detseg.", kOp,
              ": num_images and num_categories must be >= 0, got ", num_images, ", ", num_categories);
  const int64_t NG = gt_image_t.dim() == 1 ? gt_image_t.size(0) : -1;
  const int64_t ND = dt_image_t.dim() == 1 ? dt_image_t.size(0) : -1;
  TORCH_CHECK_VALUE(NG >= 0 && ND >= 0, "detseg.", kOp, ": gt_image and dt_image must be 1-D, got shapes ",
              gt_image_t.sizes(), " and ", dt_image_t.sizes());
  const auto gt_image = read_vec<int64_t>(gt_image_t, at::kLong, "gt_image", NG);
  const auto gt_cat = read_vec<int64_t>(gt_category_t, at::kLong, "gt_category", NG);
  const auto gt_boxes = read_vec<double>(gt_boxes_t, at::kDouble, "gt_boxes", NG, 4);
  const auto gt_area = read_vec<double>(gt_area_t, at::kDouble, "gt_area", NG);
  const auto gt_crowd = read_vec<uint8_t>(gt_crowd_t.to(at::kBool), at::kByte, "gt_crowd", NG);
  const auto gt_ids = read_vec<int64_t>(gt_ids_t, at::kLong, "gt_ids", NG);
  const auto dt_image = read_vec<int64_t>(dt_image_t, at::kLong, "dt_image", ND);
  const auto dt_cat = read_vec<int64_t>(dt_category_t, at::kLong, "dt_category", ND);
  const auto dt_boxes = read_vec<double>(dt_boxes_t, at::kDouble, "dt_boxes", ND, 4);
  const auto dt_area = read_vec<double>(dt_area_t, at::kDouble, "dt_area", ND);
  const auto dt_score = read_vec<double>(dt_scores_t, at::kDouble, "dt_scores", ND);
  for (int64_t i = 0; i < NG; ++i)
    TORCH_CHECK_VALUE(gt_image[i] >= 0 && gt_image[i] < num_images && gt_cat[i] >= 0 && gt_cat[i] < num_categories,
                "detseg.", kOp, ": gt_image / gt_category must index [0, ", num_images, ") / [0, ", num_categories,
                "), got ", gt_image[i], " / ", gt_cat[i], " at ", i);
  for (int64_t i = 0; i < ND; ++i)
    TORCH_CHECK_VALUE(dt_image[i] >= 0 && dt_image[i] < num_images && dt_cat[i] >= 0 && dt_cat[i] < num_categories,
                "detseg.", kOp, ": dt_image / dt_category must index [0, ", num_images, ") / [0, ", num_categories,
                "), got ", dt_image[i], " / ", dt_cat[i], " at ", i);

  const bool segm = gt_counts.has_value();
  TORCH_CHECK_VALUE(segm == (gt_offsets.has_value() && gt_sizes.has_value() && dt_counts.has_value() &&
                             dt_offsets.has_value() && dt_sizes.has_value()),
              "detseg.", kOp, ": the RLE arguments (gt_/dt_ counts, offsets, sizes) must be given all or none");
  RleBatch grle, drle;
  std::vector<int64_t> gsz, dsz;
  std::vector<double> gbb, dbb;
  if (segm) {
    grle = load_runs(kOp, "gt_", *gt_counts, *gt_offsets);
    drle = load_runs(kOp, "dt_", *dt_counts, *dt_offsets);
    TORCH_CHECK_VALUE(grle.size() == NG && drle.size() == ND, "detseg.", kOp,
                "one RLE per annotation expected, got ", grle.size(), " for ", NG, " gt and ", drle.size(), " for ",
                ND, " dt");
    gsz = read_vec<int64_t>(*gt_sizes, at::kLong, "gt_sizes", NG, 2);
    dsz = read_vec<int64_t>(*dt_sizes, at::kLong, "dt_sizes", ND, 2);
    // Filled in phase 1, only for the annotations of groups that compute IoUs (each by the
    // thread of its group): a detection of a category absent from its image needs no box.
    gbb.resize(4 * NG);
    dbb.resize(4 * ND);
  }

  const auto thrs = read_vec<double>(iou_thrs_t, at::kDouble, "iou_thrs", iou_thrs_t.numel());
  const auto recs = read_vec<double>(rec_thrs_t, at::kDouble, "rec_thrs", rec_thrs_t.numel());
  TORCH_CHECK_VALUE(area_rng_t.dim() == 2 && area_rng_t.size(1) == 2, "detseg.", kOp,
              ": area_rng must be a Tensor[A, 2], got shape ", area_rng_t.sizes());
  const auto arng = read_vec<double>(area_rng_t.reshape({-1}), at::kDouble, "area_rng", area_rng_t.numel());
  TORCH_CHECK_VALUE(!max_dets.empty(), "detseg.", kOp, ": max_dets must not be empty");
  for (size_t i = 0; i < max_dets.size(); ++i)
    TORCH_CHECK_VALUE(max_dets[i] >= 0 && (i == 0 || max_dets[i] >= max_dets[i - 1]), "detseg.", kOp,
                ": max_dets must be sorted and >= 0, got ", max_dets);
  const int64_t T = int64_t(thrs.size()), R = int64_t(recs.size()), A = area_rng_t.size(0);
  const int64_t M = int64_t(max_dets.size()), maxdet = max_dets.back();
  const int64_t K = use_cats ? num_categories : 1;

  // Ground truths by (category, image) or, without categories, (image, category): input
  // order within. Detections the same, then by score within each group, cut to maxDets[-1].
  const std::vector<int64_t> gord = use_cats ? order_by(gt_cat, num_categories, gt_image, num_images)
                                             : order_by(gt_image, num_images, gt_cat, num_categories);
  const std::vector<int64_t> dord0 = use_cats ? order_by(dt_cat, num_categories, dt_image, num_images)
                                              : order_by(dt_image, num_images, dt_cat, num_categories);
  // Group key (category or 0) * num_images + image, merged over the two sorted lists.
  std::vector<int64_t> gkey(NG), dkey(ND);
  for (int64_t i = 0; i < NG; ++i) gkey[i] = (use_cats ? gt_cat[gord[i]] : 0) * num_images + gt_image[gord[i]];
  for (int64_t i = 0; i < ND; ++i) dkey[i] = (use_cats ? dt_cat[dord0[i]] : 0) * num_images + dt_image[dord0[i]];
  auto before = [&](int64_t a, int64_t b) { return coco::score_before(dt_score[a], dt_score[b]); };
  std::vector<Group> groups;
  std::vector<int64_t> dord;  // per group: score-sorted, cut to maxDets[-1]
  dord.reserve(ND);
  {
    std::vector<int64_t> dsorted(dord0);
    int64_t gi = 0, di = 0;
    while (gi < NG || di < ND) {
      const int64_t key = (di >= ND || (gi < NG && gkey[gi] <= dkey[di])) ? gkey[gi] : dkey[di];
      Group g{use_cats ? key / std::max<int64_t>(num_images, 1) : 0, key % std::max<int64_t>(num_images, 1), gi, gi,
              int64_t(dord.size()), 0};
      while (gi < NG && gkey[gi] == key) ++gi;
      g.g1 = gi;
      const int64_t s = di;
      while (di < ND && dkey[di] == key) ++di;
      int64_t* b = dsorted.data() + s;
      const int64_t n = di - s;
      if (n <= 32) {  // stable insertion sort: most groups hold a few detections
        for (int64_t x = 1; x < n; ++x) {
          const int64_t v = b[x];
          int64_t y = x;
          for (; y > 0 && before(v, b[y - 1]); --y) b[y] = b[y - 1];
          b[y] = v;
        }
      } else {
        std::stable_sort(b, b + n, before);
      }
      dord.insert(dord.end(), b, b + std::min(n, maxdet));
      g.d1 = int64_t(dord.size());
      groups.push_back(g);
    }
  }
  const int64_t NGR = int64_t(groups.size()), NDC = int64_t(dord.size());

  // Phase 1: matching per group; outcomes [A, T] per cut detection (det-major).
  std::vector<uint8_t> outcome(size_t(A * T) * NDC);
  std::vector<int64_t> npig(NGR * A);
  at::parallel_for(0, NGR, 16, [&](int64_t b0, int64_t b1) {
    std::vector<double> ious;
    std::vector<int64_t> order;
    std::vector<uint8_t> ig, sig, taken, crowd, idnz, dout;
    for (int64_t gidx = b0; gidx < b1; ++gidx) {
      const Group& grp = groups[gidx];
      const int64_t G = grp.g1 - grp.g0, D = grp.d1 - grp.d0;
      if (G == 0) {  // nothing to match: false positives unless outside the area range
        uint8_t* o = outcome.data() + A * T * grp.d0;
        for (int64_t a = 0; a < A; ++a) npig[gidx * A + a] = 0;
        for (int64_t i = 0; i < D; ++i) {
          const double ar = dt_area[dord[grp.d0 + i]];
          for (int64_t a = 0; a < A; ++a) {
            const uint8_t v = (ar < arng[2 * a] || ar > arng[2 * a + 1]) ? coco::kIgnored : coco::kFalsePositive;
            std::memset(o + (i * A + a) * T, v, T);
          }
        }
        continue;
      }
      ious.resize(D * G);
      order.resize(G);
      ig.resize(G);
      sig.resize(G);
      crowd.resize(G);
      idnz.resize(G);
      taken.resize(T * G);
      dout.resize(D);
      for (int64_t j = 0; j < G; ++j) {
        const int64_t g = gord[grp.g0 + j];
        crowd[j] = gt_crowd[g];
        idnz[j] = gt_ids[g] != 0;
        if (segm && D > 0)
          rle::to_bbox(grle.data(g), grle.len(g), uint32_t(gsz[2 * g]), uint32_t(gsz[2 * g + 1]), gbb.data() + 4 * g);
      }
      if (segm)
        for (int64_t i = 0; i < D; ++i) {
          const int64_t d = dord[grp.d0 + i];
          rle::to_bbox(drle.data(d), drle.len(d), uint32_t(dsz[2 * d]), uint32_t(dsz[2 * d + 1]), dbb.data() + 4 * d);
        }
      for (int64_t i = 0; i < D; ++i) {
        const int64_t d = dord[grp.d0 + i];
        for (int64_t j = 0; j < G; ++j) {
          const int64_t g = gord[grp.g0 + j];
          ious[i * G + j] = segm ? rle::iou(drle.data(d), drle.len(d), dbb.data() + 4 * d, dsz[2 * d],
                                            dsz[2 * d + 1], grle.data(g), grle.len(g), gbb.data() + 4 * g,
                                            gsz[2 * g], gsz[2 * g + 1], crowd[j])
                                 : rle::bbox_iou(dt_boxes.data() + 4 * d, gt_boxes.data() + 4 * g, crowd[j] != 0);
        }
      }
      for (int64_t a = 0; a < A; ++a) {
        const double lo = arng[2 * a], hi = arng[2 * a + 1];
        int64_t np = 0;
        for (int64_t j = 0; j < G; ++j) {
          const double ar = gt_area[gord[grp.g0 + j]];
          ig[j] = crowd[j] || ar < lo || ar > hi;
          np += !ig[j];
        }
        npig[gidx * A + a] = np;
        for (int64_t i = 0; i < D; ++i) {
          const double ar = dt_area[dord[grp.d0 + i]];
          dout[i] = ar < lo || ar > hi;
        }
        coco::match_image(ious.data(), D, G, ig.data(), crowd.data(), idnz.data(), dout.data(), thrs.data(), T,
                          order.data(), sig.data(), taken.data(), outcome.data() + A * T * grp.d0 + a * T, A * T);
      }
    }
  });

  // Phase 2: accumulation per category (groups of one category are contiguous).
  std::vector<int64_t> kstart(K + 1, NGR);
  for (int64_t gidx = NGR - 1; gidx >= 0; --gidx) kstart[groups[gidx].k] = gidx;
  for (int64_t k = K - 1; k >= 0; --k) kstart[k] = std::min(kstart[k], kstart[k + 1]);

  // Each category's [T, R, A, M] block is built in a local buffer and then copied out once,
  // A * M contiguous doubles per (t, r): the outputs are written exactly once, in runs, where
  // writing them curve by curve touched a new cache line per recall threshold.
  at::Tensor precision = at::empty({T, R, K, A, M}, at::kDouble);
  at::Tensor recall = at::empty({T, K, A, M}, at::kDouble);
  at::Tensor scores = at::empty({T, R, K, A, M}, at::kDouble);
  double* PO = precision.data_ptr<double>();
  double* RO = recall.data_ptr<double>();
  double* SO = scores.data_ptr<double>();
  const int64_t AM = A * M;
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    std::vector<std::pair<double, int64_t>> keyed;
    std::vector<int64_t> rank, tpos, sel;
    std::vector<uint8_t> ocd, oc, cut;
    std::vector<double> sc, rcb, envb;
    std::vector<double> Pk(T * R * AM), Sk(T * R * AM), Rk(T * AM);  // [T, R, A, M], [T, A, M]
    auto copy_out = [&](int64_t k) {
      for (int64_t tr = 0; tr < T * R; ++tr) {
        std::memcpy(PO + (tr * K + k) * AM, Pk.data() + tr * AM, AM * sizeof(double));
        std::memcpy(SO + (tr * K + k) * AM, Sk.data() + tr * AM, AM * sizeof(double));
      }
      for (int64_t t = 0; t < T; ++t) std::memcpy(RO + (t * K + k) * AM, Rk.data() + t * AM, AM * sizeof(double));
    };
    for (int64_t k = k0; k < k1; ++k) {
      std::fill(Pk.begin(), Pk.end(), -1.0);
      std::fill(Sk.begin(), Sk.end(), -1.0);
      std::fill(Rk.begin(), Rk.end(), -1.0);
      double* P = Pk.data();
      double* S = Sk.data();
      double* RC = Rk.data();
      const int64_t ga = kstart[k], gb = kstart[k + 1];
      if (ga == gb) {  // no image has this category: every E is None
        copy_out(k);
        continue;
      }
      const int64_t c0 = groups[ga].d0, n = groups[gb - 1].d1 - c0, AT = A * T;
      // The concatenation in image order, stably re-sorted by score; outcomes gathered in
      // that order (det-major), then transposed to one row per (area, threshold).
      keyed.resize(n);
      rank.resize(n);
      int64_t gts = 0;
      for (int64_t gidx = ga; gidx < gb; ++gidx) {
        const Group& grp = groups[gidx];
        gts += grp.g1 - grp.g0;
        for (int64_t p = grp.d0; p < grp.d1; ++p) keyed[p - c0] = {dt_score[dord[p]], (p - grp.d0) * n + (p - c0)};
      }
      std::stable_sort(keyed.begin(), keyed.end(),
                       [](const auto& a, const auto& b) { return coco::score_before(a.first, b.first); });
      sc.resize(n);
      ocd.resize(AT * n);
      oc.resize(AT * n);
      for (int64_t i = 0; i < n; ++i) {
        sc[i] = keyed[i].first;
        rank[i] = keyed[i].second / n;
        std::memcpy(ocd.data() + i * AT, outcome.data() + (c0 + keyed[i].second % n) * AT, AT);
      }
      constexpr int64_t kTile = 64;
      for (int64_t i0 = 0; i0 < n; i0 += kTile)
        for (int64_t at = 0; at < AT; ++at)
          for (int64_t i = i0; i < std::min(n, i0 + kTile); ++i) oc[at * n + i] = ocd[i * AT + at];
      // True positives are at most the ground truths: the scratch of a curve.
      const int64_t cap = std::min(gts, n) + 1;
      tpos.resize(cap);
      rcb.resize(cap);
      envb.resize(cap);
      for (int64_t m = 0; m < M; ++m) {
        // A cut that keeps every detection gives the curve of the last one: copy it.
        sel.clear();
        for (int64_t i = 0; i < n; ++i)
          if (rank[i] < max_dets[m]) sel.push_back(i);
        const bool all = int64_t(sel.size()) == n;
        cut.resize(sel.size());
        if (all && m + 1 < M) continue;  // filled from the last cut below
        for (int64_t a = 0; a < A; ++a) {
          int64_t np = 0;
          for (int64_t gidx = ga; gidx < gb; ++gidx) np += npig[gidx * A + a];
          if (np == 0) continue;
          for (int64_t t = 0; t < T; ++t) {
            coco::Curve c{tpos.data(), rcb.data(), envb.data()};
            c.npig = np;
            const uint8_t* row = oc.data() + (a * T + t) * n;
            if (!all) {  // the kept detections, compacted so that the scan can skip words
              for (size_t i = 0; i < sel.size(); ++i) cut[i] = row[sel[i]];
              row = cut.data();
            }
            c.scan(row, nullptr, int64_t(sel.size()));
            const int64_t off = t * R * AM + a * M + m;
            RC[t * AM + a * M + m] = c.finish(
                [&](int64_t i) { return sc[all ? i : sel[i]]; }, recs.data(), R, P + off, S + off, AM);
          }
        }
      }
      // Cuts that kept everything (all but possibly the last) copy the last cut's curves.
      for (int64_t m = 0; m + 1 < M; ++m) {
        int64_t kept = 0;
        for (int64_t i = 0; i < n; ++i) kept += rank[i] < max_dets[m];
        if (kept != n) continue;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t a = 0; a < A; ++a) {
            const int64_t ri = t * AM + a * M;
            RC[ri + m] = RC[ri + M - 1];
            for (int64_t r = 0; r < R; ++r) {
              const int64_t off = (t * R + r) * AM + a * M;
              P[off + m] = P[off + M - 1];
              S[off + m] = S[off + M - 1];
            }
          }
      }
      copy_out(k);
    }
  });
  return {precision, recall, scores};
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("coco_evaluate", &detseg::cpu::coco_evaluate_cpu);
}
