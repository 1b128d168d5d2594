"""Triton Matrix NMS (the matrix stage of SOLOv2's decay): mirrors matrix_one of
csrc/cpu/nms_variants.cpp with the pair IoU of csrc/include/detseg/boxes.h (detseg::pair_iou
<kIoU, kMatrix>, NaN read as 0). The stable score sort and the category grouping are torch
ops; two kernels over tiles of (i, j) pairs compute comp_j = max(0, IoU_ij for i < j of j's
category) and then the decay min_i f(IoU_ij) / f(comp_i), NaN propagating. exp is tl.exp, so
gaussian decays may differ from the CPU kernel's in the last bits."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import compute_dtype, fdiv, interpreted, launch, pow2
from .iou import pair_iou


@triton.jit
def _tile_iou(b_ptr, lab_ptr, i0, j0, n, BI: tl.constexpr, BJ: tl.constexpr):
    """IoU of sorted boxes i in [i0, i0 + BI) with j in [j0, j0 + BJ), 0 where i >= j, where
    the categories differ or out of range; also returns the j lanes and the valid mask."""
    i = i0 + tl.arange(0, BI)
    j = j0 + tl.arange(0, BJ)
    mi = i < n
    mj = j < n
    ax1 = tl.load(b_ptr + 4 * i, mask=mi, other=0.0)[:, None]
    ay1 = tl.load(b_ptr + 4 * i + 1, mask=mi, other=0.0)[:, None]
    ax2 = tl.load(b_ptr + 4 * i + 2, mask=mi, other=0.0)[:, None]
    ay2 = tl.load(b_ptr + 4 * i + 3, mask=mi, other=0.0)[:, None]
    bx1 = tl.load(b_ptr + 4 * j, mask=mj, other=0.0)[None, :]
    by1 = tl.load(b_ptr + 4 * j + 1, mask=mj, other=0.0)[None, :]
    bx2 = tl.load(b_ptr + 4 * j + 2, mask=mj, other=0.0)[None, :]
    by2 = tl.load(b_ptr + 4 * j + 3, mask=mj, other=0.0)[None, :]
    li = tl.load(lab_ptr + i, mask=mi, other=-1)[:, None]
    lj = tl.load(lab_ptr + j, mask=mj, other=-2)[None, :]
    v = pair_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, 0.0, 0, False)
    v = tl.where(v != v, 0.0, v)
    valid = (i[:, None] < j[None, :]) & (li == lj) & mi[:, None] & mj[None, :]
    return tl.where(valid, v, 0.0), valid, i, mi


@triton.jit
def _comp_kernel(b_ptr, lab_ptr, comp_ptr, n, BI: tl.constexpr, BJ: tl.constexpr):
    j0 = tl.program_id(0) * BJ
    acc = tl.zeros((BJ,), dtype=comp_ptr.dtype.element_ty)
    for i0 in range(0, j0 + BJ, BI):
        v, valid, i, mi = _tile_iou(b_ptr, lab_ptr, i0, j0, n, BI, BJ)
        acc = tl.maximum(acc, tl.max(v, axis=0))
    j = j0 + tl.arange(0, BJ)
    tl.store(comp_ptr + j, acc, mask=j < n)


@triton.jit
def _decay_kernel(b_ptr, lab_ptr, comp_ptr, s_ptr, out_ptr, n, nsig, GAUSS: tl.constexpr, BI: tl.constexpr,
                  BJ: tl.constexpr):
    j0 = tl.program_id(0) * BJ
    j = j0 + tl.arange(0, BJ)
    mj = j < n
    mn = tl.full((BJ,), float("inf"), dtype=comp_ptr.dtype.element_ty)
    nan = tl.zeros((BJ,), dtype=tl.int32)
    for i0 in range(0, j0 + BJ, BI):
        v, valid, i, mi = _tile_iou(b_ptr, lab_ptr, i0, j0, n, BI, BJ)
        c = tl.load(comp_ptr + i, mask=mi, other=0.0)[:, None]
        if GAUSS:
            f = tl.where(v == 0.0, 1.0, tl.exp(nsig * (v * v)))
            fc = tl.exp(nsig * (c * c))
        else:
            f = 1.0 - v
            fc = 1.0 - c
        r = fdiv(f, fc)
        r = tl.where(valid, r, float("inf"))
        nan = tl.maximum(nan, tl.max((valid & (r != r)).to(tl.int32), axis=0))
        mn = tl.minimum(mn, tl.min(tl.where(r != r, float("inf"), r), axis=0))
    # The first of a category (no i < j in it) has coefficient 1; min <= 1 otherwise.
    mn = tl.where(mn == float("inf"), 1.0, mn)
    mn = tl.where(nan > 0, float("nan"), mn)
    s = tl.load(s_ptr + j, mask=mj, other=0.0)
    tl.store(out_ptr + j, s * mn, mask=mj)


def matrix_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs, kernel: str, sigma: float) -> torch.Tensor:
    """Twin of torch.ops.detseg.matrix_nms: decayed scores Tensor[N] in input order."""
    _checks.matrix_nms(boxes, scores, idxs, kernel, sigma)
    dt = compute_dtype(boxes)
    n = boxes.shape[0]
    out = torch.empty(n, dtype=dt, device=boxes.device)
    if n == 0:
        return out
    s = scores.to(dt)
    order = torch.sort(s, descending=True, stable=True)[1]
    if idxs is not None:
        lab, perm = torch.sort(idxs.to(torch.int64)[order], stable=True)
        order = order[perm]
    else:
        lab = torch.zeros(n, dtype=torch.int64, device=boxes.device)
    b = boxes.to(dt)[order].contiguous()
    ss = s[order].contiguous()
    lab = lab.contiguous()
    comp = torch.empty(n, dtype=dt, device=boxes.device)
    dec = torch.empty(n, dtype=dt, device=boxes.device)
    big = interpreted(boxes)
    bi = pow2(n, 16, 128 if big else 32)
    bj = pow2(n, 16, 128 if big else 64)
    grid = (triton.cdiv(n, bj),)
    launch(_comp_kernel, grid, b, lab, comp, n, BI=bi, BJ=bj)
    launch(_decay_kernel, grid, b, lab, comp, ss, dec, n, float(-sigma), GAUSS=kernel == "gaussian", BI=bi, BJ=bj)
    out[order] = dec
    return out
