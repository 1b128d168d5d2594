"""Triton IoU family: pairwise matrices, aligned-pair losses, and their backward kernels.

Mirrors csrc/include/detseg/boxes.h term for term: `pair_iou` below is
detseg::pair_iou<Kind, Form> and `pair_iou_backward` is detseg::pair_iou_backward<Kind, Form>
(same operations, same order, same select-based min/max), with the kind and the form as
tl.constexpr. float16/bfloat16 are widened to float32, float64 is computed in float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import (atan, clamp_min0, compute_dtype, dmax, dmin, elementwise_block, fdiv, interpreted, launch,
                     pow2, route_max, route_min, store_as, tl_dtype)

_KINDS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3}


# ================================================================ IoU family: the math

@triton.jit
def _extent(lo_a, lo_b, hi_a, hi_b, ENCLOSING: tl.constexpr):
    """Extent along one axis of the enclosing box, max(hi) - min(lo) (ENCLOSING), or of the
    intersection, min(hi) - max(lo) (negative when the boxes do not meet)."""
    if ENCLOSING:
        return dmax(hi_a, hi_b) - dmin(lo_a, lo_b)
    else:
        return dmin(hi_a, hi_b) - dmax(lo_a, lo_b)


@triton.jit
def pair_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, eps, KIND: tl.constexpr, LOSS: tl.constexpr):
    """detseg::pair_iou<KIND, LOSS ? kLoss : kMatrix> (csrc/include/detseg/boxes.h)."""
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    iw = _extent(ax1, bx1, ax2, bx2, False)
    ih = _extent(ay1, by1, ay2, by2, False)
    if LOSS:
        inter = tl.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    else:
        inter = clamp_min0(iw) * clamp_min0(ih)
    uni = area_a + area_b - inter
    if LOSS:
        iou = fdiv(inter, uni + eps)
    else:
        iou = fdiv(inter, uni)
    if KIND == 0:
        return iou
    else:
        ew = _extent(ax1, bx1, ax2, bx2, True)
        eh = _extent(ay1, by1, ay2, by2, True)
        if not LOSS:
            ew = clamp_min0(ew)
            eh = clamp_min0(eh)
        if KIND == 1:
            c = ew * eh
            if LOSS:
                return iou - fdiv(c - uni, c + eps)
            else:
                return iou - fdiv(c - uni, c)
        else:
            diag = ew * ew + eh * eh + eps
            dx = (ax1 + ax2) * 0.5 - (bx1 + bx2) * 0.5
            dy = (ay1 + ay2) * 0.5 - (by1 + by2) * 0.5
            diou = iou - fdiv(dx * dx + dy * dy, diag)
            if KIND == 2:
                return diou
            else:
                t = atan(fdiv(ax2 - ax1, ay2 - ay1)) - atan(fdiv(bx2 - bx1, by2 - by1))
                v = 0.40528473456935108577551785283891 * t * t
                alpha = fdiv(v, 1.0 - iou + v + eps)
                return diou - alpha * v


@triton.jit
def _extent_grad(g, lo_a, lo_b, hi_a, hi_b, glo_a, glo_b, ghi_a, ghi_b, ENCLOSING: tl.constexpr):
    """Adds the gradient g of an extent along one axis to the four edge gradients: the
    enclosing box's max(hi) - min(lo) (ENCLOSING) or the intersection's min(hi) - max(lo)."""
    if ENCLOSING:
        dha, dhb = route_max(g, hi_a, hi_b)
        dla, dlb = route_min(-g, lo_a, lo_b)
    else:
        dha, dhb = route_min(g, hi_a, hi_b)
        dla, dlb = route_max(-g, lo_a, lo_b)
    return glo_a + dla, glo_b + dlb, ghi_a + dha, ghi_b + dhb


@triton.jit
def pair_iou_backward(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, eps, g, KIND: tl.constexpr, LOSS: tl.constexpr):
    """detseg::pair_iou_backward<KIND, LOSS ? kLoss : kMatrix> (csrc/include/detseg/boxes.h):
    g * d pair_iou / d(a, b), accumulated in the header's order. Returns the 8 partials
    (a.x1, a.y1, a.x2, a.y2, b.x1, b.y1, b.x2, b.y2), broadcast to g's shape."""
    zero = tl.zeros_like(g)
    ga0 = zero
    ga1 = zero
    ga2 = zero
    ga3 = zero
    gb0 = zero
    gb1 = zero
    gb2 = zero
    gb3 = zero
    wa = ax2 - ax1
    ha = ay2 - ay1
    wb = bx2 - bx1
    hb = by2 - by1
    area_a = wa * ha
    area_b = wb * hb
    iw_raw = _extent(ax1, bx1, ax2, bx2, False)
    ih_raw = _extent(ay1, by1, ay2, by2, False)
    if LOSS:
        msk = (iw_raw > 0) & (ih_raw > 0)
        iw = tl.where(msk, iw_raw, 0.0)
        ih = tl.where(msk, ih_raw, 0.0)
        gate_w = tl.where(msk, 1.0, 0.0)
        gate_h = gate_w
    else:
        iw = clamp_min0(iw_raw)
        ih = clamp_min0(ih_raw)
        gate_w = tl.where(iw_raw >= 0, 1.0, 0.0)
        gate_h = tl.where(ih_raw >= 0, 1.0, 0.0)
    inter = iw * ih
    uni = area_a + area_b - inter
    if LOSS:
        den = uni + eps
    else:
        den = uni
    iou = fdiv(inter, den)

    g_iou = g
    g_uni = zero
    if KIND != 0:
        ew = _extent(ax1, bx1, ax2, bx2, True)
        eh = _extent(ay1, by1, ay2, by2, True)
        if LOSS:
            gate_ew = 1.0
            gate_eh = 1.0
        else:
            gate_ew = tl.where(ew >= 0, 1.0, 0.0)
            gate_eh = tl.where(eh >= 0, 1.0, 0.0)
            ew = clamp_min0(ew)
            eh = clamp_min0(eh)
        if KIND == 1:
            c = ew * eh
            if LOSS:
                cd = c + eps
            else:
                cd = c
            # value = iou - (c - uni) / cd
            g_c = fdiv(-g * (cd - c + uni), cd * cd)
            g_uni += fdiv(g, cd)
            g_ew = g_c * eh * gate_ew
            g_eh = g_c * ew * gate_eh
        else:
            diag = ew * ew + eh * eh + eps
            dx = (ax1 + ax2) * 0.5 - (bx1 + bx2) * 0.5
            dy = (ay1 + ay2) * 0.5 - (by1 + by2) * 0.5
            cd2 = dx * dx + dy * dy
            # value = iou - cd2 / diag
            g_diag = fdiv(g * cd2, diag * diag)
            g_dx = fdiv(-g * 2.0 * dx, diag)
            g_dy = fdiv(-g * 2.0 * dy, diag)
            g_ew = g_diag * 2.0 * ew * gate_ew
            g_eh = g_diag * 2.0 * eh * gate_eh
            hdx = g_dx * 0.5
            hdy = g_dy * 0.5
            ga0 += hdx
            ga2 += hdx
            gb0 -= hdx
            gb2 -= hdx
            ga1 += hdy
            ga3 += hdy
            gb1 -= hdy
            gb3 -= hdy
            if KIND == 3:
                ra = fdiv(wa, ha)
                rb = fdiv(wb, hb)
                t = atan(ra) - atan(rb)
                v = 0.40528473456935108577551785283891 * t * t
                alpha = fdiv(v, 1.0 - iou + v + eps)
                # value -= alpha * v, alpha held constant
                g_t = -g * alpha * 0.40528473456935108577551785283891 * 2.0 * t
                g_ra = fdiv(g_t, 1.0 + ra * ra)
                g_rb = fdiv(-g_t, 1.0 + rb * rb)
                qa = fdiv(g_ra, ha)
                qra = fdiv(g_ra * ra, ha)
                qb = fdiv(g_rb, hb)
                qrb = fdiv(g_rb * rb, hb)
                ga2 += qa
                ga0 -= qa
                ga3 -= qra
                ga1 += qra
                gb2 += qb
                gb0 -= qb
                gb3 -= qrb
                gb1 += qrb
        # ew = max(x2) - min(x1), eh likewise
        ga0, gb0, ga2, gb2 = _extent_grad(g_ew, ax1, bx1, ax2, bx2, ga0, gb0, ga2, gb2, True)
        ga1, gb1, ga3, gb3 = _extent_grad(g_eh, ay1, by1, ay2, by2, ga1, gb1, ga3, gb3, True)

    # iou = inter / den, den = area_a + area_b - inter (+ eps)
    g_den = fdiv(-g_iou * iou, den) + g_uni
    g_inter = fdiv(g_iou, den) - g_den
    ga0 -= g_den * ha
    ga2 += g_den * ha
    ga1 -= g_den * wa
    ga3 += g_den * wa
    gb0 -= g_den * hb
    gb2 += g_den * hb
    gb1 -= g_den * wb
    gb3 += g_den * wb
    # inter = iw * ih with iw = min(x2) - max(x1)
    g_iw = g_inter * ih * gate_w
    g_ih = g_inter * iw * gate_h
    ga0, gb0, ga2, gb2 = _extent_grad(g_iw, ax1, bx1, ax2, bx2, ga0, gb0, ga2, gb2, False)
    ga1, gb1, ga3, gb3 = _extent_grad(g_ih, ay1, by1, ay2, by2, ga1, gb1, ga3, gb3, False)
    return ga0, ga1, ga2, ga3, gb0, gb1, gb2, gb3


