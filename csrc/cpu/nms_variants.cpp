// CPU kernels of the NMS variants (schemas in csrc/ops.cpp; references in
// python/detseg/reference/nms_variants.py): soft_nms, diou_nms, matrix_nms. Each works per
// category (the whole input when idxs is None); categories are independent and run in
// parallel, each writing only its own slice, so results do not depend on the thread count.
// IoU is the NMS pair IoU of detseg/nms.h (soft, Matrix) or detseg::pair_iou<kDIoU> with
// eps 0 (DIoU), in float32 (float64 for float64 input).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "checks.h"
#include "cpu/nms_common.h"
#include "detseg/box_coder.h"
#include "detseg/boxes.h"

namespace detseg::cpu {
namespace {

// Boxes and scores in the compute type, and the categories as runs of indices: ids[seg[g] ..
// seg[g + 1]) are the members of category g in priority order (stable descending score,
// NaN first, as detseg.ops.nms).
template <typename T>
struct Problem {
  at::Tensor boxes_t, scores_t;
  const T* box = nullptr;  // [n][4]
  const T* score = nullptr;
  std::vector<int32_t> ids;
  std::vector<int64_t> seg;
};

template <typename T>
Problem<T> make_problem(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs) {
  constexpr auto dt = std::is_same_v<T, double> ? at::kDouble : at::kFloat;
  Problem<T> p;
  p.boxes_t = boxes.to(dt).contiguous();
  p.scores_t = scores.to(dt).contiguous();
  p.box = p.boxes_t.template const_data_ptr<T>();
  p.score = p.scores_t.template const_data_ptr<T>();
  const int64_t n = boxes.size(0);
  using K = decltype(desc_key(T(0)));
  std::vector<std::tuple<int64_t, K, int32_t>> v(n);
  const at::Tensor cls = idxs ? idxs->to(at::kLong).contiguous() : at::Tensor();
  const int64_t* c = idxs ? cls.const_data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < n; ++i) v[i] = {c ? c[i] : 0, desc_key(p.score[i]), static_cast<int32_t>(i)};
  std::sort(v.begin(), v.end());
  p.ids.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    p.ids[i] = std::get<2>(v[i]);
    if (i == 0 || std::get<0>(v[i]) != std::get<0>(v[i - 1])) p.seg.push_back(i);
  }
  p.seg.push_back(n);
  return p;
}

// Runs fn(g) for every category g, in parallel when there is enough work.
template <typename F>
void for_each_group(const std::vector<int64_t>& seg, int64_t n, F fn) {
  const int64_t ng = static_cast<int64_t>(seg.size()) - 1;
  if (ng <= 1 || n < 2048 || at::get_num_threads() == 1) {
    for (int64_t g = 0; g < ng; ++g) fn(g);
  } else {
    at::parallel_for(0, ng, 1, [&](int64_t b, int64_t e) {
      for (int64_t g = b; g < e; ++g) fn(g);
    });
  }
}

// IoU as detseg::nms_suppresses computes it.
template <typename T>
inline T nms_iou(T ix1, T iy1, T ix2, T iy2, T ia, T jx1, T jy1, T jx2, T jy2, T ja) {
  const T w = clamp_min0(dmin(ix2, jx2) - dmax(ix1, jx1));
  const T h = clamp_min0(dmin(iy2, jy2) - dmax(iy1, jy1));
  const T inter = w * h;
  return inter / (ia + ja - inter);
}

// Picks are ordered by (score descending, NaN first, index ascending): torch.argmax's order.
template <typename T>
inline bool ranks_before(T sa, int32_t ia, T sb, int32_t ib) {
  const bool na = sa != sa, nb = sb != sb;
  if (na || nb) return na && (!nb || ia < ib);
  return sa > sb || (sa == sb && ia < ib);
}

// ------------------------------------------------------------------ soft_nms

template <typename T>
struct SoftArgs {
  double thr, sigma, min_score;
  bool gaussian, opencv;
};

