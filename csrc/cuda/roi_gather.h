// The per-element arithmetic of the deterministic (gather) RoI backward: which samples / bins
// of a RoI reach one input-gradient element (h, w), and their terms in the CPU kernel's order.
// Torch-free and DETSEG_HOST_DEVICE so that tests/roi_gather_check.cpp runs it on the host
// against a scatter in the CPU order (bitwise); cuda/roi_common.cuh drives it on the device.
//
// The scatter order of csrc/cpu/roi_*.cpp for one gradient element is (RoI, bin row p, bin
// column q, sample row i, sample column j, corner 1..4). The gather visits the same terms in
// the same order, skipping only terms that cannot land on (h, w).
#pragma once

#include <cstdint>

#include "detseg/roi_align.h"
#include "detseg/roi_pool.h"

namespace detseg {

template <typename T>
DETSEG_HOST_DEVICE T gabs(T x) { return x < T(0) ? -x : x; }

// Monotone rank of a sample position along one axis: its low neighbour when the sample is
// valid, -2 below the map (or NaN), size + 1 above it. A sample's neighbours include row h
// (0 <= h < size) exactly when its rank is h - 1 or h.
template <typename T>
DETSEG_HOST_DEVICE int sample_rank(T v, int size) {
  const AxisSample<T> s = axis_sample(v, size);
  if (s.valid) return s.lo;
  return v > static_cast<T>(size) ? size + 1 : -2;
}

// [i0, i1): the samples of bin p (0 <= i < grid) whose neighbours include row h. Inside a bin
// positions are monotone in i (start + p * bin is fixed and rounding is monotone): increasing
// for bin >= 0, decreasing for the negative bins of an inverted aligned RoI. So the set is
// contiguous and two binary searches find it.
template <typename T>
DETSEG_HOST_DEVICE void touching_samples(T start, T bin, int p, int grid, int size, int h, int& i0, int& i1) {
  const bool desc = bin < T(0);
  int lo = 0, hi = grid;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (sample_rank(roi_sample_pos(start, bin, p, desc ? grid - 1 - mid : mid, grid), size) >= h - 1) hi = mid;
    else lo = mid + 1;
  }
  const int t0 = lo;
  hi = grid;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (sample_rank(roi_sample_pos(start, bin, p, desc ? grid - 1 - mid : mid, grid), size) > h) hi = mid;
    else lo = mid + 1;
  }
  const int t1 = lo;
  i0 = desc ? grid - t1 : t0;
  i1 = desc ? grid - t0 : t1;
}

// Rounding allowance for sample positions: they lie between start and start + pooled * bin
// up to a few ulps of the larger magnitude; this is far above that and still tight in pixels.
template <typename T>
DETSEG_HOST_DEVICE T position_slack(T start, T end) {
  return (gabs(start) + gabs(end)) * T(1e-4) + T(1e-3);
}

// Rows [lo, hi] the samples of a RoI can touch along one axis (a sample at v reaches rows
// floor(v) - 1 .. floor(v) + 2 at most, clamping included); empty (lo > hi) without samples
// or without a finite position.
template <typename T>
DETSEG_HOST_DEVICE void align_axis_window(T start, T bin, int pooled, int grid, int size, int& lo, int& hi) {
  const T end = start + static_cast<T>(pooled) * bin;
  const T slack = position_slack(start, end);
  const T a = dfloor((start < end ? start : end) - slack) - T(1);
  const T b = dceil((start < end ? end : start) + slack) + T(2);
  if (grid <= 0 || !(a - a == T(0)) || !(b - b == T(0))) {
    lo = 1, hi = 0;
    return;
  }
  lo = a < T(0) ? 0 : (a > static_cast<T>(size) ? size : static_cast<int>(a));
  hi = b > static_cast<T>(size - 1) ? size - 1 : (b < T(-1) ? -1 : static_cast<int>(b));
}

// [p0, p1): the bins along one axis that may hold a sample touching row h. Bin p's samples lie
// in [start + p * bin, start + (p + 1) * bin] up to the slack and touch h only from
// [h - 2, h + 1]; the bounds are widened by 1 for the rounding of the division. Skipping the
// other bins changes no sum. Negative, zero or non-finite bins keep the full range.
template <typename T>
DETSEG_HOST_DEVICE void touching_bins(T start, T bin, int pooled, int h, int& p0, int& p1) {
  p0 = 0, p1 = pooled;
  if (!(bin > T(0))) return;
  const T slack = position_slack(start, start + static_cast<T>(pooled) * bin);
  const T lo = dfloor((static_cast<T>(h) - T(2) - slack - start) / bin) - T(2);
  const T hi = dfloor((static_cast<T>(h) + T(1) + slack - start) / bin) + T(2);
  if (!(lo - lo == T(0)) || !(hi - hi == T(0))) return;
  const T top = static_cast<T>(pooled);
  p0 = lo <= T(0) ? 0 : (lo >= top ? pooled : static_cast<int>(lo));
  p1 = hi <= T(0) ? 0 : (hi >= top ? pooled : static_cast<int>(hi));
}

// The corner terms of one sample that land on (h, w), in scatter_sample's order.
template <typename T>
DETSEG_HOST_DEVICE void add_corners(T& acc, const AxisSample<T>& ay, const AxisSample<T>& ax, int h, int w, T g,
                                    T count) {
  const Bilinear<T> wt = bilinear(ay, ax);
  if (ay.lo == h) {
    if (ax.lo == w) acc += g * wt.w1 / count;
    if (ax.hi == w) acc += g * wt.w2 / count;
  }
  if (ay.hi == h) {
    if (ax.lo == w) acc += g * wt.w3 / count;
    if (ax.hi == w) acc += g * wt.w4 / count;
  }
}

