"""Box utilities and the IoU family, torchvision.ops-compatible, plus keyword-only ``backend=``."""

from __future__ import annotations

import math

import torch

from .. import _backend
from . import _checks

__all__ = [
    "box_area", "box_convert", "clip_boxes_to_image", "remove_small_boxes",
    "box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou",
    "generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss",
]


def _float_boxes(t: torch.Tensor) -> torch.Tensor:
    # Integer boxes are upcast as torchvision does; kernels see floating point only.
    return t if t.is_floating_point() else t.float()


def box_area(boxes: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Areas of xyxy boxes. ``Tensor[..., 4] -> Tensor[...]``; float16/bfloat16 give float32."""
    _checks.boxes_last4("box_area", "boxes", boxes)
    return _backend.dispatch("box_area", backend, boxes.device, boxes)


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str, *, backend: str = "auto") -> torch.Tensor:
    """Converts ``Tensor[..., 4]`` between 'xyxy', 'xywh' and 'cxcywh'."""
    _checks.boxes_last4("box_convert", "boxes", boxes)
    in_fmt = _checks.fmt("box_convert", "in_fmt", in_fmt)
    out_fmt = _checks.fmt("box_convert", "out_fmt", out_fmt)
    return _backend.dispatch("box_convert", backend, boxes.device, boxes, in_fmt, out_fmt)


def clip_boxes_to_image(boxes: torch.Tensor, size: tuple[int, int], *, backend: str = "auto") -> torch.Tensor:
    """Clips xyxy ``Tensor[..., 4]`` to an image of ``size = (height, width)``."""
    _checks.boxes_last4("clip_boxes_to_image", "boxes", boxes)
    if len(size) != 2:
        _checks.fail("clip_boxes_to_image", f"size must be (height, width), got {size!r}")
    height, width = (int(s) for s in size)
    return _backend.dispatch("clip_boxes_to_image", backend, boxes.device, boxes, height, width)


def remove_small_boxes(boxes: torch.Tensor, min_size: float, *, backend: str = "auto") -> torch.Tensor:
    """Indices (``Tensor[K]`` int64) of xyxy boxes ``Tensor[N, 4]`` with both sides >= min_size."""
    _checks.boxes_n4("remove_small_boxes", "boxes", boxes)
    return _backend.dispatch("remove_small_boxes", backend, boxes.device, _float_boxes(boxes), float(min_size))


def _iou_matrix(name: str, kind: str, boxes1, boxes2, fmt: str, eps: float, backend: str) -> torch.Tensor:
    _checks.tensor(name, "boxes1", boxes1)
    _checks.tensor(name, "boxes2", boxes2)
    if boxes1.dim() < 2 or boxes1.shape[-1] != 4:
        _checks.fail(name, f"boxes1 must be a Tensor[..., N, 4], got shape {list(boxes1.shape)}")
    if boxes2.dim() < 2 or boxes2.shape[-1] != 4:
        _checks.fail(name, f"boxes2 must be a Tensor[..., M, 4], got shape {list(boxes2.shape)}")
    _checks.same_device(name, "boxes2", boxes2, boxes1)
    fmt = _checks.fmt(name, "fmt", fmt)
    eps = _checks.eps(name, eps)
    if fmt != "xyxy":
        boxes1 = box_convert(boxes1, fmt, "xyxy", backend=backend)
        boxes2 = box_convert(boxes2, fmt, "xyxy", backend=backend)
    b1, b2 = _float_boxes(boxes1), _float_boxes(boxes2)
    if b1.dtype != b2.dtype:
        common = torch.promote_types(b1.dtype, b2.dtype)
        b1, b2 = b1.to(common), b2.to(common)
    lead1, lead2 = b1.shape[:-2], b2.shape[:-2]
    if len(lead1) == 0 and len(lead2) == 0:
        return _backend.dispatch("box_iou_matrix", backend, b1.device, b1, b2, kind, eps)
    try:
        lead = torch.broadcast_shapes(lead1, lead2)
    except RuntimeError:
        _checks.fail(name, f"batch dimensions of boxes1 {list(lead1)} and boxes2 {list(lead2)} do not broadcast")
    n, m = b1.shape[-2], b2.shape[-2]
    # An explicit batch size: reshape(-1, 0, 4) is ambiguous when N or M is 0.
    bsz = math.prod(lead)
    b1 = b1.expand(*lead, n, 4).reshape(bsz, n, 4)
    b2 = b2.expand(*lead, m, 4).reshape(bsz, m, 4)
    out = _backend.dispatch("box_iou_matrix", backend, b1.device, b1, b2, kind, eps)
    return out.reshape(*lead, n, m)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, fmt: str = "xyxy", *, backend: str = "auto") -> torch.Tensor:
    """Pairwise IoU. ``Tensor[..., N, 4], Tensor[..., M, 4] -> Tensor[..., N, M]``.

    IoU = inter / (area1 + area2 - inter), no eps: two zero-area boxes give NaN, as torchvision.
    float64 input gives float64; every other dtype is computed and returned in float32.
    """
    return _iou_matrix("box_iou", "iou", boxes1, boxes2, fmt, 0.0, backend)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, fmt: str = "xyxy", *,
                        backend: str = "auto") -> torch.Tensor:
    """Pairwise GIoU = IoU - (C - U) / C, C the enclosing box's area. ``[..., N, 4], [..., M, 4] -> [..., N, M]``."""
    return _iou_matrix("generalized_box_iou", "giou", boxes1, boxes2, fmt, 0.0, backend)


def distance_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7, fmt: str = "xyxy", *,
                     backend: str = "auto") -> torch.Tensor:
    """Pairwise DIoU = IoU - d^2 / (c^2 + eps): d the centre distance, c the enclosing diagonal."""
    return _iou_matrix("distance_box_iou", "diou", boxes1, boxes2, fmt, eps, backend)


