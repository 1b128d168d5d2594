"""Triton box coding: encode_boxes, decode_boxes (+ its backward), linear_encode_boxes,
linear_decode_boxes. Each mirrors csrc/include/detseg/box_coder.h term for term (float64 in
float64, every other dtype in float32, outputs rounded to the input dtype)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import compute_dtype, elementwise_block, fdiv, launch, store_as, tl_dtype


@triton.jit
def _ld(ptr, row, s0, s1, col, m, CT: tl.constexpr):
    return tl.load(ptr + row * s0 + col * s1, mask=m, other=1).to(CT)


@triton.jit
def _ld4(ptr, row, s0, s1, col, m, CT: tl.constexpr):
    """The four values at columns col .. col + 3 of each row."""
    return (_ld(ptr, row, s0, s1, col, m, CT), _ld(ptr, row, s0, s1, col + 1, m, CT),
            _ld(ptr, row, s0, s1, col + 2, m, CT), _ld(ptr, row, s0, s1, col + 3, m, CT))


@triton.jit
def _lanes(n, BLOCK: tl.constexpr):
    """This program's int64 lane indices and their in-range mask."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return i, i < n


@triton.jit
def coder_params(prm_ptr, CT: tl.constexpr):
    # (wx, wy, ww, wh, clip) arrive as float64 and are rounded once to the compute type, as
    # the C++ kernels' T(w[0]) ...: a float32 kernel argument would round the float64 path.
    return (tl.load(prm_ptr).to(CT), tl.load(prm_ptr + 1).to(CT), tl.load(prm_ptr + 2).to(CT),
            tl.load(prm_ptr + 3).to(CT), tl.load(prm_ptr + 4).to(CT))


@triton.jit
def _encode_kernel(g_ptr, gs0, gs1, a_ptr, as0, as1, out_ptr, N, prm_ptr, CT: tl.constexpr, BLOCK: tl.constexpr):
    wx, wy, ww, wh, _ = coder_params(prm_ptr, CT)
    i, m = _lanes(N, BLOCK)
    ax1, ay1, ax2, ay2 = _ld4(a_ptr, i, as0, as1, 0, m, CT)
    gx1, gy1, gx2, gy2 = _ld4(g_ptr, i, gs0, gs1, 0, m, CT)
    ex_w = ax2 - ax1
    ex_h = ay2 - ay1
    ex_cx = ax1 + 0.5 * ex_w
    ex_cy = ay1 + 0.5 * ex_h
    gt_w = gx2 - gx1
    gt_h = gy2 - gy1
    gt_cx = gx1 + 0.5 * gt_w
    gt_cy = gy1 + 0.5 * gt_h
    o = out_ptr + i * 4
    store_as(o, fdiv(wx * (gt_cx - ex_cx), ex_w), m)
    store_as(o + 1, fdiv(wy * (gt_cy - ex_cy), ex_h), m)
    store_as(o + 2, ww * tl.log(fdiv(gt_w, ex_w)), m)
    store_as(o + 3, wh * tl.log(fdiv(gt_h, ex_h)), m)


@triton.jit
def decode_box(dx, dy, dw, dh, x1, y1, x2, y2, wx, wy, ww, wh, clip):
    """detseg::decode_box (csrc/include/detseg/box_coder.h) term by term: the deltas
    (dx, dy, dw, dh) against the reference box (x1, y1, x2, y2) -> the decoded xyxy box.
    Shared by the decode kernel here and multiclass_nms's."""
    w = x2 - x1
    h = y2 - y1
    cx = x1 + 0.5 * w
    cy = y1 + 0.5 * h
    dx, dy, dw, dh = fdiv(dx, wx), fdiv(dy, wy), fdiv(dw, ww), fdiv(dh, wh)
    dw = tl.where(dw > clip, clip, dw)
    dh = tl.where(dh > clip, clip, dh)
    pcx = dx * w + cx
    pcy = dy * h + cy
    hw = 0.5 * (tl.exp(dw) * w)
    hh = 0.5 * (tl.exp(dh) * h)
    return pcx - hw, pcy - hh, pcx + hw, pcy + hh


