// IoU family of one pair of xyxy boxes: value and gradient. Every backend evaluates these
// exact formulas (the Triton kernels in python/detseg/triton/boxes.py and the reference in
// python/detseg/reference/boxes.py mirror them line by line).
//
// Two forms, both from torchvision:
//   kMatrix: box_iou / generalized_box_iou / distance_box_iou / complete_box_iou —
//            intersection and enclosing sides clamped at 0, IoU = inter / union (no eps).
//   kLoss:   *_box_iou_loss — intersection masked (both sides > 0), IoU = inter/(union+eps),
//            enclosing sides unclamped, GIoU term divided by (enclosing + eps).
// CIoU's alpha is a constant for the gradient, as in torchvision.
#pragma once

#include "detseg/host_device.h"

namespace detseg {

enum class IouKind : int { kIoU = 0, kGIoU = 1, kDIoU = 2, kCIoU = 3 };
enum class IouForm : int { kMatrix = 0, kLoss = 1 };

template <typename T>
struct Box {
  T x1, y1, x2, y2;
};

template <typename T>
DETSEG_HOST_DEVICE T box_area(T x1, T y1, T x2, T y2) {
  return (x2 - x1) * (y2 - y1);
}

// 4 / pi^2, CIoU's aspect-ratio weight.
template <typename T>
DETSEG_HOST_DEVICE T ciou_k() {
  return T(0.40528473456935108577551785283891);
}

// CIoU's aspect angle atan(w / h) of one box. It depends on one box only, so a kernel looping
// over pairs may evaluate it once per box (and in scalar code, keeping every SIMD variant
// bitwise equal to std::atan) and call the five-argument pair_iou below.
template <typename T>
DETSEG_HOST_DEVICE T box_aspect_atan(const Box<T>& a) {
  return datan((a.x2 - a.x1) / (a.y2 - a.y1));
}

// pair_iou with CIoU's angles given: atan_a = box_aspect_atan(a), atan_b = box_aspect_atan(b)
// (ignored unless K == kCIoU). Generic over T: a SIMD vector type works where dmin, dmax and
// clamp_min0 are specialised for it (csrc/cpu/vec/box_iou_vec.cpp).
template <IouKind K, IouForm F, typename T>
DETSEG_HOST_DEVICE T pair_iou(const Box<T>& a, const Box<T>& b, T eps, T atan_a, T atan_b) {
  const T area_a = box_area(a.x1, a.y1, a.x2, a.y2);
  const T area_b = box_area(b.x1, b.y1, b.x2, b.y2);
  const T iw = dmin(a.x2, b.x2) - dmax(a.x1, b.x1);
  const T ih = dmin(a.y2, b.y2) - dmax(a.y1, b.y1);
  T inter;
  if constexpr (F == IouForm::kMatrix) {
    inter = clamp_min0(iw) * clamp_min0(ih);
  } else {
    inter = (iw > T(0) && ih > T(0)) ? iw * ih : T(0);
  }
  const T uni = area_a + area_b - inter;
  const T iou = (F == IouForm::kMatrix) ? inter / uni : inter / (uni + eps);
  if constexpr (K == IouKind::kIoU) {
    return iou;
  } else {
    T ew = dmax(a.x2, b.x2) - dmin(a.x1, b.x1);
    T eh = dmax(a.y2, b.y2) - dmin(a.y1, b.y1);
    if constexpr (F == IouForm::kMatrix) {
      ew = clamp_min0(ew);
      eh = clamp_min0(eh);
    }
    if constexpr (K == IouKind::kGIoU) {
      const T c = ew * eh;
      return iou - (c - uni) / (F == IouForm::kMatrix ? c : c + eps);
    } else {
      const T diag = ew * ew + eh * eh + eps;
      const T dx = (a.x1 + a.x2) / T(2) - (b.x1 + b.x2) / T(2);
      const T dy = (a.y1 + a.y2) / T(2) - (b.y1 + b.y2) / T(2);
      const T diou = iou - (dx * dx + dy * dy) / diag;
      if constexpr (K == IouKind::kDIoU) {
        return diou;
      } else {
        const T t = atan_a - atan_b;
        const T v = ciou_k<T>() * t * t;
        const T alpha = v / (T(1) - iou + v + eps);
        return diou - alpha * v;
      }
    }
  }
}

template <IouKind K, IouForm F, typename T>
DETSEG_HOST_DEVICE T pair_iou(const Box<T>& a, const Box<T>& b, T eps) {
  if constexpr (K == IouKind::kCIoU) {
    return pair_iou<K, F>(a, b, eps, box_aspect_atan(a), box_aspect_atan(b));
  } else {
    return pair_iou<K, F>(a, b, eps, T(0), T(0));
  }
}

// Accumulates g * d pair_iou / d(a, b) into ga[4], gb[4] (x1, y1, x2, y2). Hand-written
// reverse mode of pair_iou, with torch's subgradients: clamp(min=0) passes the gradient at
// 0, maximum/minimum split it on a tie, the loss-form mask blocks it where a side is <= 0.
// atan_a / atan_b: box_aspect_atan of a / b, as in the five-argument pair_iou (CIoU only).
template <IouKind K, IouForm F, typename T>
DETSEG_HOST_DEVICE void pair_iou_backward(const Box<T>& a, const Box<T>& b, T eps, T atan_a, T atan_b, T g, T* ga,
                                          T* gb) {
  const T wa = a.x2 - a.x1, ha = a.y2 - a.y1;
  const T wb = b.x2 - b.x1, hb = b.y2 - b.y1;
  const T area_a = wa * ha, area_b = wb * hb;
  const T ix1 = dmax(a.x1, b.x1), ix2 = dmin(a.x2, b.x2);
  const T iy1 = dmax(a.y1, b.y1), iy2 = dmin(a.y2, b.y2);
  const T iw_raw = ix2 - ix1, ih_raw = iy2 - iy1;
  // Gates select rather than multiply, like torch's masked backward of clamp / where: a
  // blocked path gives 0 even when the incoming gradient is inf (a multiply would give NaN).
  T iw, ih;
  bool gate_w, gate_h;
  if constexpr (F == IouForm::kMatrix) {
    iw = clamp_min0(iw_raw);
    ih = clamp_min0(ih_raw);
    gate_w = iw_raw >= T(0);
    gate_h = ih_raw >= T(0);
  } else {
    const bool m = iw_raw > T(0) && ih_raw > T(0);
    iw = m ? iw_raw : T(0);
    ih = m ? ih_raw : T(0);
    gate_w = gate_h = m;
  }
  const T inter = iw * ih;
  const T uni = area_a + area_b - inter;
  const T den = (F == IouForm::kMatrix) ? uni : uni + eps;
  const T iou = inter / den;

  T g_iou = g;       // d value / d iou
  T g_uni = T(0);    // direct dependence on the union (GIoU)
  T g_ew = T(0), g_eh = T(0);
  T ex1 = T(0), ex2 = T(0), ey1 = T(0), ey2 = T(0);
  if constexpr (K != IouKind::kIoU) {
    ex1 = dmin(a.x1, b.x1);
    ex2 = dmax(a.x2, b.x2);
    ey1 = dmin(a.y1, b.y1);
    ey2 = dmax(a.y2, b.y2);
    T ew = ex2 - ex1, eh = ey2 - ey1;
    bool gate_ew = true, gate_eh = true;
    if constexpr (F == IouForm::kMatrix) {
      gate_ew = ew >= T(0);
      gate_eh = eh >= T(0);
      ew = clamp_min0(ew);
      eh = clamp_min0(eh);
    }
    if constexpr (K == IouKind::kGIoU) {
      const T c = ew * eh;
      const T cd = (F == IouForm::kMatrix) ? c : c + eps;
      // value = iou - (c - uni) / cd
      const T g_c = -g * (cd - c + uni) / (cd * cd);
      g_uni += g / cd;
      g_ew = gate_ew ? g_c * eh : T(0);
      g_eh = gate_eh ? g_c * ew : T(0);
    } else {
      const T diag = ew * ew + eh * eh + eps;
      const T dx = (a.x1 + a.x2) / T(2) - (b.x1 + b.x2) / T(2);
      const T dy = (a.y1 + a.y2) / T(2) - (b.y1 + b.y2) / T(2);
      const T cd2 = dx * dx + dy * dy;
      // value = iou - cd2 / diag
      const T g_diag = g * cd2 / (diag * diag);
      const T g_dx = -g * T(2) * dx / diag;
      const T g_dy = -g * T(2) * dy / diag;
      g_ew = gate_ew ? g_diag * T(2) * ew : T(0);
      g_eh = gate_eh ? g_diag * T(2) * eh : T(0);
      ga[0] += g_dx / T(2);
      ga[2] += g_dx / T(2);
      gb[0] -= g_dx / T(2);
      gb[2] -= g_dx / T(2);
      ga[1] += g_dy / T(2);
      ga[3] += g_dy / T(2);
      gb[1] -= g_dy / T(2);
      gb[3] -= g_dy / T(2);
      if constexpr (K == IouKind::kCIoU) {
        const T ra = wa / ha, rb = wb / hb;
        const T t = atan_a - atan_b;
        const T v = ciou_k<T>() * t * t;
        const T alpha = v / (T(1) - iou + v + eps);
        // value -= alpha * v, alpha held constant
        const T g_t = -g * alpha * ciou_k<T>() * T(2) * t;
        const T g_ra = g_t / (T(1) + ra * ra);
        const T g_rb = -g_t / (T(1) + rb * rb);
        ga[2] += g_ra / ha;
        ga[0] -= g_ra / ha;
        ga[3] -= g_ra * ra / ha;
        ga[1] += g_ra * ra / ha;
        gb[2] += g_rb / hb;
        gb[0] -= g_rb / hb;
        gb[3] -= g_rb * rb / hb;
        gb[1] += g_rb * rb / hb;
      }
    }
    // ew = max(x2) - min(x1), eh likewise
    route_max(g_ew, a.x2, b.x2, ga[2], gb[2]);
    route_min(-g_ew, a.x1, b.x1, ga[0], gb[0]);
    route_max(g_eh, a.y2, b.y2, ga[3], gb[3]);
    route_min(-g_eh, a.y1, b.y1, ga[1], gb[1]);
  }

  // iou = inter / den, den = area_a + area_b - inter (+ eps)
  const T g_den = -g_iou * iou / den + g_uni;
  const T g_inter = g_iou / den - g_den;
  // areas
  ga[0] -= g_den * ha;
  ga[2] += g_den * ha;
  ga[1] -= g_den * wa;
  ga[3] += g_den * wa;
  gb[0] -= g_den * hb;
  gb[2] += g_den * hb;
  gb[1] -= g_den * wb;
  gb[3] += g_den * wb;
  // inter = iw * ih with iw = min(x2) - max(x1)
  const T g_iw = gate_w ? g_inter * ih : T(0);
  const T g_ih = gate_h ? g_inter * iw : T(0);
  route_min(g_iw, a.x2, b.x2, ga[2], gb[2]);
  route_max(-g_iw, a.x1, b.x1, ga[0], gb[0]);
  route_min(g_ih, a.y2, b.y2, ga[3], gb[3]);
  route_max(-g_ih, a.y1, b.y1, ga[1], gb[1]);
}

template <IouKind K, IouForm F, typename T>
DETSEG_HOST_DEVICE void pair_iou_backward(const Box<T>& a, const Box<T>& b, T eps, T g, T* ga, T* gb) {
  if constexpr (K == IouKind::kCIoU) {
    pair_iou_backward<K, F>(a, b, eps, box_aspect_atan(a), box_aspect_atan(b), g, ga, gb);
  } else {
    pair_iou_backward<K, F>(a, b, eps, T(0), T(0), g, ga, gb);
  }
}

}  // namespace detseg
