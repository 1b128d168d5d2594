"""Argument checks of anchors and box coding (twin of csrc/checks/anchors.h)."""

from __future__ import annotations

import math

import torch

from .common import *  # noqa: F401,F403

def coder_weights(op: str, w) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in w)
    except (TypeError, ValueError):
        fail(op, f"weights must hold 4 numbers (wx, wy, ww, wh), got {w!r}", TypeError)
    if len(vals) != 4:
        fail(op, f"weights must hold 4 numbers (wx, wy, ww, wh), got {len(vals)}")
    if not all(math.isfinite(v) and v != 0.0 for v in vals):
        fail(op, f"weights must be finite and non-zero, got {list(vals)}")
    return vals


def encode_boxes(ref: torch.Tensor, prop: torch.Tensor, w) -> None:
    op = "encode_boxes"
    boxes_n4(op, "reference_boxes", ref)
    tensor(op, "proposals", prop)
    if prop.dim() != 2 or prop.shape[1] != 4 or prop.shape[0] != ref.shape[0]:
        fail(op, f"proposals must be a Tensor[N, 4] with N = {ref.shape[0]} as reference_boxes, "
                 f"got shape {list(prop.shape)}")
    floating(op, "reference_boxes", ref)
    if prop.dtype != ref.dtype:
        fail(op, f"proposals must have the dtype of reference_boxes ({ref.dtype}), got {prop.dtype}", TypeError)
    if prop.device != ref.device:
        fail(op, f"proposals must be on the same device as reference_boxes ({ref.device}), got {prop.device}")
    coder_weights(op, w)


def decode_boxes(codes: torch.Tensor, boxes: torch.Tensor, w, clip, op: str = "decode_boxes") -> None:
    tensor(op, "rel_codes", codes)
    tensor(op, "boxes", boxes)
    if codes.dim() != 2 or codes.shape[1] % 4 != 0:
        fail(op, f"rel_codes must be a Tensor[N, 4 * K], got shape {list(codes.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != codes.shape[0]:
        fail(op, f"boxes must be a Tensor[N, 4] with N = {codes.shape[0]} as rel_codes, got shape {list(boxes.shape)}")
    floating(op, "rel_codes", codes)
    floating(op, "boxes", boxes)
    if boxes.device != codes.device:
        fail(op, f"boxes must be on the same device as rel_codes ({codes.device}), got {boxes.device}")
    coder_weights(op, w)
    if math.isnan(float(clip)):
        fail(op, "bbox_xform_clip must be a number (inf: no clamp), got nan")


def decode_boxes_backward(grad, codes, boxes, w, clip) -> None:
    op = "_decode_boxes_backward"
    decode_boxes(codes, boxes, w, clip, op)
    tensor(op, "grad", grad)
    if grad.shape != codes.shape:
        fail(op, f"grad must be a Tensor{list(codes.shape)}, got shape {list(grad.shape)}")
    floating(op, "grad", grad)
    if grad.device != codes.device:
        fail(op, f"grad must be on the same device as rel_codes ({codes.device}), got {grad.device}")


def linear_boxes(op: str, a: torch.Tensor, b: torch.Tensor) -> None:
    enc = op == "linear_encode_boxes"
    an, bn = ("reference_boxes", "proposals") if enc else ("rel_codes", "boxes")
    boxes_n4(op, an, a)
    tensor(op, bn, b)
    if b.dim() != 2 or b.shape[1] != 4 or b.shape[0] != a.shape[0]:
        fail(op, f"{bn} must be a Tensor[N, 4] with N = {a.shape[0]} as {an}, got shape {list(b.shape)}")
    floating(op, an, a)
    floating(op, bn, b)
    if enc and b.dtype != a.dtype:
        fail(op, f"{bn} must have the dtype of {an} ({a.dtype}), got {b.dtype}", TypeError)
    if b.device != a.device:
        fail(op, f"{bn} must be on the same device as {an} ({a.device}), got {b.device}")


def grid_stride_arg(op: str, arg: str, s) -> None:
    v = float(s)
    if not (math.isfinite(v) and v > 0.0):
        fail(op, f"{arg} must be a finite number > 0, got {v}")


def grid_anchors(base, fh: int, fw: int, sh, sw, offset, op: str = "grid_anchors") -> None:
    boxes_n4(op, "base_anchors", base)
    floating(op, "base_anchors", base)
    if not (0 <= fh <= (1 << 24) and 0 <= fw <= (1 << 24)):
        fail(op, f"feature_h and feature_w must be in [0, 2^24], got ({fh}, {fw})")
    grid_stride_arg(op, "stride_h", sh)
    grid_stride_arg(op, "stride_w", sw)
    if not math.isfinite(float(offset)):
        fail(op, f"offset must be a finite number, got {float(offset)}")


def multilevel_grid_anchors(base, fh, fw, sh, sw, offset) -> int:
    """Checks every level; returns the total number of rows."""
    op = "multilevel_grid_anchors"
    n = len(base)
    if n < 1 or not (len(fh) == len(fw) == len(sh) == len(sw) == n):
        fail(op, f"base_anchors, feature_h, feature_w, stride_h and stride_w must each hold one entry per level "
                 f"(at least one), got {n}, {len(fh)}, {len(fw)}, {len(sh)}, {len(sw)}")
    rows = 0
    for lvl in range(n):
        tensor(op, "base_anchors", base[lvl])
        grid_anchors(base[lvl], fh[lvl], fw[lvl], sh[lvl], sw[lvl], offset, op)
        if base[lvl].dtype != base[0].dtype:
            fail(op, f"base_anchors must share one dtype ({base[0].dtype}), got {base[lvl].dtype} at level {lvl}",
                 TypeError)
        if base[lvl].device != base[0].device:
            fail(op, f"base_anchors must share one device ({base[0].device}), got {base[lvl].device} at level {lvl}")
        rows += fh[lvl] * fw[lvl] * base[lvl].shape[0]
    return rows


def yolo_decode(pred, anchors, sh, sw) -> None:
    op = "yolo_decode"
    tensor(op, "pred", pred)
    tensor(op, "anchors", anchors)
    if anchors.dim() != 2 or anchors.shape[1] != 2 or anchors.shape[0] < 1:
        fail(op, f"anchors must be a Tensor[B, 2] of (w, h) with B >= 1, got shape {list(anchors.shape)}")
    nb = anchors.shape[0]
    if pred.dim() != 4 or pred.shape[3] < 5 * nb:
        fail(op, f"pred must be a Tensor[N, H, W, B * 5 + C] with B = {nb}, got shape {list(pred.shape)}")
    floating(op, "pred", pred)
    floating(op, "anchors", anchors)
    if anchors.device != pred.device:
        fail(op, f"anchors must be on the same device as pred ({pred.device}), got {anchors.device}")
    grid_stride_arg(op, "stride_h", sh)
    grid_stride_arg(op, "stride_w", sw)