# ================================================================ IoU matrices

@triton.jit
def _load_cols(ptr, idx, s_row, s_col, m, CT: tl.constexpr):
    p = ptr + idx * s_row
    return (tl.load(p, mask=m, other=0).to(CT), tl.load(p + s_col, mask=m, other=0).to(CT),
            tl.load(p + 2 * s_col, mask=m, other=0).to(CT), tl.load(p + 3 * s_col, mask=m, other=0).to(CT))


@triton.jit
def _iou_matrix_kernel(b1_ptr, s1b, s1n, s1c, b2_ptr, s2b, s2m, s2c, eps_ptr, out_ptr, N, M,
                       KIND: tl.constexpr, CT: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    bat = tl.program_id(2).to(tl.int64)
    rows = pid_n.to(tl.int64) * BN + tl.arange(0, BN)
    cols = pid_m.to(tl.int64) * BM + tl.arange(0, BM)
    mr = rows < N
    mc = cols < M
    eps = tl.load(eps_ptr)
    ax1, ay1, ax2, ay2 = _load_cols(b1_ptr + bat * s1b, rows, s1n, s1c, mr, CT)
    bx1, by1, bx2, by2 = _load_cols(b2_ptr + bat * s2b, cols, s2m, s2c, mc, CT)
    val = pair_iou(ax1[:, None], ay1[:, None], ax2[:, None], ay2[:, None],
                   bx1[None, :], by1[None, :], bx2[None, :], by2[None, :], eps, KIND, False)
    out = out_ptr + bat * N * M + rows[:, None] * M + cols[None, :]
    tl.store(out, val, mask=mr[:, None] & mc[None, :])


@triton.jit
def _tile(own, other, AXIS: tl.constexpr):
    """(row, column) operands of a [rows, cols] tile from the owned and the walked vectors:
    the owned side is the rows when the sum runs over the columns (AXIS 1)."""
    if AXIS == 1:
        return own[:, None], other[None, :]
    else:
        return other[:, None], own[None, :]


@triton.jit
def _iou_matrix_bwd_kernel(g_ptr, sgb, sgn, sgm, own_ptr, sob, son, soc, oth_ptr, stb, stn, stc, eps_ptr,
                           out_ptr, n_own, n_oth, KIND: tl.constexpr, CT: tl.constexpr,
                           B_OWN: tl.constexpr, B_OTH: tl.constexpr, AXIS: tl.constexpr):
    # AXIS 1: grad_boxes1[b, i] = sum over j of the a-partials (own = boxes1, rows); AXIS 0:
    # grad_boxes2[b, j] = sum over i of the b-partials (own = boxes2, columns). One program owns
    # a block of its side and walks all of the other, so every sum has a fixed order
    # (deterministic, no atomics).
    pid = tl.program_id(0).to(tl.int64)
    bat = tl.program_id(1).to(tl.int64)
    eps = tl.load(eps_ptr)
    own = pid * B_OWN + tl.arange(0, B_OWN)
    m_own = own < n_own
    ox1, oy1, ox2, oy2 = _load_cols(own_ptr + bat * sob, own, son, soc, m_own, CT)
    acc0 = tl.zeros([B_OWN], CT)
    acc1 = acc0
    acc2 = acc0
    acc3 = acc0
    for start in range(0, n_oth, B_OTH):
        idx = start + tl.arange(0, B_OTH).to(tl.int64)
        m_idx = idx < n_oth
        tx1, ty1, tx2, ty2 = _load_cols(oth_ptr + bat * stb, idx, stn, stc, m_idx, CT)
        ax1, bx1 = _tile(ox1, tx1, AXIS)
        ay1, by1 = _tile(oy1, ty1, AXIS)
        ax2, bx2 = _tile(ox2, tx2, AXIS)
        ay2, by2 = _tile(oy2, ty2, AXIS)
        rows, cols = _tile(own, idx, AXIS)
        mr, mc = _tile(m_own, m_idx, AXIS)
        msk = mr & mc
        g = tl.load(g_ptr + bat * sgb + rows * sgn + cols * sgm, mask=msk, other=0).to(CT)
        ga0, ga1, ga2, ga3, gb0, gb1, gb2, gb3 = pair_iou_backward(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2,
                                                                   eps, g, KIND, False)
        if AXIS == 0:  # the owned side is b
            ga0, ga1, ga2, ga3 = gb0, gb1, gb2, gb3
        acc0 += tl.sum(tl.where(msk, ga0, 0.0), AXIS)
        acc1 += tl.sum(tl.where(msk, ga1, 0.0), AXIS)
        acc2 += tl.sum(tl.where(msk, ga2, 0.0), AXIS)
        acc3 += tl.sum(tl.where(msk, ga3, 0.0), AXIS)
    o = out_ptr + bat * n_own * 4 + own * 4
    store_as(o, acc0, m_own)
    store_as(o + 1, acc1, m_own)
    store_as(o + 2, acc2, m_own)
    store_as(o + 3, acc3, m_own)


def _as3(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 3 else t.unsqueeze(0)


def _matrix_blocks(t: torch.Tensor, n: int, m: int):
    if interpreted(t):
        return pow2(n, 16, 128), pow2(m, 16, 256)
    return pow2(n, 16, 32), pow2(m, 16, 64)


def _eps_tensor(eps: float, ct: torch.dtype, device) -> torch.Tensor:
    return torch.tensor([float(eps)], dtype=ct, device=device)


def _iou_matrix_forward(boxes1, boxes2, kind: str, eps: float) -> torch.Tensor:
    ct = compute_dtype(boxes1)
    b1, b2 = _as3(boxes1), _as3(boxes2)
    bsz, n, m = b1.shape[0], b1.shape[1], b2.shape[1]
    out = torch.empty((bsz, n, m), dtype=ct, device=boxes1.device)
    if out.numel():
        bn, bm = _matrix_blocks(b1, n, m)
        grid = (triton.cdiv(n, bn), triton.cdiv(m, bm), bsz)
        launch(_iou_matrix_kernel, grid, b1, *b1.stride(), b2, *b2.stride(), _eps_tensor(eps, ct, b1.device),
               out, n, m, KIND=_KINDS[kind], CT=tl_dtype(ct), BN=bn, BM=bm)
    return out if boxes1.dim() == 3 else out[0]


def _iou_matrix_backward(grad, boxes1, boxes2, kind: str, eps: float):
    ct = compute_dtype(boxes1)
    b1, b2, g = _as3(boxes1), _as3(boxes2), _as3(grad)
    bsz, n, m = b1.shape[0], b1.shape[1], b2.shape[1]
    g1 = torch.empty((bsz, n, 4), dtype=boxes1.dtype, device=boxes1.device)
    g2 = torch.empty((bsz, m, 4), dtype=boxes2.dtype, device=boxes2.device)
    if n == 0 or m == 0 or bsz == 0:
        g1.zero_()
        g2.zero_()
    else:
        eps_t = _eps_tensor(eps, ct, b1.device)
        bn, bm = _matrix_blocks(b1, n, m)
        rows, cols = (b1, n, bn), (b2, m, bm)
        for axis, (own, n_own, b_own), (oth, n_oth, b_oth), out in ((1, rows, cols, g1), (0, cols, rows, g2)):
            launch(_iou_matrix_bwd_kernel, (triton.cdiv(n_own, b_own), bsz), g, *g.stride(), own, *own.stride(),
                   oth, *oth.stride(), eps_t, out, n_own, n_oth, KIND=_KINDS[kind], CT=tl_dtype(ct),
                   B_OWN=b_own, B_OTH=b_oth, AXIS=axis)
    if boxes1.dim() == 2:
        g1, g2 = g1[0], g2[0]
    return g1, g2


def _iou_autograd(name: str, forward_fn, backward_fn) -> type:
    """An autograd.Function over (boxes1, boxes2, kind, eps) from a forward launcher and its
    backward launcher: the matrix and the loss ops differ only in those two."""

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, boxes1, boxes2, kind, eps):
            ctx.save_for_backward(boxes1, boxes2)
            ctx.kind = kind
            ctx.eps = eps
            return forward_fn(boxes1, boxes2, kind, eps)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            b1, b2 = ctx.saved_tensors
            g1, g2 = backward_fn(grad, b1, b2, ctx.kind, ctx.eps)
            return (g1 if ctx.needs_input_grad[0] else None, g2 if ctx.needs_input_grad[1] else None, None, None)

    _Fn.__name__ = _Fn.__qualname__ = name
    return _Fn


_IouMatrix = _iou_autograd("_IouMatrix", _iou_matrix_forward, _iou_matrix_backward)


def box_iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Tensor[(B,) N, 4] x Tensor[(B,) M, 4] xyxy -> Tensor[(B,) N, M] of kind 'iou' | 'giou' |
    'diou' | 'ciou'; float64 for float64 input, float32 otherwise. Differentiable."""
    _checks.iou_matrix(boxes1, boxes2, kind, eps)
    return _IouMatrix.apply(boxes1, boxes2, kind, float(eps))


def _box_iou_matrix_backward(grad, boxes1, boxes2, kind: str, eps: float):
    """(grad Tensor[(B,) N, M]) -> (Tensor[(B,) N, 4], Tensor[(B,) M, 4]) in the boxes' dtype."""
    _checks.iou_matrix(boxes1, boxes2, kind, eps)
    return _iou_matrix_backward(grad, boxes1, boxes2, kind, float(eps))


# ================================================================ IoU losses (aligned pairs)

@triton.jit
def _iou_loss_kernel(b1_ptr, s1n, s1c, b2_ptr, s2n, s2c, eps_ptr, out_ptr, N,
                     KIND: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < N
    eps = tl.load(eps_ptr)
    ax1, ay1, ax2, ay2 = _load_cols(b1_ptr, rows, s1n, s1c, m, CT)
    bx1, by1, bx2, by2 = _load_cols(b2_ptr, rows, s2n, s2c, m, CT)
    val = pair_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, eps, KIND, True)
    store_as(out_ptr + rows, 1.0 - val, m)


@triton.jit
def _iou_loss_bwd_kernel(g_ptr, sg, b1_ptr, s1n, s1c, b2_ptr, s2n, s2c, eps_ptr, g1_ptr, g2_ptr, N,
                         KIND: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < N
    eps = tl.load(eps_ptr)
    ax1, ay1, ax2, ay2 = _load_cols(b1_ptr, rows, s1n, s1c, m, CT)
    bx1, by1, bx2, by2 = _load_cols(b2_ptr, rows, s2n, s2c, m, CT)
    # loss = 1 - value: the value's gradient is -grad
    g = -tl.load(g_ptr + rows * sg, mask=m, other=0).to(CT)
    ga0, ga1, ga2, ga3, gb0, gb1, gb2, gb3 = pair_iou_backward(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2,
                                                               eps, g, KIND, True)
    o1 = g1_ptr + rows * 4
    o2 = g2_ptr + rows * 4
    store_as(o1, ga0, m)
    store_as(o1 + 1, ga1, m)
    store_as(o1 + 2, ga2, m)
    store_as(o1 + 3, ga3, m)
    store_as(o2, gb0, m)
    store_as(o2 + 1, gb1, m)
    store_as(o2 + 2, gb2, m)
    store_as(o2 + 3, gb3, m)


def _iou_loss_forward(boxes1, boxes2, kind: str, eps: float) -> torch.Tensor:
    n = boxes1.shape[0]
    out = torch.empty(n, dtype=boxes1.dtype, device=boxes1.device)
    if n:
        ct = compute_dtype(boxes1)
        block = elementwise_block(boxes1, n)
        launch(_iou_loss_kernel, (triton.cdiv(n, block),), boxes1, *boxes1.stride(), boxes2, *boxes2.stride(),
               _eps_tensor(eps, ct, boxes1.device), out, n, KIND=_KINDS[kind], CT=tl_dtype(ct), BLOCK=block)
    return out


def _iou_loss_backward(grad, boxes1, boxes2, kind: str, eps: float):
    n = boxes1.shape[0]
    g1 = torch.empty((n, 4), dtype=boxes1.dtype, device=boxes1.device)
    g2 = torch.empty((n, 4), dtype=boxes2.dtype, device=boxes2.device)
    if n:
        ct = compute_dtype(boxes1)
        block = elementwise_block(boxes1, n)
        launch(_iou_loss_bwd_kernel, (triton.cdiv(n, block),), grad, grad.stride(0), boxes1, *boxes1.stride(),
               boxes2, *boxes2.stride(), _eps_tensor(eps, ct, boxes1.device), g1, g2, n,
               KIND=_KINDS[kind], CT=tl_dtype(ct), BLOCK=block)
    return g1, g2


_IouLoss = _iou_autograd("_IouLoss", _iou_loss_forward, _iou_loss_backward)


def box_iou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Aligned pairs Tensor[N, 4], Tensor[N, 4] xyxy -> loss 1 - value, Tensor[N] in the input
    dtype (computed in float32 for float16/bfloat16). Differentiable."""
    _checks.iou_loss(boxes1, boxes2, kind, eps)
    return _IouLoss.apply(boxes1, boxes2, kind, float(eps))


def _box_iou_loss_backward(grad, boxes1, boxes2, kind: str, eps: float):
    """(grad Tensor[N]) -> (Tensor[N, 4], Tensor[N, 4]) in the boxes' dtype."""
    _checks.iou_loss(boxes1, boxes2, kind, eps)
    return _iou_loss_backward(grad, boxes1, boxes2, kind, float(eps))