// Soft-NMS of one category over members[0..m): appends (index, pick-time score) in pick order.
//
// Only a pair with positive overlap changes a score (IoU 0 gives weight exactly 1 in both
// methods), so a pick visits only the blocks of 16 boxes (spatially sorted) whose bounding
// box it overlaps. The next pick is a vectorised max over the live scores (dropped boxes hold
// -inf there), then the lowest index among the boxes at that score. Boxes with non-positive
// width or height, or a non-finite area, overlap nothing: they are never in a block.
template <typename T>
void soft_one(const Problem<T>& p, const int32_t* members, int64_t m, const SoftArgs<T>& a,
              std::vector<std::pair<int32_t, T>>& out) {
  constexpr int kB = 16;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  std::vector<T> cur(m, kNegInf);  // the live scores; -inf once picked or dropped
  std::vector<uint8_t> dead(m, 1);
  std::vector<int32_t> slot_of(m, -1);
  int64_t live_count = 0;
  std::vector<std::pair<uint32_t, int32_t>> zorder;
  float lox = INFINITY, loy = INFINITY, hix = -INFINITY, hiy = -INFINITY;
  for (int64_t q = 0; q < m; ++q) {
    const T sc = p.score[members[q]];
    if (sc != sc) continue;  // NaN scores are dropped
    if (a.opencv && !(static_cast<double>(sc) > a.min_score)) continue;
    cur[q] = sc;
    dead[q] = 0;
    ++live_count;
    const T* r = p.box + 4 * static_cast<int64_t>(members[q]);
    const T w = r[2] - r[0], h = r[3] - r[1];
    if (w > T(0) && h > T(0) && w * h < std::numeric_limits<T>::infinity()) {
      const float cx = static_cast<float>(r[0] * T(0.5) + r[2] * T(0.5));
      const float cy = static_cast<float>(r[1] * T(0.5) + r[3] * T(0.5));
      lox = std::min(lox, cx), hix = std::max(hix, cx), loy = std::min(loy, cy), hiy = std::max(hiy, cy);
      zorder.emplace_back(0u, static_cast<int32_t>(q));
    }
  }
  // Z-order of the centres on a 64 x 64 grid, then blocks of kB boxes.
  const float sx = hix > lox ? 63.0f / (hix - lox) : 0.0f, sy = hiy > loy ? 63.0f / (hiy - loy) : 0.0f;
  for (auto& [key, q] : zorder) {
    const T* r = p.box + 4 * static_cast<int64_t>(members[q]);
    const float cx = static_cast<float>(r[0] * T(0.5) + r[2] * T(0.5));
    const float cy = static_cast<float>(r[1] * T(0.5) + r[3] * T(0.5));
    const uint32_t ix = static_cast<uint32_t>(std::min(63.0f, std::max(0.0f, (cx - lox) * sx)));
    const uint32_t iy = static_cast<uint32_t>(std::min(63.0f, std::max(0.0f, (cy - loy) * sy)));
    key = spread6(ix) | (spread6(iy) << 1);
  }
  std::sort(zorder.begin(), zorder.end());
  const int64_t na = static_cast<int64_t>(zorder.size()), nb = (na + kB - 1) / kB;
  std::vector<T> blk(std::max<int64_t>(nb, 1) * 5 * kB, T(0)), bb(std::max<int64_t>(nb, 1) * 4);
  std::vector<uint32_t> alive(std::max<int64_t>(nb, 1), 0);
  std::vector<int32_t> q_of(std::max<int64_t>(nb, 1) * kB, -1);
  for (int64_t k = 0; k < na; ++k) {
    const int32_t q = zorder[k].second;
    const T* r = p.box + 4 * static_cast<int64_t>(members[q]);
    const int64_t b = k / kB, l = k % kB;
    T* d = blk.data() + b * 5 * kB;
    d[l] = r[0], d[kB + l] = r[1], d[2 * kB + l] = r[2], d[3 * kB + l] = r[3];
    d[4 * kB + l] = (r[2] - r[0]) * (r[3] - r[1]);
    slot_of[q] = static_cast<int32_t>(k);
    q_of[k] = q;
    alive[b] |= 1u << l;
    T* bx = bb.data() + 4 * b;
    if (l == 0) bx[0] = r[0], bx[1] = r[1], bx[2] = r[2], bx[3] = r[3];
    bx[0] = std::min(bx[0], r[0]), bx[1] = std::min(bx[1], r[1]);
    bx[2] = std::max(bx[2], r[2]), bx[3] = std::max(bx[3], r[3]);
  }
  auto kill = [&](int32_t q) {
    dead[q] = 1;
    cur[q] = kNegInf;
    --live_count;
    if (slot_of[q] >= 0) alive[slot_of[q] / kB] &= ~(1u << (slot_of[q] % kB));
  };
  // The next pick (ranks_before's order): NaN first, else the largest score; ties by index.
  bool has_nan = false;  // only inf * 0 can make a decayed score NaN
  auto next_pick = [&]() -> int32_t {
    int32_t best = -1;
    if (has_nan || [&] {
          T mx = kNegInf;
          for (int64_t q = 0; q < m; ++q) mx = cur[q] > mx ? cur[q] : mx;
          if (mx == kNegInf) return true;  // live boxes may hold -inf: the slow scan
          for (int64_t q = 0; q < m; ++q) {
            if (cur[q] == mx && (best < 0 || members[q] < members[best])) best = static_cast<int32_t>(q);
          }
          return false;
        }()) {
      best = -1;
      for (int64_t q = 0; q < m; ++q) {
        if (!dead[q] && (best < 0 || ranks_before(cur[q], members[q], cur[best], members[best]))) {
          best = static_cast<int32_t>(q);
        }
      }
    }
    return best;
  };
  const T sigma = static_cast<T>(a.sigma);
  bool first = true;
  while (live_count > 0) {
    const int32_t pq = next_pick();
    const T ps = cur[pq];
    if (a.opencv && static_cast<double>(ps) < a.min_score) break;
    out.emplace_back(members[pq], ps);
    kill(pq);
    if (!a.opencv && first) {
      // mmcv drops every remaining box under min_score after each pick; only the first pick
      // can find an undecayed one there, later ones check the boxes they decay.
      for (int64_t q = 0; q < m; ++q) {
        if (!dead[q] && static_cast<double>(cur[q]) < a.min_score) kill(static_cast<int32_t>(q));
      }
    }
    first = false;
    const int32_t si = slot_of[pq];
    if (si < 0) continue;  // overlaps nothing
    const T* me = blk.data() + (si / kB) * 5 * kB;
    const int li = si % kB;
    const T ix1 = me[li], iy1 = me[kB + li], ix2 = me[2 * kB + li], iy2 = me[3 * kB + li], ia = me[4 * kB + li];
    for (int64_t b = 0; b < nb; ++b) {
      const T* bx = bb.data() + 4 * b;
      if (!alive[b] || !(bx[0] < ix2 && bx[2] > ix1 && bx[1] < iy2 && bx[3] > iy1)) continue;
      const T* d = blk.data() + b * 5 * kB;
      T iou[kB];
      for (int l = 0; l < kB; ++l) {
        iou[l] = nms_iou(ix1, iy1, ix2, iy2, ia, d[l], d[kB + l], d[2 * kB + l], d[3 * kB + l], d[4 * kB + l]);
      }
      uint32_t live = alive[b];
      while (live) {
        const int l = __builtin_ctz(live);
        live &= live - 1;
        const T v = iou[l];
        if (!(v > T(0))) continue;  // weight exactly 1
        T w;
        if (a.gaussian) {
          w = dexp(-(v * v) / sigma);
        } else {
          const double dv = static_cast<double>(v);
          w = (a.opencv ? dv > a.thr : dv >= a.thr) ? T(1) - v : T(1);
        }
        const int32_t q = q_of[b * kB + l];
        cur[q] = cur[q] * w;
        has_nan |= cur[q] != cur[q];
        if (!a.opencv && static_cast<double>(cur[q]) < a.min_score) kill(q);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                const std::optional<at::Tensor>& idxs, double iou_threshold,
                                                double sigma, double min_score, c10::string_view method,
                                                c10::string_view convention) {
  const auto [gaussian, opencv] =
      checks::soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score,
                       std::string_view(method.data(), method.size()),
                       std::string_view(convention.data(), convention.size()));
  const at::ScalarType dt = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t n = boxes.size(0);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> p = make_problem<T>(boxes, scores, idxs);
    const SoftArgs<T> a{iou_threshold, sigma, min_score, gaussian, opencv};
    const int64_t ng = static_cast<int64_t>(p.seg.size()) - 1;
    std::vector<std::vector<std::pair<int32_t, T>>> per(std::max<int64_t>(ng, 0));
    for_each_group(p.seg, n, [&](int64_t g) {
      soft_one<T>(p, p.ids.data() + p.seg[g], p.seg[g + 1] - p.seg[g], a, per[g]);
    });
    using K = decltype(desc_key(T(0)));
    std::vector<std::tuple<K, int32_t, T>> all;
    for (const auto& v : per) {
      for (const auto& [i, sc] : v) all.emplace_back(desc_key(sc), i, sc);
    }
    std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
      return std::get<0>(x) != std::get<0>(y) ? std::get<0>(x) < std::get<0>(y) : std::get<1>(x) < std::get<1>(y);
    });
    const int64_t k = static_cast<int64_t>(all.size());
    at::Tensor keep = at::empty({k}, boxes.options().dtype(at::kLong));
    at::Tensor val = at::empty({k}, boxes.options().dtype(dt));
    int64_t* kp = keep.data_ptr<int64_t>();
    T* vp = val.data_ptr<T>();
    for (int64_t i = 0; i < k; ++i) {
      kp[i] = std::get<1>(all[i]);
      vp[i] = std::get<2>(all[i]);
    }
    return std::make_tuple(keep, val);
  };
  if (dt == at::kDouble) return run(0.0);
  return run(0.0f);
}

