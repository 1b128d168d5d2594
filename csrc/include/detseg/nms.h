// The NMS suppression rule, shared by every backend (mirrored in
// python/detseg/triton/nms.py and python/detseg/reference/boxes.py).
#pragma once

#include <cfloat>
#include <cmath>

#include "detseg/host_device.h"

namespace detseg {

// Box j is suppressed by a kept box i when IoU(i, j) > threshold, strictly (IoU equal to
// the threshold is kept, as torchvision). IoU = inter / (area_i + area_j - inter) with the
// intersection sides clamped at 0 and no eps. A NaN IoU (a NaN coordinate makes the area
// NaN) never compares greater, so such a box neither suppresses nor is suppressed.
template <typename T>
DETSEG_HOST_DEVICE bool nms_suppresses(T ix1, T iy1, T ix2, T iy2, T area_i,
                                       T jx1, T jy1, T jx2, T jy2, T area_j, T threshold) {
  const T w = clamp_min0(dmin(ix2, jx2) - dmax(ix1, jx1));
  const T h = clamp_min0(dmin(iy2, jy2) - dmax(iy1, jy1));
  const T inter = w * h;
  return inter / (area_i + area_j - inter) > threshold;
}

// The threshold is a double (as in torchvision's schema); the IoU is float32 for every
// input dtype but float64. `iou > t` with t promoted to double is the same predicate as
// `iou > nms_threshold_f32(t)` in float, so every backend compares in its compute type.
inline float nms_threshold_f32(double t) {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -FLT_MAX);
  return f;
}

}  // namespace detseg
