"""Triton roi_pool (max, with argmax) and ps_roi_pool (average), forward and backward.

The quantisation mirrors csrc/include/detseg/roi_pool.h term for term: `pool_geom` is
detseg::roi_pool_geom (corners clamped to +-2^30 and rounded half away from zero, extent
max(end - start + 1, 1) for roi_pool and max(end - start, 1) for ps_roi_pool, bin size
computed in the compute type), `pool_bin` is detseg::roi_pool_bin, and the max keeps the first
maximum in row-major order with NaN winning (detseg::pool_takes). A non-finite RoI has empty
bins: output 0, argmax -1.

Program shapes and the two backward paths are those of roi_align.py: roi_pool's gather adds
each bin's gradient at its argmax pixel, ps_roi_pool's spreads g / area over the bin.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._registrations.roi import _backward_checks
from ..ops import _checks
from ._roi import (as_type, by_batch, channel_offsets, device_fn, fdiv, fwd_blocks, gather_blocks, gather_rows,
                   gather_tile, out_format, ps_backward_checks, ps_mapping, roi_rows, row_tile, scale_tensor,
                   store_as, store_tile, use_atomics)
from ._utils import compute_dtype, launch, pow2, tl_dtype


@device_fn
def _corner(v):
    # detseg::roi_pool_corner: clamp to +-2^30, then std::round (half away from zero); v - trunc(v)
    # is exact, so the tie test is too.
    v = tl.where(v < -1073741824.0, -1073741824.0, tl.where(v > 1073741824.0, 1073741824.0, v))
    t = v.to(tl.int64)
    f = v - t.to(v.dtype)
    return t + tl.where(f >= 0.5, 1, 0) - tl.where(f <= -0.5, 1, 0)


@device_fn
def pool_geom(r_ptr, k, scale, ph, pw, PS: tl.constexpr, CT: tl.constexpr):
    """detseg::roi_pool_geom (roi_pool.h) of RoI row k: (batch, finite, start_h, start_w, bin_h, bin_w);
    PS: extent end - start (ps_roi_pool), else end - start + 1 (roi_pool)."""
    row = r_ptr + k * 5
    b = tl.load(row).to(tl.int64)
    x1 = tl.load(row + 1) * scale
    y1 = tl.load(row + 2) * scale
    x2 = tl.load(row + 3) * scale
    y2 = tl.load(row + 4) * scale
    finite = (x1 - x1 == 0.0) & (y1 - y1 == 0.0) & (x2 - x2 == 0.0) & (y2 - y2 == 0.0)
    sw = _corner(tl.where(finite, x1, 0.0))
    sh = _corner(tl.where(finite, y1, 0.0))
    ew = _corner(tl.where(finite, x2, 0.0))
    eh = _corner(tl.where(finite, y2, 0.0))
    if PS:
        one = 0
    else:
        one = 1
    roi_w = tl.maximum(ew - sw + one, 1)
    roi_h = tl.maximum(eh - sh + one, 1)
    bin_h = fdiv(roi_h.to(CT), as_type(ph, CT))
    bin_w = fdiv(roi_w.to(CT), as_type(pw, CT))
    return b, finite, sh, sw, bin_h, bin_w


@device_fn
def pool_bin(start, bin_, p, size, finite):
    """detseg::roi_pool_bin: [lo, hi) of bins p along one axis, clipped to [0, size]; empty for
    a non-finite RoI."""
    pf = p.to(bin_.dtype)
    lo = tl.floor(pf * bin_).to(tl.int64) + start
    hi = tl.ceil((pf + 1.0) * bin_).to(tl.int64) + start
    lo = tl.minimum(tl.maximum(lo, 0), size)
    hi = tl.minimum(tl.maximum(hi, 0), size)
    return tl.where(finite, lo, 0), tl.where(finite, hi, 0)


@device_fn
def _extent(bin_, size, finite):
    # Loop bound over the pixels of a bin: ceil((p + 1) b) - floor(p b) <= ceil(b) + 1, and
    # clipping keeps it within the map.
    e = tl.minimum(tl.ceil(bin_).to(tl.int64) + 1, size)
    return tl.where(finite, e, 0)


# ================================================================ forward

@triton.jit
def _pool_fwd_kernel(x_ptr, sxn, sxc, sxh, sxw, r_ptr, scale_ptr, out_ptr, son, soc, soh, sow,
                     arg_ptr, sak, sac, sah, saw, K, C, H, W, ph, pw,
                     PS: tl.constexpr, CT: tl.constexpr, PB: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    # Program (block of RoIs, block of output channels) over a [(RoI, bin), channel] tile, as
    # roi_align's forward. roi_pool: max and argmax (plane index h * W + w), pixels visited in
    # row-major order; PS: the mean of the bin of the mapped channel.
    k, _, p, q, rm = row_tile(tl.program_id(0), K, ph, pw, PB, BK)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    m = rm[:, None] & (c < C)[None, :]
    scale = tl.load(scale_ptr)
    b, finite, sh, sw, bin_h, bin_w = pool_geom(r_ptr, k, scale, ph, pw, PS, CT)
    finite = finite & rm
    h0, h1 = pool_bin(sh, bin_h, p, H, finite)
    w0, w1 = pool_bin(sw, bin_w, q, W, finite)
    base = x_ptr + b[:, None] * sxn + channel_offsets(c, p, q, ph, pw, PS) * sxc
    acc = tl.full([BK * PB, BC], 0, CT)
    arg = tl.full([BK * PB, BC], -1, tl.int64)
    for dh in range(0, tl.max(_extent(bin_h, H, finite), 0)):
        h = h0 + dh
        hin = h < h1
        for dw in range(0, tl.max(_extent(bin_w, W, finite), 0)):
            w = w0 + dw
            inside = (hin & (w < w1))[:, None] & m
            v = tl.load(base + (h * sxh + w * sxw)[:, None], mask=inside, other=0).to(CT)
            if PS:
                acc = tl.where(inside, acc + v, acc)
            else:
                takes = inside & ((arg < 0) | (v > acc) | ((v != v) & (acc == acc)))
                acc = tl.where(takes, v, acc)
                arg = tl.where(takes, (h * W + w)[:, None], arg)
    if PS:
        area = ((h1 - h0) * (w1 - w0))[:, None]
        acc = tl.where(area > 0, fdiv(acc, tl.maximum(area, 1).to(CT)), 0.0)
    optr = out_ptr + k[:, None] * son + c[None, :] * soc + p[:, None] * soh + q[:, None] * sow
    store_as(optr, acc, m)
    if not PS:
        tl.store(arg_ptr + k[:, None] * sak + c[None, :] * sac + p[:, None] * sah + q[:, None] * saw, arg, mask=m)


def _pool_forward(input, rois, spatial_scale, cout, ph, pw, ps, out, arg):
    K = rois.shape[0]
    H, W = input.shape[2:]
    ct = compute_dtype(input)
    pb, bk, bc = fwd_blocks(input, ph * pw, K, cout)
    launch(_pool_fwd_kernel, (triton.cdiv(K, bk), triton.cdiv(cout, bc)), input, *input.stride(), roi_rows(rois, ct),
           scale_tensor(spatial_scale, ct, input.device), out, *out.stride(), arg, *arg.stride(), K, cout, H, W, ph, pw,
           PS=bool(ps), CT=tl_dtype(ct), PB=pb, BK=bk, BC=bc)


# ================================================================ backward

@triton.jit
def _pool_bwd_gather_kernel(g_ptr, sgk, sgc, sgh, sgw, r_ptr, scale_ptr, order_ptr, seg_ptr,
                            a_ptr, sak, sac, sah, saw, out_ptr, son, soc, soh, sow, n_cb, C, H, W, ph, pw,
                            PS: tl.constexpr, CT: tl.constexpr, PB: tl.constexpr, RB: tl.constexpr,
                            TH: tl.constexpr, TW: tl.constexpr, BC: tl.constexpr):
    # A [input channel, pixel] tile of image b; its RoIs RB at a time, in RoI order (rows as in
    # roi_align's gather).
    b, c, cm, y, x = gather_tile(tl.program_id(0), n_cb, C, TH, TW, BC)
    c0 = (tl.program_id(0) % n_cb) * BC
    scale = tl.load(scale_ptr)
    acc = tl.full([BC, TH * TW], 0, CT)
    s_end = tl.load(seg_ptr + b + 1)
    for s in range(tl.load(seg_ptr + b), s_end, RB):
        k, p, q, cg, m = gather_rows(order_ptr, s, s_end, C, c0, ph, pw, PS, PB, RB, BC)
        if PS:
            _, finite, sh, sw, bin_h, bin_w = pool_geom(r_ptr, k, scale, ph, pw, True, CT)
            h0, h1 = pool_bin(sh, bin_h, p, H, finite)
            w0, w1 = pool_bin(sw, bin_w, q, W, finite)
            area = (h1 - h0) * (w1 - w0)
            g = tl.load(g_ptr + k * sgk + cg * sgc + p * sgh + q * sgw, mask=m, other=0).to(CT)
            d = fdiv(g, tl.maximum(area, 1).to(CT))[:, None]
            inb = ((y[None, :] >= h0[:, None]) & (y[None, :] < h1[:, None]) & (x[None, :] >= w0[:, None])
                   & (x[None, :] < w1[:, None]) & (m & (area > 0))[:, None])
            acc += tl.sum(tl.reshape(tl.where(inb, d, 0.0), (RB, BC, TH * TW)), axis=0)
        else:
            gm = m[:, None] & cm[None, :]
            a = tl.load(a_ptr + k[:, None] * sak + c[None, :] * sac + (p * sah + q * saw)[:, None], mask=gm,
                        other=-1)
            g = tl.load(g_ptr + k[:, None] * sgk + c[None, :] * sgc + (p * sgh + q * sgw)[:, None], mask=gm, other=0)
            pix = (y.to(tl.int64) * W + x)[None, None, :]
            acc += tl.sum(tl.where(a[:, :, None] == pix, g.to(CT)[:, :, None], 0.0), axis=0)
    store_tile(out_ptr, son, soc, soh, sow, b, c, cm, y, x, H, W, acc)


@triton.jit
def _pool_bwd_atomic_kernel(g_ptr, sgk, sgc, sgh, sgw, r_ptr, scale_ptr, a_ptr, sak, sac, sah, saw,
                            buf_ptr, sbn, sbc, sbh, sbw, K, C, H, W, ph, pw,
                            PS: tl.constexpr, CT: tl.constexpr, PB: tl.constexpr, BK: tl.constexpr,
                            BC: tl.constexpr):
    k, _, p, q, rm = row_tile(tl.program_id(0), K, ph, pw, PB, BK)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    m = rm[:, None] & (c < C)[None, :]
    scale = tl.load(scale_ptr)
    b, finite, sh, sw, bin_h, bin_w = pool_geom(r_ptr, k, scale, ph, pw, PS, CT)
    base = buf_ptr + b[:, None] * sbn + channel_offsets(c, p, q, ph, pw, PS) * sbc
    g = tl.load(g_ptr + k[:, None] * sgk + c[None, :] * sgc + p[:, None] * sgh + q[:, None] * sgw, mask=m,
                other=0).to(CT)
    if PS:
        finite = finite & rm
        h0, h1 = pool_bin(sh, bin_h, p, H, finite)
        w0, w1 = pool_bin(sw, bin_w, q, W, finite)
        d = fdiv(g, tl.maximum((h1 - h0) * (w1 - w0), 1).to(CT)[:, None])
        for dh in range(0, tl.max(_extent(bin_h, H, finite), 0)):
            h = h0 + dh
            for dw in range(0, tl.max(_extent(bin_w, W, finite), 0)):
                w = w0 + dw
                inside = ((h < h1) & (w < w1))[:, None] & m
                tl.atomic_add(base + (h * sbh + w * sbw)[:, None], d, mask=inside, sem="relaxed")
    else:
        a = tl.load(a_ptr + k[:, None] * sak + c[None, :] * sac + p[:, None] * sah + q[:, None] * saw, mask=m,
                    other=-1)
        am = m & (a >= 0)
        a = tl.where(am, a, 0)
        tl.atomic_add(base + (a // W) * sbh + (a % W) * sbw, g, mask=am, sem="relaxed")


def _pool_backward(grad, rois, arg, spatial_scale, n, c, h, w, ph, pw, ps, out_fmt):
    """Input gradient Tensor[n, c, h, w] (grad's dtype, out_fmt) of roi_pool (arg: its argmax)
    or ps_roi_pool (arg unused)."""
    K = rois.shape[0]
    if K == 0 or min(n, c, h, w) == 0:
        return torch.zeros((n, c, h, w), dtype=grad.dtype, device=grad.device).contiguous(memory_format=out_fmt)
    ct = compute_dtype(grad)
    rows = roi_rows(rois, ct)
    scale = scale_tensor(spatial_scale, ct, grad.device)
    cout = grad.shape[1]
    pb = pow2(ph * pw, 1, 1 << 20)
    if use_atomics(grad):
        buf = torch.zeros((n, c, h, w), dtype=ct, device=grad.device).contiguous(memory_format=out_fmt)
        pb, bk, bc = fwd_blocks(grad, ph * pw, K, cout)
        launch(_pool_bwd_atomic_kernel, (triton.cdiv(K, bk), triton.cdiv(cout, bc)), grad, *grad.stride(), rows,
               scale, arg, *arg.stride(), buf, *buf.stride(), K, cout, h, w, ph, pw, PS=bool(ps), CT=tl_dtype(ct),
               PB=pb, BK=bk, BC=bc)
        return buf if buf.dtype == grad.dtype else buf.to(grad.dtype)
    out = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=out_fmt)
    order, seg = by_batch(rows, n)
    th, tw, bc, rb = gather_blocks(grad, h, w, c, K, 1 if ps else pb)
    n_cb = triton.cdiv(c, bc)
    launch(_pool_bwd_gather_kernel, (n * n_cb, triton.cdiv(h, th), triton.cdiv(w, tw)), grad, *grad.stride(), rows,
           scale, order, seg, arg, *arg.stride(), out, *out.stride(), n_cb, c, h, w, ph, pw, PS=bool(ps),
           CT=tl_dtype(ct), PB=pb, RB=rb, TH=th, TW=tw, BC=bc)
    return out


# ================================================================ roi_pool ops

class _Pool(torch.autograd.Function):
    """roi_pool (ps False: bin max, int64 argmax alongside) and ps_roi_pool (ps True: bin mean,
    the channel mapping alongside); the second output is not differentiable."""

    @staticmethod
    def forward(ctx, input, rois, spatial_scale, ph, pw, ps):
        N, C, H, W = input.shape
        K = rois.shape[0]
        if ps:
            cout = C // (ph * pw)
            out = torch.zeros((K, cout, ph, pw), dtype=input.dtype, device=input.device)
            aux = ps_mapping(K, cout, ph, pw, input.device)
        else:
            cout = C
            fmt = out_format(_checks.roi_channels_last(input))
            out = torch.zeros((K, C, ph, pw), dtype=input.dtype, device=input.device).contiguous(memory_format=fmt)
            aux = torch.full((K, C, ph, pw), -1, dtype=torch.int64, device=input.device).contiguous(memory_format=fmt)
        # an empty map (H or W = 0) clips every bin to empty: 0 and argmax -1
        if K and cout and H and W:
            _pool_forward(input, rois, spatial_scale, cout, ph, pw, ps, out, out if ps else aux)
        ctx.save_for_backward(rois, aux)
        ctx.mark_non_differentiable(aux)
        ctx.args = (spatial_scale, ph, pw, N, C, H, W)
        ctx.ps = ps
        return out, aux

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _grad_aux):
        rois, aux = ctx.saved_tensors
        backward = _ps_roi_pool_backward if ctx.ps else _roi_pool_backward
        return backward(grad, rois, aux, *ctx.args), None, None, None, None, None


def roi_pool(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
             pooled_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C, H, W], rois Tensor[K, 5] -> (Tensor[K, C, ph, pw], argmax int64
    Tensor[K, C, ph, pw]), channels-last when input is. Differentiable in input."""
    _checks.roi_pool(input, rois, spatial_scale, pooled_height, pooled_width)
    _checks.roi_batch_indices("roi_pool", rois, input.shape[0])
    return _Pool.apply(input, rois, float(spatial_scale), int(pooled_height), int(pooled_width), False)


def _roi_pool_backward(grad: torch.Tensor, rois: torch.Tensor, argmax: torch.Tensor, spatial_scale: float,
                       pooled_height: int, pooled_width: int, batch_size: int, channels: int, height: int,
                       width: int) -> torch.Tensor:
    """grad Tensor[K, C, ph, pw] -> Tensor[batch_size, C, height, width] in grad's dtype,
    channels-last when grad is: each bin's gradient goes to its argmax pixel."""
    op = "_roi_pool_backward"
    ph, pw = int(pooled_height), int(pooled_width)
    n, c, h, w = int(batch_size), int(channels), int(height), int(width)
    _backward_checks(op, grad, rois, spatial_scale, ph, pw, n, c, h, w)
    if argmax.shape != grad.shape:
        _checks.fail(op, f"argmax must have the shape of grad {list(grad.shape)}, got {list(argmax.shape)}")
    if argmax.dtype != torch.int64:
        _checks.fail(op, f"argmax must be an int64 tensor, got {argmax.dtype}", TypeError)
    _checks.roi_batch_indices(op, rois, n)
    if argmax.numel():
        bad = argmax >= h * w
        if bool(bad.any()):
            v = int(argmax[bad][0])
            _checks.fail(op, f"argmax must hold -1 or plane indices in [0, {h * w}), got {v}")
    return _pool_backward(grad, rois, argmax, spatial_scale, n, c, h, w, ph, pw, False,
                          out_format(_checks.roi_channels_last(grad)))


# ================================================================ ps_roi_pool ops

def ps_roi_pool(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                pooled_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C_out * ph * pw, H, W], rois Tensor[K, 5] -> (Tensor[K, C_out, ph, pw],
    channel_mapping int64 Tensor[K, C_out, ph, pw]): the mean of each quantised bin. Differentiable."""
    op = "ps_roi_pool"
    ph, pw = int(pooled_height), int(pooled_width)
    _checks.roi_args(op, input, rois, spatial_scale, ph, pw)
    _checks.ps_roi_channels(op, input.shape[1], ph, pw)
    _checks.roi_batch_indices(op, rois, input.shape[0])
    return _Pool.apply(input, rois, float(spatial_scale), ph, pw, True)


def _ps_roi_pool_backward(grad: torch.Tensor, rois: torch.Tensor, channel_mapping: torch.Tensor,
                          spatial_scale: float, pooled_height: int, pooled_width: int, batch_size: int,
                          channels: int, height: int, width: int) -> torch.Tensor:
    """grad Tensor[K, C_out, ph, pw] -> Tensor[batch_size, channels, height, width] (NCHW, grad's
    dtype): each bin's gradient spread evenly over its pixels."""
    op = "_ps_roi_pool_backward"
    ph, pw = int(pooled_height), int(pooled_width)
    n, c, h, w = int(batch_size), int(channels), int(height), int(width)
    ps_backward_checks(op, grad, rois, channel_mapping, spatial_scale, ph, pw, n, c, h, w)
    return _pool_backward(grad, rois, grad, spatial_scale, n, c, h, w, ph, pw, True, torch.contiguous_format)
