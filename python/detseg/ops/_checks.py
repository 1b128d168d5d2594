"""Argument checks of each op for the Python side (public API, Triton, reference, fake
kernels). The C++ kernels check with the same words in csrc/checks.h."""

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
    if value not in KINDS:
        fail(op, f"kind must be one of {', '.join(map(repr, KINDS))}, got {value!r}")
    return value


def reduction(op: str, value: str) -> str:
    if value not in REDUCTIONS:
        fail(op, f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {value!r}")
    return value


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


# ---- RoI ops (twin of the RoI block of csrc/checks.h) ----

POOL_MODES = ("avg", "max")


def roi_rois(op: str, rois: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    tensor(op, "rois", rois)
    if rois.dim() != 2 or rois.shape[1] != 5:
        fail(op, f"rois must be a Tensor[K, 5] of (batch_index, x1, y1, x2, y2), got shape {list(rois.shape)}")
    floating(op, "rois", rois)
    if rois.device != ref.device:
        fail(op, f"rois must be on the same device as {ref_name} ({ref.device}), got {rois.device}")


def roi_scale_size(op: str, spatial_scale, pooled_height: int, pooled_width: int) -> None:
    s = float(spatial_scale)
    if not (math.isfinite(s) and s > 0.0):
        fail(op, f"spatial_scale must be a finite number > 0, got {s}")
    if not (0 < pooled_height <= (1 << 20) and 0 < pooled_width <= (1 << 20)):
        fail(op, f"output_size must be positive (at most 2^20), got ({pooled_height}, {pooled_width})")


def roi_args(op: str, input: torch.Tensor, rois: torch.Tensor, spatial_scale, pooled_height: int,
             pooled_width: int) -> None:
    tensor(op, "input", input)
    if input.dim() != 4:
        fail(op, f"input must be a Tensor[N, C, H, W], got shape {list(input.shape)}")
    floating(op, "input", input)
    roi_rois(op, rois, input, "input")
    roi_scale_size(op, spatial_scale, pooled_height, pooled_width)


def roi_sampling_ratio(op: str, sampling_ratio: int) -> None:
    if sampling_ratio > (1 << 16):
        fail(op, f"sampling_ratio must be at most 65536 (<= 0: adaptive), got {sampling_ratio}")


def roi_pool_mode(op: str, mode: str) -> str:
    if mode not in POOL_MODES:
        fail(op, f"pool_mode must be 'avg' or 'max', got {mode!r}")
    return mode


def roi_batch_indices(op: str, rois: torch.Tensor, batch_size: int) -> None:
    """Data check (one host sync): rois[:, 0] integral and in [0, batch_size)."""
    if rois.shape[0] == 0:
        return
    b = rois[:, 0].double()
    bad = ~((b >= 0) & (b < batch_size) & (b == b.trunc()))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        fail(op, f"rois[:, 0] must hold integer batch indices in [0, {batch_size}), got {float(b[i])!r} in row {i}")


def roi_channels_last(t: torch.Tensor) -> bool:
    """The layout rule of the RoI kernels: channels-last when so laid out and not also contiguous."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def ps_roi_channels(op: str, channels: int, pooled_height: int, pooled_width: int) -> None:
    if channels % (pooled_height * pooled_width) != 0:
        fail(op, f"input channels must be a multiple of output_size[0] * output_size[1] = "
                 f"{pooled_height * pooled_width}, got {channels}")


def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, pool_mode) -> None:
    op = "roi_align"
    roi_args(op, input, rois, spatial_scale, pooled_height, pooled_width)
    roi_sampling_ratio(op, sampling_ratio)
    roi_pool_mode(op, pool_mode)


def roi_pool(input, rois, spatial_scale, pooled_height, pooled_width) -> None:
    roi_args("roi_pool", input, rois, spatial_scale, pooled_height, pooled_width)


# ---- post-processing and NMS variants (twin of the block at the end of csrc/checks.h) ----

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


def choice(op: str, arg: str, value: str, options: tuple) -> str:
    if value not in options:
        fail(op, f"{arg} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


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
