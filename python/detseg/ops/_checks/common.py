"""Argument checks shared by every op family, and those of the box / IoU / NMS ops (twin of
csrc/checks/common.h)."""

from __future__ import annotations

import math

import torch

FORMATS = ("xyxy", "xywh", "cxcywh")
KINDS = ("iou", "giou", "diou", "ciou")
REDUCTIONS = ("none", "mean", "sum")


def fail(op: str, msg: str, exc=ValueError):
    raise exc(f"detseg.{op}: {msg}")


def tensor(op: str, arg: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        fail(op, f"{arg} must be a Tensor, got {type(t).__name__}", TypeError)


def boxes_last4(op: str, arg: str, t: torch.Tensor) -> None:
    tensor(op, arg, t)
    if t.dim() < 1 or t.shape[-1] != 4:
        fail(op, f"{arg} must be a Tensor[..., 4], got shape {list(t.shape)}")


def boxes_n4(op: str, arg: str, t: torch.Tensor) -> None:
    tensor(op, arg, t)
    if t.dim() != 2 or t.shape[1] != 4:
        fail(op, f"{arg} must be a Tensor[N, 4], got shape {list(t.shape)}")


def floating(op: str, arg: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        fail(op, f"{arg} must be a floating-point tensor (float64, float32, float16 or bfloat16), got {t.dtype}",
             TypeError)


def same_device(op: str, arg: str, t: torch.Tensor, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        fail(op, f"{arg} must be on the same device as boxes ({ref.device}), got {t.device}")


def iou_threshold(op: str, thr) -> float:
    try:
        v = float(thr)
    except (TypeError, ValueError):
        fail(op, f"iou_threshold must be a number in [0, 1], got {thr!r}", TypeError)
    if not (0.0 <= v <= 1.0):  # NaN fails too
        fail(op, f"iou_threshold must be a number in [0, 1], got {v}")
    return v


def fmt(op: str, arg: str, value: str) -> str:
    if not isinstance(value, str) or value.lower() not in FORMATS:
        fail(op, f"{arg} must be one of {', '.join(map(repr, FORMATS))}, got {value!r}")
    return value.lower()


def kind(op: str, value: str) -> str:
    return choice(op, "kind", value, KINDS)


def reduction(op: str, value: str) -> str:
    return choice(op, "reduction", value, REDUCTIONS)


def eps(op: str, value) -> float:
    v = float(value)
    if not (v >= 0.0 and math.isfinite(v)):
        fail(op, f"eps must be a finite number >= 0, got {value!r}")
    return v


# ---- per internal op (the schemas of csrc/ops.cpp) ----

def boxes_pair_types(op: str, b1: torch.Tensor, b2: torch.Tensor) -> None:
    """boxes1 floating, boxes2 of its dtype and on its device (the IoU matrix and loss ops)."""
    floating(op, "boxes1", b1)
    if b2.dtype != b1.dtype:
        fail(op, f"boxes2 must have the dtype of boxes1 ({b1.dtype}), got {b2.dtype}", TypeError)
    same_device(op, "boxes2", b2, b1)


def iou_matrix(b1: torch.Tensor, b2: torch.Tensor, kind_: str, eps_: float) -> None:
    op = "box_iou_matrix"
    tensor(op, "boxes1", b1)
    tensor(op, "boxes2", b2)
    if b1.dim() not in (2, 3) or b1.shape[-1] != 4:
        fail(op, f"boxes1 must be a Tensor[N, 4] or Tensor[B, N, 4], got shape {list(b1.shape)}")
    if b2.dim() != b1.dim() or b2.shape[-1] != 4 or (b1.dim() == 3 and b2.shape[0] != b1.shape[0]):
        lead = "B, " if b1.dim() == 3 else ""
        fail(op, f"boxes2 must be a Tensor[{lead}M, 4] matching boxes1 {list(b1.shape)}, got shape {list(b2.shape)}")
    boxes_pair_types(op, b1, b2)
    kind(op, kind_)


def iou_loss(b1: torch.Tensor, b2: torch.Tensor, kind_: str, eps_: float) -> None:
    op = "box_iou_loss"
    boxes_n4(op, "boxes1", b1)
    tensor(op, "boxes2", b2)
    if b2.dim() != 2 or b2.shape[1] != 4 or b2.shape[0] != b1.shape[0]:
        fail(op, f"boxes2 must be a Tensor[N, 4] with N = {b1.shape[0]} as boxes1, got shape {list(b2.shape)}")
    boxes_pair_types(op, b1, b2)
    kind(op, kind_)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> None:
    op = "nms"
    boxes_n4(op, "boxes", boxes)
    tensor(op, "scores", scores)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        fail(op, f"scores must be a Tensor[N] with N = {boxes.shape[0]} as boxes, got shape {list(scores.shape)}")
    floating(op, "boxes", boxes)
    floating(op, "scores", scores)
    same_device(op, "scores", scores, boxes)
    iou_threshold(op, thr)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float) -> None:
    op = "batched_nms"
    boxes_n4(op, "boxes", boxes)
    tensor(op, "scores", scores)
    tensor(op, "idxs", idxs)
    n = boxes.shape[0]
    if scores.dim() != 1 or scores.shape[0] != n:
        fail(op, f"scores must be a Tensor[N] with N = {n} as boxes, got shape {list(scores.shape)}")
    if idxs.dim() != 1 or idxs.shape[0] != n:
        fail(op, f"idxs must be a Tensor[N] with N = {n} as boxes, got shape {list(idxs.shape)}")
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        fail(op, f"idxs must be an integer tensor, got {idxs.dtype}", TypeError)
    floating(op, "boxes", boxes)
    floating(op, "scores", scores)
    same_device(op, "scores", scores, boxes)
    same_device(op, "idxs", idxs, boxes)
    iou_threshold(op, thr)


def choice(op: str, arg: str, value: str, options: tuple) -> str:
    if value not in options:
        fail(op, f"{arg} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value