@triton.jit
def _decode_kernel(d_ptr, ds0, ds1, b_ptr, bs0, bs1, out_ptr, N, K, prm_ptr, CT: tl.constexpr, BLOCK: tl.constexpr):
    wx, wy, ww, wh, clip_ = coder_params(prm_ptr, CT)
    # one lane per (box i, delta k) pair; output Tensor[N, 4 K] contiguous
    q, m = _lanes(N * K, BLOCK)
    i = q // K
    c = (q % K) * 4
    x1, y1, x2, y2 = _ld4(b_ptr, i, bs0, bs1, 0, m, CT)
    dx, dy, dw, dh = _ld4(d_ptr, i, ds0, ds1, c, m, CT)
    o0, o1, o2, o3 = decode_box(dx, dy, dw, dh, x1, y1, x2, y2, wx, wy, ww, wh, clip_)
    o = out_ptr + i * (4 * K) + c
    store_as(o, o0, m)
    store_as(o + 1, o1, m)
    store_as(o + 2, o2, m)
    store_as(o + 3, o3, m)


@triton.jit
def _decode_bwd_kernel(g_ptr, d_ptr, b_ptr, gd_ptr, gb_ptr, N, K, prm_ptr, CT: tl.constexpr, BLOCK: tl.constexpr):
    # one lane per reference box, looping over its K deltas in order (detseg::decode_box_backward)
    i, m = _lanes(N, BLOCK)
    x1, y1, x2, y2 = _ld4(b_ptr, i, 4, 1, 0, m, CT)
    w = x2 - x1
    h = y2 - y1
    wx_, wy_, ww_, wh_, clip_ = coder_params(prm_ptr, CT)
    gb0 = tl.zeros([BLOCK], CT)
    gb1 = tl.zeros([BLOCK], CT)
    gb2 = tl.zeros([BLOCK], CT)
    gb3 = tl.zeros([BLOCK], CT)
    for k in range(0, K):
        c = i * (4 * K) + 4 * k
        g0, g1 = tl.load(g_ptr + c, mask=m, other=0).to(CT), tl.load(g_ptr + c + 1, mask=m, other=0).to(CT)
        g2, g3 = tl.load(g_ptr + c + 2, mask=m, other=0).to(CT), tl.load(g_ptr + c + 3, mask=m, other=0).to(CT)
        dx = fdiv(tl.load(d_ptr + c, mask=m, other=0).to(CT), wx_)
        dy = fdiv(tl.load(d_ptr + c + 1, mask=m, other=0).to(CT), wy_)
        dw = fdiv(tl.load(d_ptr + c + 2, mask=m, other=0).to(CT), ww_)
        dh = fdiv(tl.load(d_ptr + c + 3, mask=m, other=0).to(CT), wh_)
        pass_w = dw <= clip_
        pass_h = dh <= clip_
        ew = tl.exp(tl.where(dw > clip_, clip_, dw))
        eh = tl.exp(tl.where(dh > clip_, clip_, dh))
        g_pcx = g0 + g2
        g_pcy = g1 + g3
        g_pw = 0.5 * (g2 - g0)
        g_ph = 0.5 * (g3 - g1)
        tl.store(gd_ptr + c, fdiv(g_pcx * w, wx_), mask=m)
        tl.store(gd_ptr + c + 1, fdiv(g_pcy * h, wy_), mask=m)
        tl.store(gd_ptr + c + 2, tl.where(pass_w, fdiv(g_pw * ew * w, ww_), 0.0), mask=m)
        tl.store(gd_ptr + c + 3, tl.where(pass_h, fdiv(g_ph * eh * h, wh_), 0.0), mask=m)
        g_w = g_pcx * dx + g_pw * ew + 0.5 * g_pcx
        g_h = g_pcy * dy + g_ph * eh + 0.5 * g_pcy
        gb0 += g_pcx - g_w
        gb1 += g_pcy - g_h
        gb2 += g_w
        gb3 += g_h
    tl.store(gb_ptr + i * 4, gb0, mask=m)
    tl.store(gb_ptr + i * 4 + 1, gb1, mask=m)
    tl.store(gb_ptr + i * 4 + 2, gb2, mask=m)
    tl.store(gb_ptr + i * 4 + 3, gb3, mask=m)