def complete_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7, fmt: str = "xyxy", *,
                     backend: str = "auto") -> torch.Tensor:
    """Pairwise CIoU = DIoU - alpha * v (aspect-ratio term; alpha carries no gradient)."""
    return _iou_matrix("complete_box_iou", "ciou", boxes1, boxes2, fmt, eps, backend)


def _iou_loss(name: str, kind: str, boxes1, boxes2, reduction: str, eps: float, backend: str) -> torch.Tensor:
    _checks.tensor(name, "boxes1", boxes1)
    _checks.tensor(name, "boxes2", boxes2)
    reduction = _checks.reduction(name, reduction)
    eps = _checks.eps(name, eps)
    if boxes1.dim() < 1 or boxes1.shape[-1] != 4:
        _checks.fail(name, f"boxes1 must be a Tensor[..., 4], got shape {list(boxes1.shape)}")
    if boxes2.dim() < 1 or boxes2.shape[-1] != 4:
        _checks.fail(name, f"boxes2 must be a Tensor[..., 4], got shape {list(boxes2.shape)}")
    _checks.same_device(name, "boxes2", boxes2, boxes1)
    b1, b2 = _float_boxes(boxes1), _float_boxes(boxes2)
    if b1.dtype != b2.dtype:
        common = torch.promote_types(b1.dtype, b2.dtype)
        b1, b2 = b1.to(common), b2.to(common)
    try:
        shape = torch.broadcast_shapes(b1.shape, b2.shape)
    except RuntimeError:
        _checks.fail(name, f"boxes1 {list(boxes1.shape)} and boxes2 {list(boxes2.shape)} do not broadcast")
    b1 = b1.expand(shape).reshape(-1, 4)
    b2 = b2.expand(shape).reshape(-1, 4)
    loss = _backend.dispatch("box_iou_loss", backend, b1.device, b1, b2, kind, eps).reshape(shape[:-1])
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def generalized_box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none",
                             eps: float = 1e-7, *, backend: str = "auto") -> torch.Tensor:
    """1 - GIoU of aligned pairs ``Tensor[..., 4], Tensor[..., 4] -> Tensor[...]`` (or a scalar when reduced)."""
    return _iou_loss("generalized_box_iou_loss", "giou", boxes1, boxes2, reduction, eps, backend)


def distance_box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none",
                          eps: float = 1e-7, *, backend: str = "auto") -> torch.Tensor:
    """1 - DIoU of aligned pairs ``Tensor[..., 4], Tensor[..., 4] -> Tensor[...]``."""
    return _iou_loss("distance_box_iou_loss", "diou", boxes1, boxes2, reduction, eps, backend)


def complete_box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, reduction: str = "none",
                          eps: float = 1e-7, *, backend: str = "auto") -> torch.Tensor:
    """1 - CIoU of aligned pairs ``Tensor[..., 4], Tensor[..., 4] -> Tensor[...]``."""
    return _iou_loss("complete_box_iou_loss", "ciou", boxes1, boxes2, reduction, eps, backend)
