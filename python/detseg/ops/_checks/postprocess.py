"""Argument checks of post-processing and the NMS variants (twin of csrc/checks/postprocess.h)."""

from __future__ import annotations

import math

import torch

from .common import *  # noqa: F401,F403

ACTIVATIONS = ("none", "sigmoid", "softmax")
SOFT_METHODS = ("linear", "gaussian")
SOFT_CONVENTIONS = ("mmcv", "opencv")
MATRIX_KERNELS = ("linear", "gaussian")


def f32_or_f64(op: str, arg: str, t: torch.Tensor) -> None:
    if t.dtype not in (torch.float32, torch.float64):
        fail(op, f"{arg} must be float32 or float64, got {t.dtype}", TypeError)


def same_dtype(op: str, arg: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        fail(op, f"{arg} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}", TypeError)


def multiclass_nms(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold, level_sizes,
                   level_top_k, pre_nms_top_k, iou_thr, max_detections, class_agnostic, background_class,
                   score_activation) -> None:
    op = "multiclass_nms"
    tensor(op, "scores", scores)
    tensor(op, "boxes", boxes)
    if scores.dim() != 3:
        fail(op, f"scores must be a Tensor[B, N, C], got shape {list(scores.shape)}")
    b, n, c = scores.shape
    what = "deltas" if anchors is not None else "boxes"
    if not ((boxes.dim() == 3 and tuple(boxes.shape) == (b, n, 4)) or
            (boxes.dim() == 4 and tuple(boxes.shape) == (b, n, c, 4))):
        fail(op, f"boxes ({what}) must be a Tensor[B, N, 4] or Tensor[B, N, C, 4] with (B, N, C) = {(b, n, c)} "
                 f"from scores, got shape {list(boxes.shape)}")
    f32_or_f64(op, "scores", scores)
    same_dtype(op, "boxes", boxes, scores, "scores")
    same_device(op, "scores", scores, boxes)
    if anchors is not None:
        tensor(op, "anchors", anchors)
        if not ((anchors.dim() == 2 and tuple(anchors.shape) == (n, 4)) or
                (anchors.dim() == 3 and tuple(anchors.shape) == (b, n, 4))):
            fail(op, f"anchors must be a Tensor[N, 4] or Tensor[B, N, 4] with (B, N) = {(b, n)}, "
                     f"got shape {list(anchors.shape)}")
        same_dtype(op, "anchors", anchors, scores, "scores")
        same_device(op, "anchors", anchors, boxes)
    if len(weights) != 4 or not all(math.isfinite(float(w)) and float(w) > 0 for w in weights):
        fail(op, f"weights must be 4 finite numbers > 0, got {list(weights)}")
    if math.isnan(float(bbox_xform_clip)):
        fail(op, f"bbox_xform_clip must be a number, got {bbox_xform_clip}")
    if len(image_size) not in (0, 2) or any(int(v) <= 0 for v in image_size):
        fail(op, f"image_size must be empty (no clipping) or [height, width] > 0, got {list(image_size)}")
    if math.isnan(float(score_threshold)):
        fail(op, f"score_threshold must be a number, got {score_threshold}")
    if any(int(v) < 0 for v in level_sizes) or (len(level_sizes) and sum(int(v) for v in level_sizes) != n):
        fail(op, f"level_sizes must be counts >= 0 summing to N = {n}, got {list(level_sizes)}")
    for name, k in (("level_top_k", level_top_k), ("pre_nms_top_k", pre_nms_top_k)):
        if int(k) < -1:
            fail(op, f"{name} must be >= 0 or -1 (no limit), got {k}")
    iou_threshold(op, iou_thr)
    if int(max_detections) < 0:
        fail(op, f"max_detections must be >= 0, got {max_detections}")
    if not (-1 <= int(background_class) < c):
        fail(op, f"background_class must be -1 (none) or a class in [0, {c}), got {background_class}")
    choice(op, "score_activation", score_activation, ACTIVATIONS)
    if n * c >= 2**31 - 1:
        fail(op, f"scores must have fewer than 2^31 - 1 (anchor, class) pairs per image, got {n * c}")


def nms_variant(op: str, boxes: torch.Tensor, scores: torch.Tensor, idxs) -> None:
    """boxes Tensor[N, 4], scores Tensor[N], idxs None or Tensor[N] int (soft / DIoU / matrix NMS)."""
    boxes_n4(op, "boxes", boxes)
    tensor(op, "scores", scores)
    n = boxes.shape[0]
    if scores.dim() != 1 or scores.shape[0] != n:
        fail(op, f"scores must be a Tensor[N] with N = {n} as boxes, got shape {list(scores.shape)}")
    floating(op, "boxes", boxes)
    floating(op, "scores", scores)
    same_device(op, "scores", scores, boxes)
    if idxs is not None:
        tensor(op, "idxs", idxs)
        if idxs.dim() != 1 or idxs.shape[0] != n:
            fail(op, f"idxs must be a Tensor[N] with N = {n} as boxes, got shape {list(idxs.shape)}")
        if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
            fail(op, f"idxs must be an integer tensor, got {idxs.dtype}", TypeError)
        same_device(op, "idxs", idxs, boxes)
    if n >= 2**31 - 1:
        fail(op, f"boxes must have fewer than 2^31 - 1 rows, got {n}")


def positive(op: str, arg: str, value) -> float:
    v = float(value)
    if not (v > 0.0 and math.isfinite(v)):
        fail(op, f"{arg} must be a finite number > 0, got {value!r}")
    return v


def soft_nms(boxes, scores, idxs, iou_thr, sigma, min_score, method, convention) -> None:
    op = "soft_nms"
    nms_variant(op, boxes, scores, idxs)
    iou_threshold(op, iou_thr)
    positive(op, "sigma", sigma)
    if math.isnan(float(min_score)):
        fail(op, f"min_score must be a number, got {min_score}")
    choice(op, "method", method, SOFT_METHODS)
    choice(op, "convention", convention, SOFT_CONVENTIONS)


def diou_nms(boxes, scores, idxs, iou_thr) -> None:
    nms_variant("diou_nms", boxes, scores, idxs)
    iou_threshold("diou_nms", iou_thr)


def matrix_nms(boxes, scores, idxs, kernel, sigma) -> None:
    op = "matrix_nms"
    nms_variant(op, boxes, scores, idxs)
    choice(op, "kernel", kernel, MATRIX_KERNELS)
    positive(op, "sigma", sigma)
