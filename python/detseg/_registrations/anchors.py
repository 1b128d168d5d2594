"""Registrations for anchors and box coding (schemas in csrc/ops.cpp, issue 4)."""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


# ---------------------------------------------------------------- fake kernels

@torch.library.register_fake(lib + "encode_boxes")
def _encode_fake(reference_boxes, proposals, weights):
    _checks.encode_boxes(reference_boxes, proposals, weights)
    return torch.empty_like(reference_boxes, memory_format=torch.contiguous_format)


@torch.library.register_fake(lib + "decode_boxes")
def _decode_fake(rel_codes, boxes, weights, bbox_xform_clip):
    _checks.decode_boxes(rel_codes, boxes, weights, bbox_xform_clip)
    return rel_codes.new_empty(rel_codes.shape)


@torch.library.register_fake(lib + "_decode_boxes_backward")
def _decode_bwd_fake(grad, rel_codes, boxes, weights, bbox_xform_clip):
    _checks.decode_boxes_backward(grad, rel_codes, boxes, weights, bbox_xform_clip)
    return rel_codes.new_empty(rel_codes.shape), boxes.new_empty(boxes.shape)


@torch.library.register_fake(lib + "linear_encode_boxes")
def _linear_encode_fake(reference_boxes, proposals, normalize_by_size):
    _checks.linear_boxes("linear_encode_boxes", reference_boxes, proposals)
    return reference_boxes.new_empty(reference_boxes.shape)


@torch.library.register_fake(lib + "linear_decode_boxes")
def _linear_decode_fake(rel_codes, boxes, normalize_by_size):
    _checks.linear_boxes("linear_decode_boxes", rel_codes, boxes)
    return rel_codes.new_empty(rel_codes.shape)


@torch.library.register_fake(lib + "grid_anchors")
def _grid_anchors_fake(base_anchors, feature_h, feature_w, stride_h, stride_w, offset):
    _checks.grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    return base_anchors.new_empty((feature_h * feature_w * base_anchors.shape[0], 4))


@torch.library.register_fake(lib + "multilevel_grid_anchors")
def _multilevel_fake(base_anchors, feature_h, feature_w, stride_h, stride_w, offset):
    rows = _checks.multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    return base_anchors[0].new_empty((rows, 4))


@torch.library.register_fake(lib + "yolo_decode")
def _yolo_decode_fake(pred, anchors, stride_h, stride_w):
    _checks.yolo_decode(pred, anchors, stride_h, stride_w)
    n, h, w, _ = pred.shape
    return pred.new_empty((n, h, w, anchors.shape[0], 5))


# ---------------------------------------------------------------- autograd

def _decode_setup(ctx, inputs, output):
    rel_codes, boxes, weights, clip = inputs
    ctx.save_for_backward(rel_codes, boxes)
    ctx.weights, ctx.clip = list(weights), clip


def _decode_backward(ctx, grad):
    rel_codes, boxes = ctx.saved_tensors
    gd, gb = torch.ops.detseg._decode_boxes_backward(grad.contiguous(), rel_codes, boxes, ctx.weights, ctx.clip)
    return gd, gb, None, None


torch.library.register_autograd(lib + "decode_boxes", _decode_backward, setup_context=_decode_setup)


# Cheap elementwise ops: the backward is the vector-Jacobian product of the reference formula
# (one definition of the math) for the first `n_tensors` inputs.
def _register_reference_vjp(op: str, n_tensors: int):
    from .. import reference

    ref = getattr(reference, op)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_tensors])
        ctx.extra = inputs[n_tensors:]

    def backward(ctx, grad):
        with torch.enable_grad():
            xs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
            y = ref(*xs, *ctx.extra)
            gs = torch.autograd.grad(y, xs, grad.to(y.dtype), allow_unused=True)
        gs = [g if g is not None else torch.zeros_like(x) for g, x in zip(gs, xs)]
        return (*gs, *([None] * len(ctx.extra)))

    torch.library.register_autograd(lib + op, backward, setup_context=setup)


_register_reference_vjp("linear_decode_boxes", 2)
_register_reference_vjp("yolo_decode", 2)


# ---------------------------------------------------------------- autocast
# Box coordinates need more than float16's 11 bits (a 1000-pixel box moves in steps of 0.5).
for _op in ("encode_boxes", "decode_boxes", "linear_encode_boxes", "linear_decode_boxes"):
    for _dev in ("cpu", "cuda"):
        torch.library.register_autocast(lib + _op, _dev, torch.float32)
