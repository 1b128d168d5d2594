"""Registrations for the box family (schemas in csrc/ops.cpp)."""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


def _out_float(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- fake kernels

@torch.library.register_fake(lib + "box_area")
def _box_area_fake(boxes):
    _checks.boxes_last4("box_area", "boxes", boxes)
    if boxes.is_floating_point():
        dt = _out_float(boxes)
    else:
        dt = boxes.dtype if boxes.dtype in (torch.int32, torch.int64) else torch.int32
    return boxes.new_empty(boxes.shape[:-1], dtype=dt)


@torch.library.register_fake(lib + "box_convert")
def _box_convert_fake(boxes, in_fmt, out_fmt):
    _checks.boxes_last4("box_convert", "boxes", boxes)
    in_fmt = _checks.fmt("box_convert", "in_fmt", in_fmt)
    out_fmt = _checks.fmt("box_convert", "out_fmt", out_fmt)
    dt = boxes.dtype
    if not boxes.is_floating_point() and "cxcywh" in (in_fmt, out_fmt) and in_fmt != out_fmt:
        dt = torch.get_default_dtype()
    return boxes.new_empty(boxes.shape, dtype=dt)


@torch.library.register_fake(lib + "clip_boxes_to_image")
def _clip_fake(boxes, height, width):
    _checks.boxes_last4("clip_boxes_to_image", "boxes", boxes)
    return torch.empty_like(boxes)


@torch.library.register_fake(lib + "remove_small_boxes")
def _remove_small_fake(boxes, min_size):
    _checks.boxes_n4("remove_small_boxes", "boxes", boxes)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


@torch.library.register_fake(lib + "box_iou_matrix")
def _iou_matrix_fake(boxes1, boxes2, kind, eps):
    _checks.iou_matrix(boxes1, boxes2, kind, eps)
    shape = (*boxes1.shape[:-1], boxes2.shape[-2])
    return boxes1.new_empty(shape, dtype=_out_float(boxes1))


@torch.library.register_fake(lib + "_box_iou_matrix_backward")
def _iou_matrix_bwd_fake(grad, boxes1, boxes2, kind, eps):
    return torch.empty_like(boxes1), torch.empty_like(boxes2)


@torch.library.register_fake(lib + "box_iou_loss")
def _iou_loss_fake(boxes1, boxes2, kind, eps):
    _checks.iou_loss(boxes1, boxes2, kind, eps)
    return boxes1.new_empty(boxes1.shape[:1])


@torch.library.register_fake(lib + "_box_iou_loss_backward")
def _iou_loss_bwd_fake(grad, boxes1, boxes2, kind, eps):
    return torch.empty_like(boxes1), torch.empty_like(boxes2)


@torch.library.register_fake(lib + "nms")
def _nms_fake(boxes, scores, iou_threshold):
    _checks.nms(boxes, scores, iou_threshold)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


@torch.library.register_fake(lib + "batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
    _checks.batched_nms(boxes, scores, idxs, iou_threshold)
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


# ---------------------------------------------------------------- autograd

def _setup_pair(ctx, inputs, output):
    boxes1, boxes2, kind, eps = inputs
    ctx.save_for_backward(boxes1, boxes2)
    ctx.kind = kind
    ctx.eps = eps


def _iou_matrix_backward(ctx, grad):
    b1, b2 = ctx.saved_tensors
    g1, g2 = torch.ops.detseg._box_iou_matrix_backward(grad.contiguous(), b1, b2, ctx.kind, ctx.eps)
    return g1, g2, None, None


def _iou_loss_backward(ctx, grad):
    b1, b2 = ctx.saved_tensors
    g1, g2 = torch.ops.detseg._box_iou_loss_backward(grad.contiguous(), b1, b2, ctx.kind, ctx.eps)
    return g1, g2, None, None


torch.library.register_autograd(lib + "box_iou_matrix", _iou_matrix_backward, setup_context=_setup_pair)
torch.library.register_autograd(lib + "box_iou_loss", _iou_loss_backward, setup_context=_setup_pair)


# ---------------------------------------------------------------- autocast
# NMS decisions must not move with the autocast dtype: run them in float32.
for _op in ("nms", "batched_nms", "box_iou_matrix", "box_iou_loss"):
    for _dev in ("cpu", "cuda"):
        torch.library.register_autocast(lib + _op, _dev, torch.float32)


# The coordinate utilities are elementwise and cheap; their backward is the vector-Jacobian
# product of the reference formula (one definition of the math).
def _register_elementwise_autograd(op: str, n_extra: int):
    from .. import reference

    ref = getattr(reference, op)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.extra = inputs[1:]

    def backward(ctx, grad):
        (boxes,) = ctx.saved_tensors
        with torch.enable_grad():
            x = boxes.detach().requires_grad_(True)
            y = ref(x, *ctx.extra)
            (g,) = torch.autograd.grad(y, x, grad.to(y.dtype))
        return (g, *([None] * n_extra))

    torch.library.register_autograd(lib + op, backward, setup_context=setup)


_register_elementwise_autograd("box_area", 0)
_register_elementwise_autograd("box_convert", 2)
_register_elementwise_autograd("clip_boxes_to_image", 2)
