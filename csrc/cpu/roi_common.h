// Helpers shared by the CPU RoI kernels (roi_align.cpp, roi_pool.cpp).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "checks.h"
#include "roi_host.h"

namespace detseg::cpu {

// RoI indices of each batch element, in RoI order: the fixed order in which a backward task
// accumulates into its gradient plane. Batch indices are checked beforehand.
template <typename acc_t>
std::vector<std::vector<int64_t>> rois_by_batch(const acc_t* rois, int64_t k, int64_t n) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < k; ++i) out[static_cast<size_t>(rois[5 * i])].push_back(i);
  return out;
}

inline int64_t by_batch_total(const std::vector<std::vector<int64_t>>& by_batch) {
  int64_t n = 0;
  for (const auto& v : by_batch) n += static_cast<int64_t>(v.size());
  return n;
}

// For NCHW input, whether to transpose it to channels-last first and run the channel-inner
// loop: the copy costs ~N*H*W*C, the NCHW loop pays a strided gather per sample and channel
// (5x slower per sample on the box-head workload). Both loops give the same bits.
inline bool roi_prefer_nhwc(int64_t k, int64_t ph, int64_t pw, int64_t n, int64_t h, int64_t w) {
  return k * ph * pw * 16 >= n * h * w;
}

// parallel_for grain for items of `per_item` work units (~ one bilinear sample each): tiny
// problems stay on the calling thread, where starting the pool costs more than the work.
inline int64_t roi_grain(int64_t per_item) {
  constexpr int64_t kWork = 1 << 14;
  return std::max<int64_t>(1, kWork / std::max<int64_t>(1, per_item));
}

// Position-sensitive backward, one task per input plane idx = (b, ci): channel ci = (c * ph + p) * pw + q
// feeds only bin (p, q) of output channel c, so a task owns its plane and adds the RoIs of b in RoI
// order (same bits for any thread count). body(state, plane, k, c, p, q) adds RoI k; State is
// per-task scratch.
template <typename State, typename acc_t, typename Body>
void ps_roi_backward_planes(acc_t* gin, int64_t N, int64_t C, int64_t HW, int ph, int pw, int64_t K,
                            const std::vector<std::vector<int64_t>>& by_batch, const Body& body) {
  const int64_t PP = int64_t(ph) * pw;
  at::parallel_for(0, N * C, roi_grain((1 + K / std::max<int64_t>(N, 1)) * 16), [&](int64_t i0, int64_t i1) {
    State s;
    for (int64_t idx = i0; idx < i1; ++idx) {
      const int64_t b = idx / C, ci = idx % C, c = ci / PP;
      const int p = int(ci / pw % ph), q = int(ci % pw);
      acc_t* plane = gin + idx * HW;
      for (const int64_t k : by_batch[b]) body(s, plane, k, c, p, q);
    }
  });
}

// The body of both position-sensitive backward ops for one dtype: gin [N, C, H, W] (acc_t,
// zeroed) receives, per RoI k of each input plane, kernel(state, plane, roi, scale, g, p, q) with
// roi = the 5 acc_t values of k and g = grad[k, c, p, q] in acc_t.
template <typename scalar_t, typename State, typename Kernel>
void ps_roi_backward_typed(const char* op, const at::Tensor& grad, const at::Tensor& rois_acc, at::Tensor& gin,
                           double spatial_scale, int ph, int pw, int64_t Cout, const Kernel& kernel) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = rois_acc.size(0), N = gin.size(0), C = gin.size(1), HW = gin.size(2) * gin.size(3);
  const acc_t* rp = rois_acc.data_ptr<acc_t>();
  checks::roi_batch_indices(op, rp, K, N);
  if (K == 0 || C == 0 || HW == 0) return;
  const std::vector<std::vector<int64_t>> by_batch = rois_by_batch(rp, K, N);
  const at::Tensor g = grad.contiguous();
  const scalar_t* gp = g.data_ptr<scalar_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  ps_roi_backward_planes<State>(gin.data_ptr<acc_t>(), N, C, HW, ph, pw, K, by_batch,
                                [&](State& s, acc_t* plane, int64_t k, int64_t c, int p, int q) {
                                  kernel(s, plane, rp + 5 * k, scale, acc_t(gp[((k * Cout + c) * ph + p) * pw + q]),
                                         p, q);
                                });
}

}  // namespace detseg::cpu
