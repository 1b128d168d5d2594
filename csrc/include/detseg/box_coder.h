// Box coding (torchvision BoxCoder / BoxLinearCoder semantics, SEMANTICS.md c.10): the one
// statement of encode / decode of a single box, shared by the box-coding ops, the YOLO grid
// decode and the fused multiclass_nms (deltas + anchors). Boxes are continuous xyxy (no +1).
// Half types are computed in float32 by the callers (T is float or double).
#pragma once

#include "detseg/host_device.h"

namespace detseg {

template <typename T>
DETSEG_HOST_DEVICE T dexp(T x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

template <typename T>
DETSEG_HOST_DEVICE T dlog(T x) {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}

// torchvision's default bbox_xform_clip, log(1000 / 16): a clamp on dw, dh before exp.
constexpr double kBboxXformClip = 4.135166556742356;

// BoxCoder.encode of one (reference = anchor / proposal, target = ground truth) pair:
// (wx * dx / w_a, wy * dy / h_a, ww * log(w_g / w_a), wh * log(h_g / h_a)), centres x1 + 0.5 w.
// Evaluated in torchvision's order, term by term (bit-identical to the tensor code without FMA).
template <typename T>
DETSEG_HOST_DEVICE void encode_box(const T* ref, const T* gt, T wx, T wy, T ww, T wh, T* out) {
  const T ex_w = ref[2] - ref[0];
  const T ex_h = ref[3] - ref[1];
  const T ex_cx = ref[0] + T(0.5) * ex_w;
  const T ex_cy = ref[1] + T(0.5) * ex_h;
  const T gt_w = gt[2] - gt[0];
  const T gt_h = gt[3] - gt[1];
  const T gt_cx = gt[0] + T(0.5) * gt_w;
  const T gt_cy = gt[1] + T(0.5) * gt_h;
  out[0] = wx * (gt_cx - ex_cx) / ex_w;
  out[1] = wy * (gt_cy - ex_cy) / ex_h;
  out[2] = ww * dlog(gt_w / ex_w);
  out[3] = wh * dlog(gt_h / ex_h);
}

// BoxCoder.decode of one delta against its reference box: dw, dh are divided by their
// weights, then clamped ABOVE at `clip` (NaN passes through, as torch.clamp), then exp'd.
template <typename T>
DETSEG_HOST_DEVICE void decode_box(const T* delta, const T* ref, T wx, T wy, T ww, T wh, T clip, T* out) {
  const T w = ref[2] - ref[0];
  const T h = ref[3] - ref[1];
  const T cx = ref[0] + T(0.5) * w;
  const T cy = ref[1] + T(0.5) * h;
  const T dx = delta[0] / wx;
  const T dy = delta[1] / wy;
  T dw = delta[2] / ww;
  T dh = delta[3] / wh;
  dw = dw > clip ? clip : dw;
  dh = dh > clip ? clip : dh;
  const T pcx = dx * w + cx;
  const T pcy = dy * h + cy;
  const T pw = dexp(dw) * w;
  const T ph = dexp(dh) * h;
  const T hw = T(0.5) * pw;
  const T hh = T(0.5) * ph;
  out[0] = pcx - hw;
  out[1] = pcy - hh;
  out[2] = pcx + hw;
  out[3] = pcy + hh;
}

// BoxLinearCoder.encode: (l, t, r, b) distances of the target's sides from the reference's
// centre, divided by the reference's (w, h, w, h) when normalize_by_size.
template <typename T>
DETSEG_HOST_DEVICE void linear_encode_box(const T* ref, const T* gt, bool normalize_by_size, T* out) {
  const T cx = T(0.5) * (ref[0] + ref[2]);
  const T cy = T(0.5) * (ref[1] + ref[3]);
  out[0] = cx - gt[0];
  out[1] = cy - gt[1];
  out[2] = gt[2] - cx;
  out[3] = gt[3] - cy;
  if (normalize_by_size) {
    const T w = ref[2] - ref[0];
    const T h = ref[3] - ref[1];
    out[0] = out[0] / w;
    out[1] = out[1] / h;
    out[2] = out[2] / w;
    out[3] = out[3] / h;
  }
}

// BoxLinearCoder.decode: the inverse of linear_encode_box.
template <typename T>
DETSEG_HOST_DEVICE void linear_decode_box(const T* delta, const T* ref, bool normalize_by_size, T* out) {
  const T cx = T(0.5) * (ref[0] + ref[2]);
  const T cy = T(0.5) * (ref[1] + ref[3]);
  T l = delta[0], t = delta[1], r = delta[2], b = delta[3];
  if (normalize_by_size) {
    const T w = ref[2] - ref[0];
    const T h = ref[3] - ref[1];
    l = l * w;
    t = t * h;
    r = r * w;
    b = b * h;
  }
  out[0] = cx - l;
  out[1] = cy - t;
  out[2] = cx + r;
  out[3] = cy + b;
}

}  // namespace detseg
