"""Fused detection post-processing (multiclass_nms) and the NMS variants (soft-NMS, DIoU-NMS,
Matrix NMS), with keyword-only ``backend=``."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .. import _backend
from . import _checks

__all__ = ["multiclass_nms", "MulticlassNmsResult", "soft_nms", "batched_soft_nms", "diou_nms", "batched_diou_nms",
           "matrix_nms", "batched_matrix_nms"]

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class MulticlassNmsResult(NamedTuple):
    num_detections: torch.Tensor  # int64 Tensor[B]
    boxes: torch.Tensor           # Tensor[B, K, 4], 0 beyond num_detections
    scores: torch.Tensor          # Tensor[B, K], 0 beyond num_detections
    classes: torch.Tensor         # int64 Tensor[B, K], -1 beyond num_detections
    indices: torch.Tensor         # int64 Tensor[B, K] anchor index, -1 beyond num_detections


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, *, anchors: torch.Tensor | None = None,
                   weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), bbox_xform_clip: float = BBOX_XFORM_CLIP,
                   image_size: Sequence[int] | None = None, score_threshold: float = 0.05,
                   level_sizes: Sequence[int] | None = None, level_top_k: int = -1, pre_nms_top_k: int = -1,
                   iou_threshold: float = 0.5, max_detections: int = 100, class_agnostic: bool = False,
                   background_class: int = -1, score_activation: str = "none",
                   backend: str = "auto") -> MulticlassNmsResult:
    """Decode -> clip -> score threshold -> top-k -> class-aware NMS -> first K, in one op with
    fixed-size outputs (so it traces, compiles with fullgraph=True and exports).

    Args:
        boxes: ``Tensor[B, N, 4]`` xyxy shared by the C classes, or ``Tensor[B, N, C, 4]`` per class;
            with `anchors`, BoxCoder deltas of the same shapes.
        scores: ``Tensor[B, N, C]``.
        anchors: ``Tensor[N, 4]`` or ``Tensor[B, N, 4]`` xyxy; decoded as torchvision's BoxCoder
            (`weights` (wx, wy, ww, wh), dw / dh clamped above at `bbox_xform_clip`).
        image_size: ``(height, width)``: boxes are clamped to x in [0, width], y in [0, height].
        score_threshold: a candidate needs activated score > threshold (strict, as TensorRT's
            EfficientNMS and ONNX); NaN scores never pass, so they are dropped.
        level_sizes: anchors per feature level (summing to N); `level_top_k` keeps the top k
            candidates of each level (RetinaNet), `pre_nms_top_k` then the top k of the image;
            -1: no limit. Without level_sizes the image is one level.
        iou_threshold: suppression iff IoU > threshold, within a class (every class together
            when `class_agnostic`), with detseg.ops.batched_nms's rule.
        max_detections: K, the fixed second dimension of the outputs.
        background_class: a class index whose scores are ignored (-1: none).
        score_activation: "none", "sigmoid" or "softmax" (over the C classes, background
            included), applied before the threshold. Both are detseg/postprocess.h's formulas
            with the C library's exp (within an ulp or two of torch.sigmoid / torch.softmax):
            the kernel evaluates them only where a score can pass, and every backend agrees
            bitwise. A row holding a NaN (or +inf) softmaxes to NaN and is dropped.

    Returns ``MulticlassNmsResult(num_detections int64 Tensor[B], boxes Tensor[B, K, 4],
    scores Tensor[B, K], classes int64 Tensor[B, K], indices int64 Tensor[B, K])``; indices are
    anchor indices n. Detections are ordered by score descending, ties by (anchor, class)
    ascending; padding is 0 for boxes and scores, -1 for classes and indices. Equal to
    ``detseg.reference.postprocess.compose`` (the separate steps) bitwise, given the same ``exp``
    (Triton and CUDA use the device's ``exp``, so where an activation or a decode evaluates it
    they can differ from the C++ kernel in the last bit). Half / bfloat16
    inputs are computed in float32; boxes and scores come back in their input dtypes.
    """
    _checks.tensor("multiclass_nms", "boxes", boxes)
    _checks.tensor("multiclass_nms", "scores", scores)
    _checks.floating("multiclass_nms", "scores", scores)
    dt = _compute_dtype(scores)
    b_in, s_in = boxes.dtype, scores.dtype
    args = (boxes.to(dt), scores.to(dt), None if anchors is None else anchors.to(dt),
            [float(w) for w in weights], float(bbox_xform_clip), [int(v) for v in (image_size or ())],
            float(score_threshold), [int(v) for v in (level_sizes or ())], int(level_top_k), int(pre_nms_top_k),
            float(iou_threshold), int(max_detections), bool(class_agnostic), int(background_class),
            str(score_activation))
    num, ob, os_, oc, oi = _backend.dispatch("multiclass_nms", backend, scores.device, *args)
    if b_in.is_floating_point and b_in != dt:
        ob = ob.to(b_in)
    if s_in != dt:
        os_ = os_.to(s_in)
    return MulticlassNmsResult(num, ob, os_, oc, oi)


def _float(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_floating_point() else t.float()


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.3, sigma: float = 0.5,
             min_score: float = 1e-3, method: str = "gaussian", convention: str = "mmcv", *,
             backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS (Bodla et al. 2017). ``boxes Tensor[N, 4]`` xyxy, ``scores Tensor[N]`` ->
    (kept indices int64 ``Tensor[K]`` in pick order, their decayed scores ``Tensor[K]``).

    Repeatedly picks the highest remaining score (ties: lowest index) and decays every other
    remaining score by w(IoU): "linear" 1 - IoU when IoU passes `iou_threshold`, "gaussian"
    exp(-IoU^2 / sigma) for every box. Conventions (SEMANTICS.md c.4):
      - "mmcv": linear decays when IoU >= threshold; after each pick the remaining boxes with
        score < min_score are dropped (the first pick is always kept).
      - "opencv" (cv2.dnn.softNMSBoxes): candidates need score > min_score; linear decays when
        IoU > threshold; stops when the best remaining score is < min_score.
    NaN scores are dropped. The pick order is (decayed score descending, index ascending).
    IoU and decay are computed in float32 (float64 for float64 input); scores come back in
    that dtype.
    """
    _checks.tensor("soft_nms", "boxes", boxes)
    _checks.tensor("soft_nms", "scores", scores)
    return _backend.dispatch("soft_nms", backend, boxes.device, _float(boxes), _float(scores), None,
                             float(iou_threshold), float(sigma), float(min_score), method, convention)


