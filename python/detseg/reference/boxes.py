"""Reference box ops in plain PyTorch. The IoU formulas mirror csrc/include/detseg/boxes.h,
the suppression rule csrc/include/detseg/nms.h, term for term, so that autograd through
these functions gives the subgradients the kernels hand-code."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..ops import _checks

_CIOU_K = 4.0 / (math.pi ** 2)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- utilities

def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Tensor[..., 4] xyxy -> Tensor[...]. float16/bfloat16 give float32, small ints int32."""
    _checks.boxes_last4("box_area", "boxes", boxes)
    if boxes.is_floating_point():
        b = boxes.to(compute_dtype(boxes))
    else:
        b = boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Tensor[..., 4] between 'xyxy', 'xywh' (top-left, size) and 'cxcywh' (centre, size)."""
    _checks.boxes_last4("box_convert", "boxes", boxes)
    in_fmt = _checks.fmt("box_convert", "in_fmt", in_fmt)
    out_fmt = _checks.fmt("box_convert", "out_fmt", out_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return torch.stack(out, dim=-1)


def clip_boxes_to_image(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tensor[..., 4] xyxy clamped to x in [0, width], y in [0, height]."""
    _checks.boxes_last4("clip_boxes_to_image", "boxes", boxes)
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Tensor[N, 4] -> Tensor[K] int64: indices of boxes whose sides are both >= min_size."""
    _checks.boxes_n4("remove_small_boxes", "boxes", boxes)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return torch.where((w >= min_size) & (h >= min_size))[0]


# ---------------------------------------------------------------- IoU family

def _pair_iou(a, b, kind: str, loss_form: bool, eps: float):
    """Mirror of detseg::pair_iou. a, b: tuples of 4 broadcastable coordinate tensors."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    iw = torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)
    ih = torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    if loss_form:
        m = (iw > 0) & (ih > 0)
        inter = torch.where(m, iw * ih, torch.zeros_like(iw))
    else:
        inter = iw.clamp(min=0) * ih.clamp(min=0)
    uni = area_a + area_b - inter
    iou = inter / (uni + eps) if loss_form else inter / uni
    if kind == "iou":
        return iou
    ew = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    eh = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    if not loss_form:
        ew = ew.clamp(min=0)
        eh = eh.clamp(min=0)
    if kind == "giou":
        c = ew * eh
        return iou - (c - uni) / ((c + eps) if loss_form else c)
    diag = ew * ew + eh * eh + eps
    dx = (ax1 + ax2) / 2 - (bx1 + bx2) / 2
    dy = (ay1 + ay2) / 2 - (by1 + by2) / 2
    diou = iou - (dx * dx + dy * dy) / diag
    if kind == "diou":
        return diou
    t = torch.atan((ax2 - ax1) / (ay2 - ay1)) - torch.atan((bx2 - bx1) / (by2 - by1))
    v = _CIOU_K * t * t
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def box_iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Tensor[(B,) N, 4] x Tensor[(B,) M, 4] -> Tensor[(B,) N, M]; float64 for float64 input,
    float32 otherwise."""
    _checks.iou_matrix(boxes1, boxes2, kind, eps)
    dt = compute_dtype(boxes1)
    b1 = boxes1.to(dt)
    b2 = boxes2.to(dt)
    a = tuple(b1[..., :, None, k] for k in range(4))
    b = tuple(b2[..., None, :, k] for k in range(4))
    return _pair_iou(a, b, kind, False, eps)


def box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Aligned pairs Tensor[N, 4], Tensor[N, 4] -> loss 1 - value, Tensor[N] in the input dtype
    (computed in float32 for float16 / bfloat16)."""
    _checks.iou_loss(boxes1, boxes2, kind, eps)
    dt = compute_dtype(boxes1)
    a = tuple(boxes1.to(dt).unbind(-1))
    b = tuple(boxes2.to(dt).unbind(-1))
    return (1 - _pair_iou(a, b, kind, True, eps)).to(boxes1.dtype)


# ---------------------------------------------------------------- NMS

def nms_threshold(thr: float, dtype: torch.dtype) -> float:
    """Mirror of detseg::nms_threshold_f32: the float32 threshold t' with
    (iou > t' in float32) == (double(iou) > thr)."""
    if dtype == torch.float64:
        return float(thr)
    f = np.float32(thr)
    if float(f) > thr:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


def _sorted_order(scores: torch.Tensor) -> torch.Tensor:
    # Stable descending sort; torch.sort ranks NaN above +inf, and so does every backend.
    return torch.sort(scores, descending=True, stable=True)[1]


def _nms_sorted(b: torch.Tensor, thr: float) -> torch.Tensor:
    """Greedy NMS over boxes already in priority order; returns a bool keep mask."""
    n = b.shape[0]
    x1, y1, x2, y2 = b.unbind(-1)
    area = (x2 - x1) * (y2 - y1)
    removed = torch.zeros(n, dtype=torch.bool, device=b.device)
    removed_host = [False] * n
    for i in range(n):
        if removed_host[i]:
            continue
        rest = slice(i + 1, n)
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        sup = inter / (area[i] + area[rest] - inter) > thr
        if bool(sup.any()):
            removed[rest] |= sup
            removed_host[i + 1:] = removed[rest].tolist()
    return ~removed


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Tensor[N, 4] xyxy, Tensor[N] -> Tensor[K] int64: kept indices by decreasing score
    (equal scores in input order)."""
    _checks.nms(boxes, scores, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    dt = compute_dtype(boxes)
    order = _sorted_order(scores)
    keep = _nms_sorted(boxes.to(dt)[order], nms_threshold(iou_threshold, dt))
    return order[keep]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each category of `idxs` (Tensor[N] int). Exact for any finite coordinates:
    boxes of different categories are never compared (no coordinate offsets)."""
    _checks.batched_nms(boxes, scores, idxs, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for c in torch.unique(idxs):
        members = torch.where(idxs == c)[0]
        keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[_sorted_order(scores[kept])]
