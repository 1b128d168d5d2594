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

// torch.clamp(x, max=c): NaN passes through. A named function so that the vectorised CPU
// loop (cpu/vec/box_coder_vec.cpp) can give it a vector overload.
template <typename T>
DETSEG_HOST_DEVICE T clip_above(T x, T c) {
  return x > c ? c : x;
}

// torchvision's default bbox_xform_clip, log(1000 / 16): a clamp on dw, dh before exp.
constexpr double kBboxXformClip = 4.135166556742356;

// BoxCoder.encode of one (anchor, target) pair:
// (wx * dx / w_a, wy * dy / h_a, ww * log(w_t / w_a), wh * log(h_t / h_a)), centres x1 + 0.5 w.
// Naming trap: torchvision's encode_boxes(reference_boxes, proposals) calls the TARGETS
// (ground truth) `reference_boxes` and the anchors `proposals`; callers pass
// encode_box(proposal_row, reference_row, ...). Evaluated in torchvision's order, term by
// term (bit-identical to the tensor code without FMA: -ffp-contract=off / --fmad=false).
template <typename T>
DETSEG_HOST_DEVICE void encode_box(const T* anchor, const T* target, T wx, T wy, T ww, T wh, T* out) {
  const T ex_w = anchor[2] - anchor[0];
  const T ex_h = anchor[3] - anchor[1];
  const T ex_cx = anchor[0] + T(0.5) * ex_w;
  const T ex_cy = anchor[1] + T(0.5) * ex_h;
  const T gt_w = target[2] - target[0];
  const T gt_h = target[3] - target[1];
  const T gt_cx = target[0] + T(0.5) * gt_w;
  const T gt_cy = target[1] + T(0.5) * gt_h;
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
  dw = clip_above(dw, clip);
  dh = clip_above(dh, clip);
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

// Vector-Jacobian product of decode_box: g (4 values, d loss / d out) -> accumulates into
// gd (d / d delta, 4 values, written) and gref (d / d ref, 4 values, ADDED to: one reference
// box serves K class deltas). The clamp passes gradient where dw <= clip (torch.clamp's
// rule), so a NaN or clamped delta gets 0.
template <typename T>
DETSEG_HOST_DEVICE void decode_box_backward(const T* g, const T* delta, const T* ref, T wx, T wy, T ww, T wh,
                                            T clip, T* gd, T* gref) {
  const T w = ref[2] - ref[0];
  const T h = ref[3] - ref[1];
  const T dx = delta[0] / wx;
  const T dy = delta[1] / wy;
  const T dw_raw = delta[2] / ww;
  const T dh_raw = delta[3] / wh;
  const bool pass_w = dw_raw <= clip;
  const bool pass_h = dh_raw <= clip;
  // the forward's clamped value: NaN stays NaN and reaches gref as autograd's would
  const T ew = dexp(clip_above(dw_raw, clip));
  const T eh = dexp(clip_above(dh_raw, clip));
  // out0 = pcx - 0.5 pw, out2 = pcx + 0.5 pw (and the same in y)
  const T g_pcx = g[0] + g[2];
  const T g_pcy = g[1] + g[3];
  const T g_pw = T(0.5) * (g[2] - g[0]);
  const T g_ph = T(0.5) * (g[3] - g[1]);
  // pcx = dx * w + cx, pw = exp(dw) * w, cx = x1 + 0.5 w, w = x2 - x1
  gd[0] = g_pcx * w / wx;
  gd[1] = g_pcy * h / wy;
  gd[2] = pass_w ? g_pw * ew * w / ww : T(0);
  gd[3] = pass_h ? g_ph * eh * h / wh : T(0);
  const T g_w = g_pcx * dx + g_pw * ew + T(0.5) * g_pcx;
  const T g_h = g_pcy * dy + g_ph * eh + T(0.5) * g_pcy;
  gref[0] += g_pcx - g_w;
  gref[1] += g_pcy - g_h;
  gref[2] += g_w;
  gref[3] += g_h;
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
