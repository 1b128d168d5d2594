"""Reference box coding in plain PyTorch, torchvision's BoxCoder / BoxLinearCoder term for
term (mirrors csrc/include/detseg/box_coder.h). float64 computes in float64, every other
floating dtype in float32; outputs come back in the input dtype."""

from __future__ import annotations

import torch

from ..ops import _checks


def _ct(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def encode_boxes(reference_boxes: torch.Tensor, proposals: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Targets Tensor[N, 4] (torchvision's `reference_boxes`) against anchors Tensor[N, 4]
    (its `proposals`) -> deltas Tensor[N, 4] (dx, dy, dw, dh)."""
    _checks.encode_boxes(reference_boxes, proposals, weights)
    wx, wy, ww, wh = _checks.coder_weights("encode_boxes", weights)
    ct = _ct(reference_boxes.dtype)
    gt = reference_boxes.to(ct)
    an = proposals.to(ct)
    ex_w = an[:, 2] - an[:, 0]
    ex_h = an[:, 3] - an[:, 1]
    ex_cx = an[:, 0] + 0.5 * ex_w
    ex_cy = an[:, 1] + 0.5 * ex_h
    gt_w = gt[:, 2] - gt[:, 0]
    gt_h = gt[:, 3] - gt[:, 1]
    gt_cx = gt[:, 0] + 0.5 * gt_w
    gt_cy = gt[:, 1] + 0.5 * gt_h
    dx = wx * (gt_cx - ex_cx) / ex_w
    dy = wy * (gt_cy - ex_cy) / ex_h
    dw = ww * torch.log(gt_w / ex_w)
    dh = wh * torch.log(gt_h / ex_h)
    return torch.stack((dx, dy, dw, dh), dim=1).to(reference_boxes.dtype)


def decode_boxes(rel_codes: torch.Tensor, boxes: torch.Tensor, weights: list[float],
                 bbox_xform_clip: float) -> torch.Tensor:
    """Deltas Tensor[N, 4 * K] against reference boxes Tensor[N, 4] -> boxes Tensor[N, 4 * K]
    in rel_codes' dtype. dw, dh are clamped above at bbox_xform_clip (NaN passes)."""
    _checks.decode_boxes(rel_codes, boxes, weights, bbox_xform_clip)
    wx, wy, ww, wh = _checks.coder_weights("decode_boxes", weights)
    ct = _ct(rel_codes.dtype)
    b = boxes.to(rel_codes.dtype).to(ct)
    d = rel_codes.to(ct)
    widths = b[:, 2] - b[:, 0]
    heights = b[:, 3] - b[:, 1]
    ctr_x = b[:, 0] + 0.5 * widths
    ctr_y = b[:, 1] + 0.5 * heights
    dx = d[:, 0::4] / wx
    dy = d[:, 1::4] / wy
    dw = torch.clamp(d[:, 2::4] / ww, max=float(bbox_xform_clip))
    dh = torch.clamp(d[:, 3::4] / wh, max=float(bbox_xform_clip))
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    out = torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)
    return out.flatten(1).to(rel_codes.dtype)


def _decode_boxes_backward(grad, rel_codes, boxes, weights, bbox_xform_clip):
    """(d rel_codes, d boxes) of decode_boxes, by autograd through the formula above."""
    _checks.decode_boxes_backward(grad, rel_codes, boxes, weights, bbox_xform_clip)
    with torch.enable_grad():
        d = rel_codes.detach().requires_grad_(True)
        b = boxes.detach().requires_grad_(True)
        out = decode_boxes(d, b, weights, bbox_xform_clip)
        gd, gb = torch.autograd.grad(out, (d, b), grad.to(out.dtype), allow_unused=True)
    return gd, gb if gb is not None else torch.zeros_like(boxes)


def linear_encode_boxes(reference_boxes: torch.Tensor, proposals: torch.Tensor, normalize_by_size: bool):
    """Anchors Tensor[N, 4] (torchvision's `reference_boxes` here), targets Tensor[N, 4] ->
    (l, t, r, b) Tensor[N, 4]: target sides' distances from the anchor centre."""
    _checks.linear_boxes("linear_encode_boxes", reference_boxes, proposals)
    ct = _ct(reference_boxes.dtype)
    r = reference_boxes.to(ct)
    p = proposals.to(ct)
    cx = 0.5 * (r[:, 0] + r[:, 2])
    cy = 0.5 * (r[:, 1] + r[:, 3])
    t = torch.stack((cx - p[:, 0], cy - p[:, 1], p[:, 2] - cx, p[:, 3] - cy), dim=-1)
    if normalize_by_size:
        w = r[:, 2] - r[:, 0]
        h = r[:, 3] - r[:, 1]
        t = t / torch.stack((w, h, w, h), dim=-1)
    return t.to(reference_boxes.dtype)


def linear_decode_boxes(rel_codes: torch.Tensor, boxes: torch.Tensor, normalize_by_size: bool):
    """(l, t, r, b) Tensor[N, 4] against anchors Tensor[N, 4] -> xyxy Tensor[N, 4]."""
    _checks.linear_boxes("linear_decode_boxes", rel_codes, boxes)
    ct = _ct(rel_codes.dtype)
    b = boxes.to(rel_codes.dtype).to(ct)
    d = rel_codes.to(ct)
    cx = 0.5 * (b[:, 0] + b[:, 2])
    cy = 0.5 * (b[:, 1] + b[:, 3])
    if normalize_by_size:
        w = b[:, 2] - b[:, 0]
        h = b[:, 3] - b[:, 1]
        d = d * torch.stack((w, h, w, h), dim=-1)
    out = torch.stack((cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]), dim=-1)
    return out.to(rel_codes.dtype)