// RoIAlign: adds RoI geometry g's terms for gradient element (h, w) of an H x W plane to acc.
// Bins: every (p, q) (p_only < 0), or the one bin (p_only, q_only) of a position-sensitive
// channel. grad_at(p, q): the incoming gradient of bin (p, q) as T. Max mode: arg_at(p, q) =
// the bin's argmax sample i * grid_w + j or -1, and only that sample's corners count (weight
// divisor 1, as the CPU kernel); average mode never calls arg_at.
template <typename T, typename GradAt, typename ArgAt>
DETSEG_HOST_DEVICE void align_gather_roi(const RoiAlignGeom<T>& g, int ph, int pw, int H, int W, int h, int w,
                                         int p_only, int q_only, bool max_mode, const GradAt& grad_at,
                                         const ArgAt& arg_at, T& acc) {
  int p0 = p_only, p1 = p_only + 1, q0 = q_only, q1 = q_only + 1;
  if (p_only < 0) {
    touching_bins(g.start_h, g.bin_h, ph, h, p0, p1);
    touching_bins(g.start_w, g.bin_w, pw, w, q0, q1);
  }
  for (int p = p0; p < p1; ++p) {
    int i0, i1;
    touching_samples(g.start_h, g.bin_h, p, g.grid_h, H, h, i0, i1);
    if (i0 >= i1) continue;
    for (int q = q0; q < q1; ++q) {
      int j0, j1;
      touching_samples(g.start_w, g.bin_w, q, g.grid_w, W, w, j0, j1);
      if (j0 >= j1) continue;
      const T gb = grad_at(p, q);
      if (max_mode) {
        const int64_t am = arg_at(p, q);
        if (am < 0) continue;
        const int i = static_cast<int>(am / g.grid_w), j = static_cast<int>(am % g.grid_w);
        if (i < i0 || i >= i1 || j < j0 || j >= j1) continue;
        add_corners(acc, axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, i, g.grid_h), H),
                    axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, j, g.grid_w), W), h, w, gb, T(1));
        continue;
      }
      for (int i = i0; i < i1; ++i) {
        const AxisSample<T> ay = axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, i, g.grid_h), H);
        if (!ay.valid) continue;
        for (int j = j0; j < j1; ++j) {
          const AxisSample<T> ax = axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, j, g.grid_w), W);
          if (ax.valid) add_corners(acc, ay, ax, h, w, gb, g.count);
        }
      }
    }
  }
}

// RoIPool: the pixels [lo, hi] along one axis covered by the union of a RoI's bins (bin edges
// are monotone in the bin index); empty for a non-finite RoI.
template <typename T>
DETSEG_HOST_DEVICE void pool_axis_window(const RoiPoolGeom<T>& g, bool rows, int pooled, int64_t size, int& lo,
                                         int& hi) {
  if (!g.finite) {
    lo = 1, hi = 0;
    return;
  }
  const int64_t start = rows ? g.start_h : g.start_w;
  const T bin = rows ? g.bin_h : g.bin_w;
  int64_t a0, a1, b0, b1;
  roi_pool_bin(start, bin, 0, size, a0, a1);
  roi_pool_bin(start, bin, pooled - 1, size, b0, b1);
  lo = static_cast<int>(a0);
  hi = static_cast<int>(b1) - 1;
}

// RoIPool / PSRoIPool: adds RoI geometry g's terms for gradient element (h, w) to acc.
// roi_pool (p_only < 0): grad_at(p, q) for every bin holding (h, w) whose argmax arg_at(p, q)
// is h * W + w, bins in row-major order (the loops stop at the first bin past the pixel);
// ps_roi_pool: the bin (p_only, q_only), grad_at / bin area when it holds (h, w).
template <typename T, typename GradAt, typename ArgAt>
DETSEG_HOST_DEVICE void pool_gather_roi(const RoiPoolGeom<T>& g, int ph, int pw, int64_t H, int64_t W, int h, int w,
                                        int p_only, int q_only, const GradAt& grad_at, const ArgAt& arg_at, T& acc) {
  if (!g.finite) return;
  if (p_only >= 0) {
    int64_t h0, h1, w0, w1;
    roi_pool_bin(g.start_h, g.bin_h, p_only, H, h0, h1);
    roi_pool_bin(g.start_w, g.bin_w, q_only, W, w0, w1);
    if (h < h0 || h >= h1 || w < w0 || w >= w1) return;
    acc += grad_at(p_only, q_only) / static_cast<T>((h1 - h0) * (w1 - w0));
    return;
  }
  const int64_t pos = int64_t(h) * W + w;
  for (int p = 0; p < ph; ++p) {
    int64_t h0, h1;
    roi_pool_bin(g.start_h, g.bin_h, p, H, h0, h1);
    if (h0 > h) break;
    if (h1 <= h) continue;
    for (int q = 0; q < pw; ++q) {
      int64_t w0, w1;
      roi_pool_bin(g.start_w, g.bin_w, q, W, w0, w1);
      if (w0 > w) break;
      if (w1 <= w) continue;
      if (arg_at(p, q) == pos) acc += grad_at(p, q);
    }
  }
}

}  // namespace detseg