// ------------------------------------------------------------------ diou_nms

template <typename T>
void diou_one(const Problem<T>& p, const int32_t* members, int64_t m, T thr, uint8_t* keep) {
  std::vector<Box<T>> b(m);
  std::vector<uint8_t> dead(m, 0);
  for (int64_t q = 0; q < m; ++q) {
    const T* r = p.box + 4 * static_cast<int64_t>(members[q]);
    b[q] = Box<T>{r[0], r[1], r[2], r[3]};
  }
  for (int64_t i = 0; i < m; ++i) {
    if (dead[i]) continue;
    keep[members[i]] = 1;
    const Box<T> bi = b[i];
    for (int64_t j = i + 1; j < m; ++j) {
      const bool sup = pair_iou<IouKind::kDIoU, IouForm::kMatrix>(bi, b[j], T(0)) > thr;
      dead[j] |= static_cast<uint8_t>(sup);
    }
  }
}

at::Tensor diou_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                        double iou_threshold) {
  checks::diou_nms(boxes, scores, idxs, iou_threshold);
  const int64_t n = boxes.size(0);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> p = make_problem<T>(boxes, scores, idxs);
    std::vector<uint8_t> keep(std::max<int64_t>(n, 1), 0);
    const T thr = threshold_of<T>(iou_threshold);
    for_each_group(p.seg, n, [&](int64_t g) {
      diou_one<T>(p, p.ids.data() + p.seg[g], p.seg[g + 1] - p.seg[g], thr, keep.data());
    });
    // Output by decreasing score, ties by index: the priority order with categories merged.
    using K = decltype(desc_key(T(0)));
    std::vector<std::pair<K, int32_t>> v;
    for (int64_t i = 0; i < n; ++i) {
      if (keep[i]) v.emplace_back(desc_key(p.score[i]), static_cast<int32_t>(i));
    }
    std::sort(v.begin(), v.end());
    at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, boxes.options().dtype(at::kLong));
    int64_t* o = out.data_ptr<int64_t>();
    for (size_t i = 0; i < v.size(); ++i) o[i] = v[i].second;
    return out;
  };
  if (boxes.scalar_type() == at::kDouble) return run(0.0);
  return run(0.0f);
}