def batched_soft_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float = 0.3,
                     sigma: float = 0.5, min_score: float = 1e-3, method: str = "gaussian",
                     convention: str = "mmcv", *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS within each category of ``idxs Tensor[N]`` (int). Output ordered by decayed score
    descending, ties by index ascending (per category this is its pick order)."""
    _checks.tensor("soft_nms", "boxes", boxes)
    _checks.tensor("soft_nms", "scores", scores)
    return _backend.dispatch("soft_nms", backend, boxes.device, _float(boxes), _float(scores), idxs,
                             float(iou_threshold), float(sigma), float(min_score), method, convention)


def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, backend: str = "auto") -> torch.Tensor:
    """DIoU-NMS (Zheng et al. 2020, YOLOv4): greedy NMS where box j is suppressed by a kept box i
    iff DIoU(i, j) = IoU - d^2 / c^2 > iou_threshold (d: centre distance, c: diagonal of the
    enclosing box; detseg::pair_iou<kDIoU> with eps 0). Order and NaN rules as detseg.ops.nms.
    ``boxes Tensor[N, 4]``, ``scores Tensor[N]`` -> kept indices int64 ``Tensor[K]``."""
    _checks.tensor("diou_nms", "boxes", boxes)
    _checks.tensor("diou_nms", "scores", scores)
    return _backend.dispatch("diou_nms", backend, boxes.device, _float(boxes), _float(scores), None,
                             float(iou_threshold))


def batched_diou_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float, *,
                     backend: str = "auto") -> torch.Tensor:
    """DIoU-NMS within each category of ``idxs Tensor[N]``; output by decreasing score (ties: index)."""
    _checks.tensor("diou_nms", "boxes", boxes)
    _checks.tensor("diou_nms", "scores", scores)
    return _backend.dispatch("diou_nms", backend, boxes.device, _float(boxes), _float(scores), idxs,
                             float(iou_threshold))


def matrix_nms(boxes: torch.Tensor, scores: torch.Tensor, kernel: str = "gaussian", sigma: float = 2.0, *,
               backend: str = "auto") -> torch.Tensor:
    """Matrix NMS (SOLOv2, on boxes). With boxes in stable descending score order and IoU_ij the
    IoU of a higher-ranked i with j, comp_i = max_k<i IoU_ki and the decay of j is
    min_i f(IoU_ij) / f(comp_i): "linear" f(x) = 1 - x, "gaussian" f(x) = exp(-sigma x^2)
    (SOLOv2's code, as a full-matrix min; NaN propagates as in torch.min). ``boxes Tensor[N, 4]``,
    ``scores Tensor[N]`` -> decayed scores ``Tensor[N]`` in input order (threshold them to keep)."""
    _checks.tensor("matrix_nms", "boxes", boxes)
    _checks.tensor("matrix_nms", "scores", scores)
    return _backend.dispatch("matrix_nms", backend, boxes.device, _float(boxes), _float(scores), None, kernel,
                             float(sigma))


def batched_matrix_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, kernel: str = "gaussian",
                       sigma: float = 2.0, *, backend: str = "auto") -> torch.Tensor:
    """Matrix NMS within each category of ``idxs Tensor[N]`` (SOLOv2's label matrix)."""
    _checks.tensor("matrix_nms", "boxes", boxes)
    _checks.tensor("matrix_nms", "scores", scores)
    return _backend.dispatch("matrix_nms", backend, boxes.device, _float(boxes), _float(scores), idxs, kernel,
                             float(sigma))
