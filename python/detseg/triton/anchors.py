"""Triton anchor grid and YOLO grid decode, mirroring csrc/include/detseg/anchors.h."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import compute_dtype, elementwise_block, fdiv, launch, store_as, tl_dtype


@triton.jit
def _grid_anchors_kernel(b_ptr, bs0, bs1, prm_ptr, out_ptr, W, A, R, CT: tl.constexpr, BLOCK: tl.constexpr):
    # one lane per output row r = (y * W + x) * A + a
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = r < R
    a = r % A
    cell = r // A
    x = (cell % W).to(tl.float64)
    y = (cell // W).to(tl.float64)
    stride_h = tl.load(prm_ptr)
    stride_w = tl.load(prm_ptr + 1)
    offset = tl.load(prm_ptr + 2)
    # detseg::grid_shift: in float64, rounded once
    sx = (offset * stride_w + x * stride_w).to(CT)
    sy = (offset * stride_h + y * stride_h).to(CT)
    p = b_ptr + a * bs0
    o = out_ptr + r * 4
    store_as(o, sx + tl.load(p, mask=m, other=0).to(CT), m)
    store_as(o + 1, sy + tl.load(p + bs1, mask=m, other=0).to(CT), m)
    store_as(o + 2, sx + tl.load(p + 2 * bs1, mask=m, other=0).to(CT), m)
    store_as(o + 3, sy + tl.load(p + 3 * bs1, mask=m, other=0).to(CT), m)


def _launch_level(b: torch.Tensor, feature_h: int, feature_w: int, stride_h: float, stride_w: float, offset: float,
                  out: torch.Tensor) -> None:
    rows = out.shape[0]
    if rows:
        prm = torch.tensor([stride_h, stride_w, offset], dtype=torch.float64, device=b.device)
        block = elementwise_block(out, rows)
        launch(_grid_anchors_kernel, (triton.cdiv(rows, block),), b, b.stride(0), b.stride(1), prm, out, feature_w,
               b.shape[0], rows, CT=tl_dtype(compute_dtype(b)), BLOCK=block)


def grid_anchors(base_anchors: torch.Tensor, feature_h: int, feature_w: int, stride_h: float, stride_w: float,
                 offset: float) -> torch.Tensor:
    """Base anchors Tensor[A, 4] over an H x W grid -> Tensor[H * W * A, 4], rows (y, x, a)."""
    _checks.grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    rows = feature_h * feature_w * base_anchors.shape[0]
    out = torch.empty((rows, 4), dtype=base_anchors.dtype, device=base_anchors.device)
    _launch_level(base_anchors, feature_h, feature_w, stride_h, stride_w, offset, out)
    return out


def multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset) -> torch.Tensor:
    """Every level into one Tensor[sum_l H_l W_l A_l, 4] (each level a contiguous slice)."""
    rows = _checks.multilevel_grid_anchors(base_anchors, feature_h, feature_w, stride_h, stride_w, offset)
    b0 = base_anchors[0]
    out = torch.empty((rows, 4), dtype=b0.dtype, device=b0.device)
    start = 0
    for b, h, w, sh, sw in zip(base_anchors, feature_h, feature_w, stride_h, stride_w):
        n = h * w * b.shape[0]
        _launch_level(b, h, w, sh, sw, offset, out[start:start + n])
        start += n
    return out


@triton.jit
def _sigmoid(x):
    return fdiv(tl.full(x.shape, 1.0, x.dtype), 1.0 + tl.exp(-x))


@triton.jit
def _yolo_kernel(p_ptr, s0, s1, s2, s3, an_ptr, prm_ptr, out_ptr, H, W, B, R,
                 CT: tl.constexpr, BLOCK: tl.constexpr):
    # one lane per (cell, anchor) pair r = ((n * H + y) * W + x) * B + b; detseg::yolo_decode_one
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = r < R
    b = r % B
    cell = r // B
    x = cell % W
    y = (cell // W) % H
    n = cell // (W * H)
    p = p_ptr + n * s0 + y * s1 + x * s2 + (5 * b) * s3
    tx = tl.load(p, mask=m, other=0).to(CT)
    ty = tl.load(p + s3, mask=m, other=0).to(CT)
    tw = tl.load(p + 2 * s3, mask=m, other=0).to(CT)
    th = tl.load(p + 3 * s3, mask=m, other=0).to(CT)
    to = tl.load(p + 4 * s3, mask=m, other=0).to(CT)
    aw = tl.load(an_ptr + 2 * b, mask=m, other=0).to(CT)
    ah = tl.load(an_ptr + 2 * b + 1, mask=m, other=0).to(CT)
    stride_h = tl.load(prm_ptr).to(CT)
    stride_w = tl.load(prm_ptr + 1).to(CT)
    cx = (_sigmoid(tx) + x.to(CT)) * stride_w
    cy = (_sigmoid(ty) + y.to(CT)) * stride_h
    hw = 0.5 * (aw * tl.exp(tw))
    hh = 0.5 * (ah * tl.exp(th))
    o = out_ptr + r * 5
    store_as(o, cx - hw, m)
    store_as(o + 1, cy - hh, m)
    store_as(o + 2, cx + hw, m)
    store_as(o + 3, cy + hh, m)
    store_as(o + 4, _sigmoid(to), m)


def _yolo(pred: torch.Tensor, anchors: torch.Tensor, stride_h: float, stride_w: float) -> torch.Tensor:
    n, h, w, _ = pred.shape
    nb = anchors.shape[0]
    out = torch.empty((n, h, w, nb, 5), dtype=pred.dtype, device=pred.device)
    rows = n * h * w * nb
    if rows:
        ct = compute_dtype(pred)
        an = anchors.to(ct).contiguous()
        prm = torch.tensor([stride_h, stride_w], dtype=torch.float64, device=pred.device)
        block = elementwise_block(pred, rows)
        launch(_yolo_kernel, (triton.cdiv(rows, block),), pred, *pred.stride(), an, prm, out, h, w, nb, rows,
               CT=tl_dtype(ct), BLOCK=block)
    return out


class _Yolo(torch.autograd.Function):
    # the backward is the reference formula's vector-Jacobian product (one statement of the math)
    @staticmethod
    def forward(ctx, pred, anchors, stride_h, stride_w):
        ctx.save_for_backward(pred, anchors)
        ctx.strides = (stride_h, stride_w)
        return _yolo(pred, anchors, stride_h, stride_w)

    @staticmethod
    def backward(ctx, grad):
        from .. import reference

        with torch.enable_grad():
            xs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
            y = reference.yolo_decode(*xs, *ctx.strides)
            gp, ga = torch.autograd.grad(y, xs, grad.to(y.dtype))
        return gp, ga, None, None


def yolo_decode(pred: torch.Tensor, anchors: torch.Tensor, stride_h: float, stride_w: float) -> torch.Tensor:
    """Tensor[N, H, W, B * 5 + C], anchors Tensor[B, 2] -> Tensor[N, H, W, B, 5] (see reference)."""
    _checks.yolo_decode(pred, anchors, stride_h, stride_w)
    return _Yolo.apply(pred, anchors, float(stride_h), float(stride_w))
