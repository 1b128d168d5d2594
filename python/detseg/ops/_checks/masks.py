"""Argument checks of the mask ops (twin of csrc/checks/masks.h)."""

from __future__ import annotations

import torch

from .common import *  # noqa: F401,F403

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
