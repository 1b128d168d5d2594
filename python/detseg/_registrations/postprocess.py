"""Registrations of the post-processing ops and NMS variants (schemas in csrc/ops.cpp): fake
kernels (multiclass_nms has static output shapes; the NMS variants data-dependent ones) and
autocast to float32 (suppression decisions must not move with the autocast dtype)."""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


@torch.library.register_fake(lib + "multiclass_nms")
def _multiclass_nms_fake(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold, level_sizes,
                         level_top_k, pre_nms_top_k, iou_threshold, max_detections, class_agnostic, background_class,
                         score_activation):
    _checks.multiclass_nms(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold,
                           level_sizes, level_top_k, pre_nms_top_k, iou_threshold, max_detections, class_agnostic,
                           background_class, score_activation)
    b, k = scores.shape[0], max_detections
    return (scores.new_empty((b,), dtype=torch.int64), scores.new_empty((b, k, 4)), scores.new_empty((b, k)),
            scores.new_empty((b, k), dtype=torch.int64), scores.new_empty((b, k), dtype=torch.int64))


def _float_out(boxes):
    return torch.float64 if boxes.dtype == torch.float64 else torch.float32


@torch.library.register_fake(lib + "soft_nms")
def _soft_nms_fake(boxes, scores, idxs, iou_threshold, sigma, min_score, method, convention):
    _checks.soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score, method, convention)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64), boxes.new_empty((n,), dtype=_float_out(boxes))


@torch.library.register_fake(lib + "diou_nms")
def _diou_nms_fake(boxes, scores, idxs, iou_threshold):
    _checks.diou_nms(boxes, scores, idxs, iou_threshold)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


@torch.library.register_fake(lib + "matrix_nms")
def _matrix_nms_fake(boxes, scores, idxs, kernel, sigma):
    _checks.matrix_nms(boxes, scores, idxs, kernel, sigma)
    return boxes.new_empty(boxes.shape[:1], dtype=_float_out(boxes))


for _op in ("soft_nms", "diou_nms", "matrix_nms"):
    for _dev in ("cpu", "cuda"):
        torch.library.register_autocast(lib + _op, _dev, torch.float32)