// ------------------------------------------------------------------ matrix_nms

// Decay of every member (priority order), written to out[index]. comp_i = max(0, IoU_ki for
// k < i); coefficient of j = min over i < j of f(IoU_ij) / f(comp_i), or 1 for the first
// member: the value of SOLOv2's full-matrix min (every other entry is f(0) / f(comp_i) >= 1,
// and the first member's term bounds the min by 1). NaN propagates as in torch.min.
template <typename T>
void matrix_one(const Problem<T>& p, const int32_t* members, int64_t m, bool gaussian, T sigma, T* out) {
  std::vector<T> x1(m), y1(m), x2(m), y2(m), ar(m), comp(m, T(0)), fcomp(m), row(m);
  for (int64_t q = 0; q < m; ++q) {
    const T* r = p.box + 4 * static_cast<int64_t>(members[q]);
    x1[q] = r[0];
    y1[q] = r[1];
    x2[q] = r[2];
    y2[q] = r[3];
    ar[q] = (r[2] - r[0]) * (r[3] - r[1]);
  }
  auto iou_of = [&](int64_t i, int64_t j) {
    const T v = nms_iou(x1[i], y1[i], x2[i], y2[i], ar[i], x1[j], y1[j], x2[j], y2[j], ar[j]);
    return v != v ? T(0) : v;  // NaN coordinates: no overlap
  };
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = i + 1; j < m; ++j) {
      const T v = iou_of(i, j);
      comp[j] = v > comp[j] ? v : comp[j];
    }
  }
  const T nsig = static_cast<T>(-sigma);
  for (int64_t i = 0; i < m; ++i) fcomp[i] = gaussian ? dexp(nsig * (comp[i] * comp[i])) : T(1) - comp[i];
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < m; ++j) {
    T mn = j == 0 ? T(1) : inf;
    for (int64_t i = 0; i < j; ++i) {
      const T v = iou_of(i, j);
      const T f = gaussian ? (v == T(0) ? T(1) : dexp(nsig * (v * v))) : T(1) - v;
      const T r = f / fcomp[i];
      mn = (mn != mn) ? mn : ((r != r || r < mn) ? r : mn);
    }
    const int32_t idx = members[j];
    out[idx] = p.score[idx] * mn;
  }
}

at::Tensor matrix_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                          c10::string_view kernel, double sigma) {
  const bool gaussian = checks::matrix_nms(boxes, scores, idxs, std::string_view(kernel.data(), kernel.size()), sigma);
  const int64_t n = boxes.size(0);
  const at::ScalarType dt = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({n}, boxes.options().dtype(dt));
  if (n == 0) return out;
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const Problem<T> p = make_problem<T>(boxes, scores, idxs);
    T* o = out.data_ptr<T>();
    for_each_group(p.seg, n, [&](int64_t g) {
      matrix_one<T>(p, p.ids.data() + p.seg[g], p.seg[g + 1] - p.seg[g], gaussian, static_cast<T>(sigma), o);
    });
  };
  if (dt == at::kDouble) {
    run(0.0);
  } else {
    run(0.0f);
  }
  return out;
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("soft_nms", &detseg::cpu::soft_nms_cpu);
  m.impl("diou_nms", &detseg::cpu::diou_nms_cpu);
  m.impl("matrix_nms", &detseg::cpu::matrix_nms_cpu);
}
