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


# ---- anchors and box coding (twin of the issue-4 block of csrc/checks.h) ----

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
# ---- masks (twin of the masks block of csrc/checks.h) ----

MAX_CLASSES = 46340  # C * C + 2 bins index in 32 bits
LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
INVALID_MODES = ("error", "count")
PASTE_CONVENTIONS = ("torchvision", "detectron2")


def confusion_matrix(pred, target, num_classes: int, per_image: bool, invalid: str) -> None:
    op = "confusion_matrix"
    tensor(op, "pred", pred)
    tensor(op, "target", target)
    for arg, t in (("pred", pred), ("target", target)):
        if t.dtype not in LABEL_DTYPES:
            fail(op, f"{arg} must be an integer tensor (uint8, int8, int16, int32, int64 or bool), got {t.dtype}",
                 TypeError)
    if target.shape != pred.shape:
        fail(op, f"target must have the shape of pred {list(pred.shape)}, got {list(target.shape)}")
    if target.device != pred.device:
        fail(op, f"target must be on the same device as pred ({pred.device}), got {target.device}")
    if not (1 <= num_classes <= MAX_CLASSES):
        fail(op, f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
    if per_image and pred.dim() < 1:
        fail(op, f"per_image=True needs a batch dimension: pred must be a Tensor[B, ...], got shape {list(pred.shape)}")
    if invalid not in INVALID_MODES:
        fail(op, f"invalid must be 'error' or 'count', got {invalid!r}")


def confusion_invalid_error(index: int, pred: int, target: int, num_classes: int):
    fail("confusion_matrix", f"labels must be in [0, num_classes = {num_classes}) (or target == ignore_index), "
                             f"got pred {pred} and target {target} at flat index {index} "
                             f"(invalid='count' tallies such pixels instead)")


def binary_masks(op: str, arg: str, m) -> None:
    tensor(op, arg, m)
    if m.dim() != 3:
        fail(op, f"{arg} must be a Tensor[N, H, W], got shape {list(m.shape)}")
    if m.dtype not in (torch.bool, torch.uint8):
        fail(op, f"{arg} must be a bool or uint8 tensor, got {m.dtype}", TypeError)


def non_binary_error(op: str, arg: str, value: int):
    fail(op, f"{arg} must hold only 0 and 1, got the value {value}")


def mask_iou(m1, m2, iscrowd) -> None:
    op = "mask_iou"
    binary_masks(op, "masks1", m1)
    binary_masks(op, "masks2", m2)
    if m2.shape[1:] != m1.shape[1:]:
        fail(op, f"masks2 must have the height and width of masks1 ({m1.shape[1]}, {m1.shape[2]}), "
                 f"got shape {list(m2.shape)}")
    if m2.device != m1.device:
        fail(op, f"masks2 must be on the same device as masks1 ({m1.device}), got {m2.device}")
    if iscrowd is not None:
        tensor(op, "iscrowd", iscrowd)
        if iscrowd.dim() != 1 or iscrowd.shape[0] != m2.shape[0]:
            fail(op, f"iscrowd must be a Tensor[M] with M = {m2.shape[0]} as masks2, got shape {list(iscrowd.shape)}")
        if iscrowd.dtype != torch.bool:
            fail(op, f"iscrowd must be a bool tensor, got {iscrowd.dtype}", TypeError)
        if iscrowd.device != m1.device:
            fail(op, f"iscrowd must be on the same device as masks1 ({m1.device}), got {iscrowd.device}")


def masks_to_boxes(masks) -> None:
    tensor("masks_to_boxes", "masks", masks)
    if masks.dim() != 3:
        fail("masks_to_boxes", f"masks must be a Tensor[N, H, W], got shape {list(masks.shape)}")


def paste_masks(masks, boxes, height: int, width: int, padding: int, convention: str) -> str:
    op = "paste_masks_in_image"
    tensor(op, "masks", masks)
    tensor(op, "boxes", boxes)
    if masks.dim() != 3:
        fail(op, f"masks must be a Tensor[N, M, M] (or Tensor[N, 1, M, M] in the public API), got shape "
                 f"{list(masks.shape)}")
    floating(op, "masks", masks)
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != masks.shape[0]:
        fail(op, f"boxes must be a Tensor[N, 4] with N = {masks.shape[0]} as masks, got shape {list(boxes.shape)}")
    floating(op, "boxes", boxes)
    if boxes.device != masks.device:
        fail(op, f"boxes must be on the same device as masks ({masks.device}), got {boxes.device}")
    if height < 0 or width < 0:
        fail(op, f"image_shape must be (height, width) >= 0, got ({height}, {width})")
    if padding < 0:
        fail(op, f"padding must be >= 0, got {padding}")
    if masks.shape[0] > 0 and (masks.shape[1] == 0 or masks.shape[2] == 0):
        fail(op, f"masks must not be empty in height or width, got shape {list(masks.shape)}")
    if convention not in PASTE_CONVENTIONS:
        fail(op, f"convention must be 'torchvision' or 'detectron2', got {convention!r}")
    return convention
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
# ---- transposed convolution and max unpooling (twin of the issue-5 block of csrc/checks.h) ----

def _dt(dtype: torch.dtype) -> str:
    """torch's name of a dtype without the module ("float32"), as csrc/checks.h prints it."""
    return str(dtype).replace("torch.", "")


def conv_out_size(i: int, k: int, s: int, p: int, d: int, op_: int) -> int:
    """(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 (detseg/conv_transpose.h)."""
    return (i - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def conv_pair(op: str, arg: str, v) -> None:
    if len(v) != 2:
        fail(op, f"{arg} must be a pair (height, width), got {list(v)}")


def _like_input(op: str, arg: str, t: torch.Tensor, input: torch.Tensor) -> None:
    if t.dtype != input.dtype:
        fail(op, f"{arg} must have the dtype of input ({_dt(input.dtype)}), got {_dt(t.dtype)}", TypeError)
    if t.device != input.device:
        fail(op, f"{arg} must be on the device of input ({input.device}), got {t.device}")


def conv_transpose2d(op: str, input, weight, bias, stride, padding, output_padding, groups, dilation
                     ) -> tuple[int, int]:
    """The checks of conv_transpose2d; returns (H_out, W_out)."""
    tensor(op, "input", input)
    tensor(op, "weight", weight)
    if input.dim() != 4 or min(input.shape[1:]) <= 0:
        fail(op, f"input must be a Tensor[N, C_in, H, W] with C_in, H, W > 0 (N may be 0), got shape "
                 f"{list(input.shape)}")
    floating(op, "input", input)
    if weight.dim() != 4 or min(weight.shape[1:]) <= 0:
        fail(op, f"weight must be a Tensor[C_in, C_out / groups, kH, kW] with non-zero sizes, got shape "
                 f"{list(weight.shape)}")
    _like_input(op, "weight", weight, input)
    for arg, v in (("stride", stride), ("padding", padding), ("output_padding", output_padding),
                   ("dilation", dilation)):
        conv_pair(op, arg, v)
    stride, padding, output_padding, dilation = (list(v) for v in (stride, padding, output_padding, dilation))
    if min(stride) <= 0:
        fail(op, f"stride must be positive, got {stride}")
    if min(dilation) <= 0:
        fail(op, f"dilation must be positive, got {dilation}")
    if min(padding) < 0:
        fail(op, f"padding must be non-negative, got {padding}")
    if min(output_padding) < 0 or any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        fail(op, f"output_padding must be non-negative and smaller than stride or dilation on each axis, got "
                 f"output_padding {output_padding} with stride {stride} and dilation {dilation}")
    if groups <= 0:
        fail(op, f"groups must be positive, got {groups}")
    cin = input.shape[1]
    if weight.shape[0] != cin:
        fail(op, f"weight.size(0) must equal the input channels {cin} (weight is Tensor[C_in, C_out / groups, kH, "
                 f"kW]), got weight of shape {list(weight.shape)}")
    if cin % groups != 0:
        fail(op, f"groups must divide the input channels {cin}, got groups = {groups}")
    if bias is not None:
        cout = weight.shape[1] * groups
        if bias.dim() != 1 or bias.shape[0] != cout:
            fail(op, f"bias must be a Tensor[C_out] with C_out = weight.size(1) * groups = {cout}, got shape "
                     f"{list(bias.shape)}")
        _like_input(op, "bias", bias, input)
    ho, wo = (conv_out_size(input.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], dilation[a],
                            output_padding[a]) for a in range(2))
    if ho <= 0 or wo <= 0:
        fail(op, f"the output size ({ho}, {wo}) computed from input {list(input.shape[2:])}, kernel "
                 f"{list(weight.shape[2:])}, stride {stride}, padding {padding}, output_padding {output_padding} and "
                 f"dilation {dilation} must be positive: padding is too large")
    return ho, wo


def conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups, dilation
                              ) -> tuple[int, int]:
    op = "_conv_transpose2d_backward"
    ho, wo = conv_transpose2d(op, input, weight, None, stride, padding, output_padding, groups, dilation)
    cout = weight.shape[1] * groups
    want = [input.shape[0], cout, ho, wo]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}] (the output's shape), got shape "
                 f"{list(grad.shape)}")
    if grad.dtype != input.dtype:
        fail(op, f"grad must have the dtype of input ({_dt(input.dtype)}), got {_dt(grad.dtype)}", TypeError)
    return ho, wo


