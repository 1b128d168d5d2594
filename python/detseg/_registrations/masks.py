"""Registrations for the mask family (schemas in csrc/ops.cpp): fake kernels. None of these ops
is differentiable (counts, binary masks, pasting at inference)."""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


@torch.library.register_fake(lib + "confusion_matrix")
def _confusion_fake(pred, target, num_classes, ignore_index=None, per_image=False, invalid="error"):
    _checks.confusion_matrix(pred, target, num_classes, per_image, invalid)
    lead = (pred.shape[0],) if per_image else ()
    return (pred.new_empty((*lead, num_classes, num_classes), dtype=torch.int64),
            pred.new_empty(lead, dtype=torch.int64))


@torch.library.register_fake(lib + "mask_iou")
def _mask_iou_fake(masks1, masks2, iscrowd=None):
    _checks.mask_iou(masks1, masks2, iscrowd)
    return masks1.new_empty((masks1.shape[0], masks2.shape[0]), dtype=torch.float32)


@torch.library.register_fake(lib + "masks_to_boxes")
def _masks_to_boxes_fake(masks):
    _checks.masks_to_boxes(masks)
    return masks.new_empty((masks.shape[0], 4), dtype=torch.float32)


@torch.library.register_fake(lib + "paste_masks_in_image")
def _paste_fake(masks, boxes, height, width, padding=1, convention="torchvision", threshold=None):
    _checks.paste_masks(masks, boxes, height, width, padding, convention)
    dt = torch.bool if threshold is not None else masks.dtype
    return masks.new_empty((masks.shape[0], height, width), dtype=dt)