@triton.jit
def _linear_kernel(a_ptr, as0, as1, b_ptr, bs0, bs1, out_ptr, N, NORM: tl.constexpr, ENCODE: tl.constexpr,
                   CT: tl.constexpr, BLOCK: tl.constexpr):
    # encode: a = anchors, b = targets; decode: a = (l, t, r, b) codes, b = anchors
    i, m = _lanes(N, BLOCK)
    a0, a1, a2, a3 = _ld4(a_ptr, i, as0, as1, 0, m, CT)
    b0, b1, b2, b3 = _ld4(b_ptr, i, bs0, bs1, 0, m, CT)
    o = out_ptr + i * 4
    if ENCODE:
        cx = 0.5 * (a0 + a2)
        cy = 0.5 * (a1 + a3)
        r0, r1, r2, r3 = cx - b0, cy - b1, b2 - cx, b3 - cy
        if NORM:
            w = a2 - a0
            h = a3 - a1
            r0, r1, r2, r3 = fdiv(r0, w), fdiv(r1, h), fdiv(r2, w), fdiv(r3, h)
    else:
        cx = 0.5 * (b0 + b2)
        cy = 0.5 * (b1 + b3)
        if NORM:
            w = b2 - b0
            h = b3 - b1
            a0, a1, a2, a3 = a0 * w, a1 * h, a2 * w, a3 * h
        r0, r1, r2, r3 = cx - a0, cy - a1, cx + a2, cy + a3
    store_as(o, r0, m)
    store_as(o + 1, r1, m)
    store_as(o + 2, r2, m)
    store_as(o + 3, r3, m)


def _prm(weights, clip: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([*weights, float(clip)], dtype=torch.float64, device=like.device)


def encode_boxes(reference_boxes: torch.Tensor, proposals: torch.Tensor, weights) -> torch.Tensor:
    """Targets Tensor[N, 4] against anchors Tensor[N, 4] -> Tensor[N, 4] (see reference)."""
    _checks.encode_boxes(reference_boxes, proposals, weights)
    weights = _checks.coder_weights("encode_boxes", weights)
    n = reference_boxes.shape[0]
    out = torch.empty((n, 4), dtype=reference_boxes.dtype, device=reference_boxes.device)
    if n:
        g, a = reference_boxes, proposals
        block = elementwise_block(g, n)
        ct = tl_dtype(compute_dtype(g))
        launch(_encode_kernel, (triton.cdiv(n, block),), g, g.stride(0), g.stride(1), a, a.stride(0), a.stride(1),
               out, n, _prm(weights, 0.0, g), CT=ct, BLOCK=block)
    return out


def _decode(rel_codes, boxes, weights, clip):
    n, k4 = rel_codes.shape
    out = torch.empty((n, k4), dtype=rel_codes.dtype, device=rel_codes.device)
    if out.numel():
        b = boxes.to(rel_codes.dtype)
        k = k4 // 4
        block = elementwise_block(rel_codes, n * k)
        launch(_decode_kernel, (triton.cdiv(n * k, block),), rel_codes, rel_codes.stride(0), rel_codes.stride(1),
               b, b.stride(0), b.stride(1), out, n, k, _prm(weights, clip, rel_codes),
               CT=tl_dtype(compute_dtype(rel_codes)), BLOCK=block)
    return out


def _decode_boxes_backward(grad, rel_codes, boxes, weights, bbox_xform_clip):
    """(d rel_codes Tensor[N, 4 K], d boxes Tensor[N, 4]) of decode_boxes."""
    _checks.decode_boxes_backward(grad, rel_codes, boxes, weights, bbox_xform_clip)
    w = _checks.coder_weights("_decode_boxes_backward", weights)
    ct = compute_dtype(rel_codes)
    n, k4 = rel_codes.shape
    gd = torch.empty((n, k4), dtype=ct, device=rel_codes.device)
    gb = torch.zeros((n, 4), dtype=ct, device=rel_codes.device)
    if gd.numel():
        d = rel_codes.to(ct).contiguous()
        b = boxes.to(rel_codes.dtype).to(ct).contiguous()
        g = grad.to(ct).contiguous()
        block = elementwise_block(d, n)
        launch(_decode_bwd_kernel, (triton.cdiv(n, block),), g, d, b, gd, gb, n, k4 // 4,
               _prm(w, bbox_xform_clip, d), CT=tl_dtype(ct), BLOCK=block)
    return gd.to(rel_codes.dtype), gb.to(rel_codes.dtype).to(boxes.dtype)


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rel_codes, boxes, weights, clip):
        ctx.save_for_backward(rel_codes, boxes)
        ctx.weights, ctx.clip = weights, clip
        return _decode(rel_codes, boxes, weights, clip)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rel_codes, boxes = ctx.saved_tensors
        gd, gb = _decode_boxes_backward(grad, rel_codes, boxes, list(ctx.weights), ctx.clip)
        return gd, gb, None, None


