"""Non-maximum suppression, torchvision.ops-compatible, plus keyword-only ``backend=``."""

from __future__ import annotations

import torch

from .. import _backend
from . import _checks

__all__ = ["nms", "batched_nms"]


def _float(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.float()


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, backend: str = "auto") -> torch.Tensor:
    """Greedy NMS. ``boxes Tensor[N, 4]`` (xyxy), ``scores Tensor[N]`` -> kept indices ``Tensor[K]`` int64,
    by decreasing score; equal scores keep input order (stable sort) on every backend.

    A box is suppressed when its IoU with a kept box is strictly greater than `iou_threshold`.
    NaN scores rank above +inf (torch.sort's order); a box with a NaN coordinate neither
    suppresses nor is suppressed (its IoU is NaN).
    """
    _checks.boxes_n4("nms", "boxes", boxes)
    _checks.tensor("nms", "scores", scores)
    thr = _checks.iou_threshold("nms", iou_threshold)
    return _backend.dispatch("nms", backend, boxes.device, _float(boxes), _float(scores), thr)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float, *,
                backend: str = "auto") -> torch.Tensor:
    """NMS independently per category. ``boxes Tensor[N, 4]``, ``scores Tensor[N]``, ``idxs Tensor[N]``
    (int) -> ``Tensor[K]`` int64 by decreasing score (ties: input order).

    Boxes of different categories are never compared, so the result is exact for any finite
    coordinates (no coordinate-offset trick) and the cost is the sum over categories.
    """
    _checks.boxes_n4("batched_nms", "boxes", boxes)
    _checks.tensor("batched_nms", "scores", scores)
    thr = _checks.iou_threshold("batched_nms", iou_threshold)
    return _backend.dispatch("batched_nms", backend, boxes.device, _float(boxes), _float(scores), idxs, thr)
