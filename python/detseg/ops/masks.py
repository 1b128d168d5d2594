"""Mask ops: the pixel confusion matrix of label maps, IoU of instance masks, masks -> boxes
and Mask R-CNN mask pasting (torchvision's or detectron2's convention), plus keyword-only
``backend=``. Metrics computed from the confusion matrix live in detseg.metrics."""

from __future__ import annotations

import torch

from .. import _backend
from . import _checks

__all__ = ["confusion_matrix", "mask_iou", "masks_to_boxes", "paste_masks_in_image"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None, *,
                     per_image: bool = False, invalid: str = "error", out: torch.Tensor | None = None,
                     backend: str = "auto"):
    """Pixel confusion matrix of two label maps of the same shape (any shape, any integer dtype:
    uint8, int8, int16, int32, int64, bool; mixed dtypes promote).

    Returns int64 ``Tensor[C, C]`` with row = target class, column = predicted class (the
    torchmetrics / sklearn layout; hotcoco's too), or ``Tensor[B, C, C]`` with
    ``per_image=True`` (dim 0 of the inputs is the batch).

    - ``ignore_index``: pixels whose *target* equals it are left out, whatever the prediction
      (a prediction equal to it is an ordinary label).
    - Labels outside ``[0, num_classes)`` (in either map, on a pixel not ignored):
      ``invalid="error"`` (default) raises ValueError naming the first such pixel;
      ``invalid="count"`` leaves them out of the matrix and returns ``(matrix, n_invalid)``,
      n_invalid an int64 ``Tensor[]`` (``Tensor[B]`` per image).
    - ``out``: an int64 matrix of the result's shape that the counts are *added* to (a running
      total across batches); it is also what is returned.

    One pass over memory with per-thread histograms (C++): bitwise identical for any thread count.
    """
    _checks.confusion_matrix(pred, target, int(num_classes), bool(per_image), invalid)
    ign = None if ignore_index is None else int(ignore_index)
    matrix, bad = _backend.dispatch("confusion_matrix", backend, pred.device, pred, target, int(num_classes), ign,
                                    bool(per_image), invalid)
    if out is not None:
        if out.shape != matrix.shape or out.dtype != torch.int64:
            _checks.fail("confusion_matrix", f"out must be an int64 Tensor{list(matrix.shape)}, got "
                                             f"{out.dtype} {list(out.shape)}")
        matrix = out.add_(matrix)
    return (matrix, bad) if invalid == "count" else matrix


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor, iscrowd: torch.Tensor | None = None, *,
             backend: str = "auto") -> torch.Tensor:
    """IoU of every pair of binary masks: ``Tensor[N, H, W], Tensor[M, H, W] -> Tensor[N, M]``
    (float32). Masks are bool, or uint8 holding only 0 and 1 (anything else raises).

    IoU = |A & B| / |A | B|, 0 when both are empty. ``iscrowd`` (bool ``Tensor[M]``, COCO's flag
    on the ground truth = masks2): for a crowd column the value is |A & B| / |A| (the detection
    masks1's area; 0 for an empty detection), as pycocotools.

    The C++ kernel bit-packs the masks (64 pixels a word), takes each mask's area and box on
    the way, and counts the intersection by popcount only where two boxes overlap.
    """
    return _backend.dispatch("mask_iou", backend, masks1.device, masks1, masks2, iscrowd)


def masks_to_boxes(masks: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """xyxy boxes of masks: ``Tensor[N, H, W]`` (any dtype, nonzero = inside) -> float32 ``Tensor[N, 4]``.

    torchvision's semantics: min and max of the nonzero pixel indices, inclusive (a one-pixel
    mask gives x1 == x2). An empty mask gives (0, 0, 0, 0) where torchvision raises.
    """
    _checks.masks_to_boxes(masks)
    return _backend.dispatch("masks_to_boxes", backend, masks.device, masks)


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, img_shape: tuple[int, int], padding: int = 1, *,
                         convention: str = "torchvision", threshold: float | None = None,
                         backend: str = "auto") -> torch.Tensor:
    """Pastes per-box masks (Mask R-CNN head outputs) into full images.

    masks ``Tensor[N, 1, M, M]`` (torchvision) or ``Tensor[N, Mh, Mw]`` (detectron2), floating;
    boxes xyxy ``Tensor[N, 4]``; img_shape (H, W). Returns ``Tensor[N, 1, H, W]`` or
    ``Tensor[N, H, W]`` (the rank of masks): the pasted probabilities in masks' dtype, or bool
    ``value >= threshold`` when threshold is given (no float image is then materialised).

    convention="torchvision" (default): torchvision.models.detection.roi_heads: the mask is
    zero-padded by ``padding``, its box scaled by (M + 2 padding) / M and truncated to integers,
    then resized bilinearly (align_corners=False) to the box and clipped to the image. Where
    torchvision raises (a box beyond the image's right/bottom edge) or is undefined (a
    non-finite box) nothing is pasted.
    convention="detectron2": detectron2's paste_masks_in_image: pixel centres sampled with
    grid_sample(align_corners=False, zeros padding) in box-normalised coordinates; ``padding``
    is unused; pass ``threshold=0.5`` for its default bool output.

    Each output pixel is computed once, and only pixels inside a mask's reach are interpolated;
    memory is the output only.
    """
    _checks.tensor("paste_masks_in_image", "masks", masks)
    four_d = masks.dim() == 4
    if four_d:
        if masks.shape[1] != 1:
            _checks.fail("paste_masks_in_image", f"masks must be a Tensor[N, 1, M, M] or Tensor[N, M, M], got shape "
                                                 f"{list(masks.shape)}")
        masks = masks[:, 0]
    if len(img_shape) != 2:
        _checks.fail("paste_masks_in_image", f"img_shape must be (height, width), got {img_shape!r}")
    height, width = (int(s) for s in img_shape)
    thr = None if threshold is None else float(threshold)
    out = _backend.dispatch("paste_masks_in_image", backend, masks.device, masks, boxes, height, width, int(padding),
                            convention, thr)
    return out[:, None] if four_d else out