def decode_boxes(rel_codes: torch.Tensor, boxes: torch.Tensor, weights, bbox_xform_clip: float) -> torch.Tensor:
    """Deltas Tensor[N, 4 K] against Tensor[N, 4] -> boxes Tensor[N, 4 K] (see reference)."""
    _checks.decode_boxes(rel_codes, boxes, weights, bbox_xform_clip)
    w = _checks.coder_weights("decode_boxes", weights)
    return _Decode.apply(rel_codes, boxes, w, float(bbox_xform_clip))


def _linear(op: str, a: torch.Tensor, b: torch.Tensor, normalize_by_size: bool, encode: bool) -> torch.Tensor:
    _checks.linear_boxes(op, a, b)
    n = a.shape[0]
    out = torch.empty((n, 4), dtype=a.dtype, device=a.device)
    if n:
        b = b.to(a.dtype)
        block = elementwise_block(a, n)
        launch(_linear_kernel, (triton.cdiv(n, block),), a, a.stride(0), a.stride(1), b, b.stride(0), b.stride(1),
               out, n, NORM=bool(normalize_by_size), ENCODE=encode, CT=tl_dtype(compute_dtype(a)), BLOCK=block)
    return out


def linear_encode_boxes(reference_boxes, proposals, normalize_by_size: bool) -> torch.Tensor:
    """Anchors Tensor[N, 4], targets Tensor[N, 4] -> (l, t, r, b) Tensor[N, 4]."""
    return _linear("linear_encode_boxes", reference_boxes, proposals, normalize_by_size, True)


class _LinearDecode(torch.autograd.Function):
    # linear in both inputs: the backward is the reference formula's vector-Jacobian product
    @staticmethod
    def forward(ctx, rel_codes, boxes, normalize_by_size):
        ctx.save_for_backward(rel_codes, boxes)
        ctx.norm = normalize_by_size
        return _linear("linear_decode_boxes", rel_codes, boxes, normalize_by_size, False)

    @staticmethod
    def backward(ctx, grad):
        from .. import reference

        with torch.enable_grad():
            xs = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
            y = reference.linear_decode_boxes(*xs, ctx.norm)
            gd, gb = torch.autograd.grad(y, xs, grad.to(y.dtype))
        return gd, gb, None


def linear_decode_boxes(rel_codes, boxes, normalize_by_size: bool) -> torch.Tensor:
    """(l, t, r, b) Tensor[N, 4] against anchors Tensor[N, 4] -> xyxy Tensor[N, 4]."""
    return _LinearDecode.apply(rel_codes, boxes, bool(normalize_by_size))
