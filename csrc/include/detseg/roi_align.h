// RoIAlign math (torchvision's pixel model, mmcv's max mode), torch-free: the CPU and CUDA
// kernels call these; python/detseg/reference/roi.py (and Triton) mirror them term for term.
//
// A RoI row is (batch, x1, y1, x2, y2) in input-image coordinates. Bilinear sampling is
// separable: the sample positions of a bin form a grid (rows iy x columns ix), and the
// weights of a sample are products of one y-axis and one x-axis factor, so a kernel
// computes AxisSample once per (bin row, iy) and per (bin column, ix), not per sample.
// The products w1..w4 below are exactly torchvision's (hy*hx, hy*lx, ly*hx, ly*lx).
#pragma once

#include "detseg/host_device.h"

namespace detseg {

template <typename T>
DETSEG_HOST_DEVICE T dceil(T x) {
#if defined(__CUDA_ARCH__)
  return ::ceil(x);
#else
  return std::ceil(x);
#endif
}

// Per-axis sample count is capped: beyond it the int conversion of ceil(size / bins) would
// overflow (a RoI of 1e30 pixels), and no real feature map needs more than 2^16 samples per
// bin along one axis.
constexpr int kRoiMaxGrid = 1 << 16;

template <typename T>
struct RoiAlignGeom {
  T start_h, start_w;  // top-left corner in feature-map pixels
  T bin_h, bin_w;      // bin size
  int grid_h, grid_w;  // samples per bin along each axis (0 for a non-finite RoI)
  T count;             // divisor of the average: max(grid_h * grid_w, 1)
};

// Samples per bin: sampling_ratio if > 0, else ceil(roi_size / pooled) (adaptive). A
// non-finite or non-positive adaptive count gives 0 samples, so a RoI with a NaN or inf
// coordinate outputs 0 (the sample positions would be NaN / inf too: see axis_sample).
template <typename T>
DETSEG_HOST_DEVICE int roi_grid(int sampling_ratio, T roi_size, int pooled) {
  if (sampling_ratio > 0) return sampling_ratio;
  const T g = dceil(roi_size / static_cast<T>(pooled));
  if (!(g > T(0))) return 0;  // NaN, -inf, negative (aligned RoI with x2 < x1), 0
  if (g - g != T(0)) return 0;  // +inf: an infinite RoI has no finite sample positions either
  if (!(g < static_cast<T>(kRoiMaxGrid))) return kRoiMaxGrid;
  return static_cast<int>(g);
}

// roi points at (batch, x1, y1, x2, y2). aligned: half-pixel shift, sizes not clamped;
// otherwise sizes are forced >= 1 (legacy Detectron behaviour kept by torchvision).
template <typename T>
DETSEG_HOST_DEVICE RoiAlignGeom<T> roi_align_geom(const T* roi, T spatial_scale, int pooled_h, int pooled_w,
                                                  int sampling_ratio, bool aligned) {
  const T off = aligned ? T(0.5) : T(0);
  RoiAlignGeom<T> g;
  g.start_w = roi[1] * spatial_scale - off;
  g.start_h = roi[2] * spatial_scale - off;
  const T end_w = roi[3] * spatial_scale - off;
  const T end_h = roi[4] * spatial_scale - off;
  T roi_w = end_w - g.start_w;
  T roi_h = end_h - g.start_h;
  if (!aligned) {
    // dmax(NaN, 1) keeps NaN: the RoI stays non-finite and outputs 0.
    roi_w = roi_w < T(1) ? T(1) : roi_w;
    roi_h = roi_h < T(1) ? T(1) : roi_h;
  }
  g.bin_h = roi_h / static_cast<T>(pooled_h);
  g.bin_w = roi_w / static_cast<T>(pooled_w);
  g.grid_h = roi_grid(sampling_ratio, roi_h, pooled_h);
  g.grid_w = roi_grid(sampling_ratio, roi_w, pooled_w);
  const int n = g.grid_h * g.grid_w;  // <= 2^32 only when both hit the cap: use T
  g.count = n > 0 ? static_cast<T>(g.grid_h) * static_cast<T>(g.grid_w) : T(1);
  return g;
}

// Position of sample i (0 <= i < grid) of bin p along one axis.
template <typename T>
DETSEG_HOST_DEVICE T roi_sample_pos(T start, T bin, int p, int i, int grid) {
  return start + static_cast<T>(p) * bin + static_cast<T>(static_cast<T>(i) + T(0.5)) * bin / static_cast<T>(grid);
}

// One axis of a bilinear sample: neighbours lo/hi and weights (h for lo, l for hi).
template <typename T>
struct AxisSample {
  int lo, hi;
  T l, h;
  bool valid;  // false: the sample contributes 0 (but still counts in the average)
};

// torchvision's rule: outside [-1, size] -> no contribution; negatives clamp to 0; at or past
// the last row both neighbours are the last row. NaN fails the range test (no contribution),
// unlike torchvision before pytorch/vision#9272, where it reached an int conversion.
template <typename T>
DETSEG_HOST_DEVICE AxisSample<T> axis_sample(T v, int size) {
  AxisSample<T> s;
  if (!(v >= T(-1) && v <= static_cast<T>(size))) {
    s.lo = s.hi = 0;
    s.l = s.h = T(0);
    s.valid = false;
    return s;
  }
  s.valid = true;
  if (v <= T(0)) v = T(0);
  s.lo = static_cast<int>(v);
  if (s.lo >= size - 1) {
    s.lo = s.hi = size - 1;
    v = static_cast<T>(s.lo);
  } else {
    s.hi = s.lo + 1;
  }
  s.l = v - static_cast<T>(s.lo);
  s.h = T(1) - s.l;
  return s;
}

// Weights of the four neighbours (lo,lo), (lo,hi), (hi,lo), (hi,hi) as (y, x).
template <typename T>
struct Bilinear {
  T w1, w2, w3, w4;
};

template <typename T>
DETSEG_HOST_DEVICE Bilinear<T> bilinear(const AxisSample<T>& y, const AxisSample<T>& x) {
  return Bilinear<T>{y.h * x.h, y.h * x.l, y.l * x.h, y.l * x.l};
}

// The interpolated value of one sample, in this summation order on every backend.
template <typename T>
DETSEG_HOST_DEVICE T bilinear_value(const Bilinear<T>& w, T v1, T v2, T v3, T v4) {
  return w.w1 * v1 + w.w2 * v2 + w.w3 * v3 + w.w4 * v4;
}

// Max mode (mmcv's pool_mode='max'): the bin's value is its largest sample, an invalid
// sample counting as 0. Ties keep the first sample in (iy, ix) order and NaN wins, as
// torch.argmax; an empty grid outputs 0. Returns true when `v` replaces the current best.
template <typename T>
DETSEG_HOST_DEVICE bool max_takes(T v, T best, bool first) {
  return first || v > best || (v != v && best == best);
}

}  // namespace detseg