def max_unpool2d(op: str, input, indices, output_size) -> None:
    tensor(op, "input", input)
    tensor(op, "indices", indices)
    if input.dim() != 4:
        fail(op, f"input must be a Tensor[N, C, H, W], got shape {list(input.shape)}")
    floating(op, "input", input)
    if indices.shape != input.shape:
        fail(op, f"indices must have the shape of input {list(input.shape)}, got {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    if indices.device != input.device:
        fail(op, f"indices must be on the device of input ({input.device}), got {indices.device}")
    conv_pair(op, "output_size", output_size)
    if min(output_size) <= 0:
        fail(op, f"output_size must be positive, got {list(output_size)}")


def max_unpool2d_grad(op: str, grad, indices, output_size) -> None:
    conv_pair(op, "output_size", output_size)
    if indices.dim() != 4:
        fail(op, f"indices must be a Tensor[N, C, H, W], got shape {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    want = [indices.shape[0], indices.shape[1], *output_size]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}], got shape {list(grad.shape)}")
    floating(op, "grad", grad)
    if indices.device != grad.device:
        fail(op, f"indices must be on the device of grad ({grad.device}), got {indices.device}")


def max_unpool2d_indices(op: str, indices, plane: int) -> None:
    """Data check (one host sync): every index in [0, plane); names the first bad one in order."""
    if indices.numel() == 0:
        return
    bad = (indices < 0) | (indices >= plane)
    if bool(bad.any()):
        v = int(indices[bad][0])  # row-major order: plane by plane, as the C++ kernel reports
        fail(op, f"indices must hold positions in [0, output_size[0] * output_size[1] = {plane}), got {v}")
