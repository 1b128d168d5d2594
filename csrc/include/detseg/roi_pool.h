// RoIPool math (torchvision's legacy Fast R-CNN quantisation), torch-free: the CPU and CUDA
// kernels call these; python/detseg/reference/roi.py mirrors them.
//
// Corners are rounded to whole pixels (half away from zero), the RoI spans
// max(end - start + 1, 1) pixels, bin p covers [floor(p * bin), ceil((p + 1) * bin)) offset
// by the start and clipped to the map. bin = size / pooled is computed in the compute type
// T (float32 for float32/float16/bfloat16 input), so the last bin's end can overshoot by
// one pixel exactly as in torchvision and onnxruntime (OpenVINO differs there).
#pragma once

#include "detseg/host_device.h"

#include <cstdint>

namespace detseg {

template <typename T>
DETSEG_HOST_DEVICE T dround(T x) {
#if defined(__CUDA_ARCH__)
  return ::round(x);
#else
  return std::round(x);
#endif
}

template <typename T>
DETSEG_HOST_DEVICE T dfloor(T x) {
#if defined(__CUDA_ARCH__)
  return ::floor(x);
#else
  return std::floor(x);
#endif
}

template <typename T>
DETSEG_HOST_DEVICE T dceil_pool(T x) {
#if defined(__CUDA_ARCH__)
  return ::ceil(x);
#else
  return std::ceil(x);
#endif
}

// Scaled corners are clamped to +-2^30 before the integer arithmetic: a RoI far outside
// the map stays outside (its bins clip to empty), and nothing overflows. A non-finite
// corner makes the whole RoI empty (every bin 0, argmax -1).
constexpr double kRoiPoolCoordLimit = 1073741824.0;

template <typename T>
struct RoiPoolGeom {
  int64_t start_h, start_w;  // rounded top-left corner
  T bin_h, bin_w;
  bool finite;
};

template <typename T>
DETSEG_HOST_DEVICE int64_t roi_pool_corner(T v) {
  const T lim = static_cast<T>(kRoiPoolCoordLimit);
  v = v < -lim ? -lim : (v > lim ? lim : v);
  return static_cast<int64_t>(dround(v));
}

// roi points at (batch, x1, y1, x2, y2). extent_plus_one: roi_pool spans end - start + 1
// pixels (inclusive corners), ps_roi_pool end - start (torchvision's two kernels differ).
template <typename T>
DETSEG_HOST_DEVICE RoiPoolGeom<T> roi_pool_geom(const T* roi, T spatial_scale, int pooled_h, int pooled_w,
                                                bool extent_plus_one = true) {
  RoiPoolGeom<T> g;
  const T x1 = roi[1] * spatial_scale, y1 = roi[2] * spatial_scale;
  const T x2 = roi[3] * spatial_scale, y2 = roi[4] * spatial_scale;
  // x - x == 0 exactly for finite x, NaN for NaN / inf.
  g.finite = (x1 - x1 == T(0)) && (y1 - y1 == T(0)) && (x2 - x2 == T(0)) && (y2 - y2 == T(0));
  if (!g.finite) {
    g.start_h = g.start_w = 0;
    g.bin_h = g.bin_w = T(0);
    return g;
  }
  g.start_w = roi_pool_corner(x1);
  g.start_h = roi_pool_corner(y1);
  const int64_t end_w = roi_pool_corner(x2);
  const int64_t end_h = roi_pool_corner(y2);
  const int64_t one = extent_plus_one ? 1 : 0;
  const int64_t roi_w = dmax<int64_t>(end_w - g.start_w + one, 1);
  const int64_t roi_h = dmax<int64_t>(end_h - g.start_h + one, 1);
  g.bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_h);
  g.bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_w);
  return g;
}

// Half-open pixel range [lo, hi) of bin p along one axis, clipped to [0, size].
template <typename T>
DETSEG_HOST_DEVICE void roi_pool_bin(int64_t start, T bin, int p, int64_t size, int64_t& lo, int64_t& hi) {
  lo = static_cast<int64_t>(dfloor(static_cast<T>(p) * bin)) + start;
  hi = static_cast<int64_t>(dceil_pool(static_cast<T>(p + 1) * bin)) + start;
  lo = dmin<int64_t>(dmax<int64_t>(lo, 0), size);
  hi = dmin<int64_t>(dmax<int64_t>(hi, 0), size);
}

// Position-sensitive ops: output channel c of bin (p, q) reads input channel
// (c * pooled_h + p) * pooled_w + q (R-FCN), so input channels = out channels * pooled_h * pooled_w.
DETSEG_HOST_DEVICE int64_t ps_input_channel(int64_t c_out, int p, int q, int pooled_h, int pooled_w) {
  return (c_out * pooled_h + p) * pooled_w + q;
}

// Max over a bin keeps the first maximum in row-major order and lets NaN win, as
// torch.argmax (torchvision's strict '>' skips NaN instead; documented difference).
template <typename T>
DETSEG_HOST_DEVICE bool pool_takes(T v, T best, bool first) {
  return first || v > best || (v != v && best == best);
}

}  // namespace detseg
