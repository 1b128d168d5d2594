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
template <typename T>
void soft_one(const Problem<T>& p, const int32_t* members, int64_t m, const SoftArgs<T>& a,
              std::vector<std::pair<int32_t, T>>& out) {
  // Live boxes, structure of arrays; removal swaps with the last (ties are broken by index).
  std::vector<T> x1, y1, x2, y2, ar, s, w;
  std::vector<int32_t> id;
  for (auto* v : {&x1, &y1, &x2, &y2, &ar, &s, &w}) v->reserve(m);
  id.reserve(m);
  for (int64_t q = 0; q < m; ++q) {
    const int32_t i = members[q];
    const T sc = p.score[i];
    if (sc != sc) continue;  // NaN scores are dropped
    if (a.opencv && !(static_cast<double>(sc) > a.min_score)) continue;
    const T* b = p.box + 4 * static_cast<int64_t>(i);
    x1.push_back(b[0]);
    y1.push_back(b[1]);
    x2.push_back(b[2]);
    y2.push_back(b[3]);
    ar.push_back((b[2] - b[0]) * (b[3] - b[1]));
    s.push_back(sc);
    id.push_back(i);
  }
  w.resize(x1.size());
  int64_t live = static_cast<int64_t>(x1.size());
  auto remove = [&](int64_t j) {
    --live;
    x1[j] = x1[live];
    y1[j] = y1[live];
    x2[j] = x2[live];
    y2[j] = y2[live];
    ar[j] = ar[live];
    s[j] = s[live];
    id[j] = id[live];
  };
  int64_t best = 0;
  for (int64_t j = 1; j < live; ++j) {
    if (ranks_before(s[j], id[j], s[best], id[best])) best = j;
  }
  const T sigma = static_cast<T>(a.sigma);
  while (live > 0) {
    const T sb = s[best];
    if (a.opencv && static_cast<double>(sb) < a.min_score) break;
    out.emplace_back(id[best], sb);
    const T bx1 = x1[best], by1 = y1[best], bx2 = x2[best], by2 = y2[best], ba = ar[best];
    remove(best);
    // Decay weights: a plain loop over the live arrays (vectorised for the linear method).
    for (int64_t j = 0; j < live; ++j) {
      T iou = nms_iou(bx1, by1, bx2, by2, ba, x1[j], y1[j], x2[j], y2[j], ar[j]);
      iou = iou != iou ? T(0) : iou;  // NaN coordinates: no overlap
      w[j] = iou;
    }
    if (a.gaussian) {
      for (int64_t j = 0; j < live; ++j) {
        const T iou = w[j];
        // exp(-0 / sigma) is exactly 1: the common no-overlap case skips the call.
        w[j] = iou == T(0) ? T(1) : dexp(-(iou * iou) / sigma);
      }
    } else {
      for (int64_t j = 0; j < live; ++j) {
        const T iou = w[j];
        const double d = static_cast<double>(iou);
        const bool hit = a.opencv ? d > a.thr : d >= a.thr;
        w[j] = hit ? T(1) - iou : T(1);
      }
    }
    best = -1;
    for (int64_t j = 0; j < live;) {
      s[j] = s[j] * w[j];
      if (!a.opencv && static_cast<double>(s[j]) < a.min_score) {
        remove(j);
        w[j] = w[live];
        continue;
      }
      if (best < 0 || ranks_before(s[j], id[j], s[best], id[best])) best = j;
      ++j;
    }
    if (best < 0) break;
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
