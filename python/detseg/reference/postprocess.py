"""Reference of the fused detection post-processing (csrc/cpu/multiclass_nms.cpp): the
composition of the separate steps, activation -> score threshold -> top-k per level -> top-k
per image -> decode -> clip -> batched NMS -> first K, each done with detseg's own ops.

Decoding after the top-k selection gives the same boxes as decoding every anchor first (decode
and clip act on one box at a time) and is what torchvision's RetinaNet does.

Order of candidates and of the output: score descending, ties by (anchor index, class)
ascending, i.e. by the flat index n * C + c of scores[b]. Every sort below is a stable sort
of candidates held in that flat order, and batched_nms keeps input order among equal scores,
so the kernel and this composition agree to the bit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import torch

from ..ops import _checks
from .boxes import batched_nms, clip_boxes_to_image, nms_threshold

_libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
_libm.expf.restype = ctypes.c_float
_libm.expf.argtypes = [ctypes.c_float]
_libm.exp.restype = ctypes.c_double
_libm.exp.argtypes = [ctypes.c_double]


def libm_exp(t: torch.Tensor) -> torch.Tensor:
    """exp of a float32 / float64 tensor through the C library's expf / exp, as the CPU kernels
    evaluate it (detseg::dexp). torch.exp is a SIMD approximation that can differ in the last
    bit, which would make decoded boxes (and NMS decisions) differ from the kernel's."""
    f = _libm.expf if t.dtype == torch.float32 else _libm.exp
    flat = t.detach().reshape(-1).cpu().tolist()
    return torch.tensor([f(v) for v in flat], dtype=t.dtype).reshape(t.shape).to(t.device)


def decode(deltas: torch.Tensor, anchors: torch.Tensor, weights, bbox_xform_clip: float, exp=libm_exp):
    """Mirror of detseg::decode_box (csrc/include/detseg/box_coder.h), term by term.
    deltas Tensor[M, 4], anchors Tensor[M, 4] -> Tensor[M, 4] xyxy."""
    wx, wy, ww, wh = (float(w) for w in weights)
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    cx = anchors[:, 0] + 0.5 * w
    cy = anchors[:, 1] + 0.5 * h
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = deltas[:, 2] / ww
    dh = deltas[:, 3] / wh
    dw = torch.where(dw > bbox_xform_clip, bbox_xform_clip, dw)
    dh = torch.where(dh > bbox_xform_clip, bbox_xform_clip, dh)
    pcx = dx * w + cx
    pcy = dy * h + cy
    pw = exp(dw) * w
    ph = exp(dh) * h
    hw = 0.5 * pw
    hh = 0.5 * ph
    return torch.stack((pcx - hw, pcy - hh, pcx + hw, pcy + hh), dim=-1)


def activate(scores: torch.Tensor, score_activation: str, exp=libm_exp) -> torch.Tensor:
    """Mirror of detseg::sigmoid / detseg::softmax_row (csrc/include/detseg/postprocess.h):
    1 / (1 + exp(-x)); softmax with a NaN-propagating max, exp(x - max) and the sum taken in
    class order (torch's sum and cumsum would reorder or widen it)."""
    if scores.numel() == 0:
        return scores
    if score_activation == "sigmoid":
        return 1 / (1 + exp(-scores))
    if score_activation == "softmax":
        m = scores.max(dim=-1, keepdim=True)[0]
        e = exp(scores - m)
        total = e[..., :1]
        for k in range(1, e.shape[-1]):
            total = total + e[..., k:k + 1]
        return e / total
    return scores


def _margin(x: float) -> float:
    return x - 1e-3 * max(1.0, abs(x))


def activate_screened(scores: torch.Tensor, score_activation: str, score_threshold: float) -> torch.Tensor:
    """`activate` where its value can pass `score_threshold`, -inf elsewhere: the screen of
    csrc/cpu/multiclass_nms.cpp (prefilter_of), so that the C library's exp runs on the few
    scores that matter. sigmoid(x) > t needs x >= logit(t) less a margin; a softmax value
    e_k / sum <= e_k = exp(x_k - max) > t needs x_k - max >= log(t) less a margin."""
    thr = float(score_threshold)
    if score_activation == "none" or not thr > 0.0 or scores.numel() == 0:
        return activate(scores, score_activation)
    out = torch.full_like(scores, -math.inf)
    if thr >= 1.0:
        return out
    if score_activation == "sigmoid":
        mask = scores >= _margin(math.log(thr) - math.log1p(-thr))
        out[mask] = activate(scores[mask], "sigmoid")
        return out
    c = scores.shape[-1]
    rows = scores.reshape(-1, c)
    keep = ((rows - rows.max(dim=-1, keepdim=True)[0]) >= _margin(math.log(thr))).any(dim=-1)
    out.view(-1, c)[keep] = activate(rows[keep], "softmax")
    return out


def _stable_desc(values: torch.Tensor) -> torch.Tensor:
    return torch.sort(values, descending=True, stable=True)[1]


def select_candidates(flat: torch.Tensor, num_classes: int, thr: float, levels: list[int], level_top_k: int,
                      pre_nms_top_k: int, background_class: int) -> torch.Tensor:
    """Flat indices n * C + c of one image's candidates, in output priority order.
    flat: the activated scores of the image, Tensor[N * C]."""
    mask = flat > thr  # NaN never passes
    if background_class >= 0:
        mask = mask.view(-1, num_classes).clone()
        mask[:, background_class] = False
        mask = mask.view(-1)
    picked = []
    start = 0
    for size in levels:
        lo, hi = start * num_classes, (start + size) * num_classes
        idx = torch.nonzero(mask[lo:hi]).squeeze(1) + lo
        if 0 <= level_top_k < idx.numel():
            idx = torch.sort(idx[_stable_desc(flat[idx])[:level_top_k]])[0]
        picked.append(idx)
        start += size
    idx = torch.cat(picked) if picked else torch.zeros(0, dtype=torch.int64, device=flat.device)
    idx = idx[_stable_desc(flat[idx])]
    if pre_nms_top_k >= 0:
        idx = idx[:pre_nms_top_k]
    return idx


def compose(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold, level_sizes, level_top_k,
            pre_nms_top_k, iou_threshold, max_detections, class_agnostic, background_class, score_activation, *,
            nms_fn=batched_nms, clip_fn=clip_boxes_to_image, exp=libm_exp, activation=None):
    """The post-processing as separate steps; `nms_fn` / `clip_fn` / `exp` / `activation`
    (scores, score_activation) -> activated scores pick the implementation of each step (the
    reference twins by default; the benchmark passes the compiled ops and torch's functions)."""
    bsz, n, c = scores.shape
    k = int(max_detections)
    dev = scores.device
    out_num = torch.zeros(bsz, dtype=torch.int64, device=dev)
    out_boxes = torch.zeros(bsz, k, 4, dtype=scores.dtype, device=dev)
    out_scores = torch.zeros(bsz, k, dtype=scores.dtype, device=dev)
    out_classes = torch.full((bsz, k), -1, dtype=torch.int64, device=dev)
    out_index = torch.full((bsz, k), -1, dtype=torch.int64, device=dev)
    if activation is None:
        s = activate_screened(scores, score_activation, score_threshold)
    else:
        s = activation(scores, score_activation)
    thr = nms_threshold(score_threshold, scores.dtype)
    levels = [int(v) for v in level_sizes] or [n]
    for b in range(bsz):
        flat = s[b].reshape(-1)
        idx = select_candidates(flat, c, thr, levels, int(level_top_k), int(pre_nms_top_k), int(background_class))
        anchor = idx // c
        cls = idx % c
        sc = flat[idx]
        bx = boxes[b, anchor] if boxes.dim() == 3 else boxes[b, anchor, cls]
        if anchors is not None:
            ref = anchors[anchor] if anchors.dim() == 2 else anchors[b, anchor]
            bx = decode(bx, ref, weights, bbox_xform_clip, exp)
        if len(image_size):
            bx = clip_fn(bx, int(image_size[0]), int(image_size[1]))
        groups = torch.zeros_like(cls) if class_agnostic else cls
        keep = nms_fn(bx, sc, groups, iou_threshold)[:k]
        m = keep.numel()
        out_num[b] = m
        out_boxes[b, :m] = bx[keep]
        out_scores[b, :m] = sc[keep]
        out_classes[b, :m] = cls[keep]
        out_index[b, :m] = anchor[keep]
    return out_num, out_boxes, out_scores, out_classes, out_index


def multiclass_nms(*args):
    """Twin of torch.ops.detseg.multiclass_nms: its arguments in the schema's order (csrc/ops.cpp,
    named as in compose), checked, then compose's steps with the reference twins."""
    _checks.multiclass_nms(*args)
    return compose(*args)
