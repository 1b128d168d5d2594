"""Triton roi_align (average and max pool modes) and ps_roi_align, forward and backward.

The pixel model mirrors csrc/include/detseg/roi_align.h term for term: `align_geom` is
detseg::roi_align_geom + roi_grid, `axis_sample` is detseg::axis_sample, the sample position
is detseg::roi_sample_pos, and the bilinear value is w1 v1 + w2 v2 + w3 v3 + w4 v4 in that
order with torchvision's weights (hy hx, hy lx, ly hx, ly lx). float16 / bfloat16 are read
into float32, float64 is computed in float64; every division is IEEE-rounded (`fdiv`).

Forward: one program per (block of RoIs, block of channels); the rows of its tile are
(RoI, bin) pairs, the columns channels. The sample loops run to the block's largest
(adaptive) grid, each row taking only its own samples. A GPU launch uses one RoI per block;
the interpreter, whose cost is per op rather than per element, many. Input and output are
addressed through strides, so NCHW and channels-last input need no copy, and the output is
channels-last when the input is (the C++ kernels' rule, `_checks.roi_channels_last`).

Backward, two paths (`_roi.use_atomics`):
  - atomic (CUDA, unless torch.use_deterministic_algorithms(True)): the forward's program
    shape, scattering each sample's four corner terms g * w / count with tl.atomic_add into a
    float32 / float64 buffer (the summation order is then up to the hardware);
  - deterministic (torch.are_deterministic_algorithms_enabled(), and always under the CPU
    interpreter): a gather. A program owns a [channels, pixel tile] block of one batch image's
    gradient, accumulates it in registers in the compute type and stores it once. It walks the
    RoIs of that image (grouped by a stable sort of the batch indices, no host sync) in RoI
    order, RB at a time (1 on a GPU, where a RoI whose sample footprint misses the tile costs
    a few scalar ops); contributions of one step are summed by a fixed reduction tree.
    Average mode uses that bilinear sampling is separable: bin (p, q) puts
    g / count * Ay[p, y] * Ax[q, x] on pixel (y, x), Ay / Ax being the summed y- / x-axis
    weights of its valid samples, so no per-sample scatter is needed. Max mode uses each bin's
    winning sample (kept by the forward, or recomputed from the input by
    _roi_align_backward): its four corner terms. No atomics, no float32 copy of the gradient,
    nothing of size RoIs x C x H x W, the same bits on every run and in either layout.
    "Touched" masks keep a non-finite incoming gradient on the pixels its samples touch, as
    the scatter does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._registrations.roi import _backward_checks
from ..ops import _checks
from ._roi import (as_type, by_batch, channel_offsets, device_fn, dmax, dmin, fdiv, fwd_blocks, gather_blocks,
                   gather_rows, gather_tile, out_format, ps_backward_checks, ps_mapping, roi_rows, row_tile,
                   scale_tensor, store_as, store_tile, use_atomics)
from ._utils import compute_dtype, launch, pow2, tl_dtype

@device_fn
def roi_grid(sampling_ratio, roi_size, pooled_f):
    """detseg::roi_grid (roi_align.h): samples per bin; adaptive ceil(size / pooled) with NaN,
    +-inf and non-positive counts -> 0, capped at kRoiMaxGrid."""
    g = tl.ceil(fdiv(roi_size, pooled_f))
    g = tl.where((g > 0.0) & (g - g == 0.0), g, 0.0)
    g = tl.where(g < 65536.0, g, 65536.0)
    sr = as_type(sampling_ratio, tl.int32)
    return tl.where(sr > 0, sr, g.to(tl.int32))


@device_fn
def align_geom(r_ptr, k, scale, ph, pw, sampling_ratio, ALIGNED: tl.constexpr, CT: tl.constexpr):
    """detseg::roi_align_geom (roi_align.h) of RoI row k (batch, x1, y1, x2, y2):
    (batch, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count)."""
    row = r_ptr + k * 5
    b = tl.load(row).to(tl.int64)
    if ALIGNED:
        off = 0.5
    else:
        off = 0.0
    start_w = tl.load(row + 1) * scale - off
    start_h = tl.load(row + 2) * scale - off
    end_w = tl.load(row + 3) * scale - off
    end_h = tl.load(row + 4) * scale - off
    roi_w = end_w - start_w
    roi_h = end_h - start_h
    if not ALIGNED:
        # a NaN size stays NaN (the RoI then outputs 0)
        roi_w = tl.where(roi_w < 1.0, 1.0, roi_w)
        roi_h = tl.where(roi_h < 1.0, 1.0, roi_h)
    phf = as_type(ph, CT)
    pwf = as_type(pw, CT)
    bin_h = fdiv(roi_h, phf)
    bin_w = fdiv(roi_w, pwf)
    gh = roi_grid(sampling_ratio, roi_h, phf)
    gw = roi_grid(sampling_ratio, roi_w, pwf)
    count = tl.where((gh > 0) & (gw > 0), gh.to(CT) * gw.to(CT), 1.0)
    return b, start_h, start_w, bin_h, bin_w, gh, gw, count


@device_fn
def bin_origin(start, bin_, p):
    """start + p * bin: the first two terms of detseg::roi_sample_pos for bins p, evaluated once
    per bin (the header sums left to right, so the value is the same)."""
    return start + p.to(start.dtype) * bin_


@device_fn
def sample_pos(origin, bin_, i_f, grid_f):
    """detseg::roi_sample_pos: origin + (i + 0.5) * bin / grid (i_f: the sample index in the
    compute type)."""
    return origin + fdiv((i_f + 0.5) * bin_, grid_f)


@device_fn
def axis_sample(v, size):
    """detseg::axis_sample (roi_align.h): (lo, hi, l, h, valid). Outside [-1, size] (NaN
    included) the sample is invalid with lo = hi = 0 and l = h = 0."""
    valid = (v >= -1.0) & (v <= size)
    v = tl.where(valid, v, 0.0)
    v = tl.where(v <= 0.0, 0.0, v)
    lo = v.to(tl.int32)
    last = lo >= size - 1
    lo = tl.where(last, size - 1, lo)
    hi = tl.where(last, lo, lo + 1)
    v = tl.where(last, lo.to(v.dtype), v)
    l_ = tl.where(valid, v - lo.to(v.dtype), 0.0)
    h_ = tl.where(valid, 1.0 - l_, 0.0)
    lo = tl.where(valid, lo, 0)
    hi = tl.where(valid, hi, 0)
    return lo, hi, l_, h_, valid


@device_fn
def _bilinear_sample(rlo, rhi, sw, ly, hy, xlo, xhi, lx, hx, mask, CT: tl.constexpr):
    """detseg::bilinear_value(bilinear(y, x), v1..v4) of a [bins] x [channels] tile: rlo / rhi
    point at the two input rows of each bin's y-axis sample, xlo.. is the x-axis sample."""
    clo = xlo.to(tl.int64)[:, None] * sw
    chi = xhi.to(tl.int64)[:, None] * sw
    v1 = tl.load(rlo + clo, mask=mask, other=0).to(CT)
    v2 = tl.load(rlo + chi, mask=mask, other=0).to(CT)
    v3 = tl.load(rhi + clo, mask=mask, other=0).to(CT)
    v4 = tl.load(rhi + chi, mask=mask, other=0).to(CT)
    w1 = (hy * hx)[:, None]
    w2 = (hy * lx)[:, None]
    w3 = (ly * hx)[:, None]
    w4 = (ly * lx)[:, None]
    return w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4


# ================================================================ forward

@triton.jit
def _row_block(r_ptr, scale_ptr, K, C, ph, pw, sampling_ratio, ALIGNED: tl.constexpr, CT: tl.constexpr,
               PB: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    # The (block of RoIs, block of channels) program's rows, channels, mask and each row's
    # sampling geometry; rows past K get empty sample grids.
    k, t, p, q, rm = row_tile(tl.program_id(0), K, ph, pw, PB, BK)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    m = rm[:, None] & (c < C)[None, :]
    scale = tl.load(scale_ptr)
    b, start_h, start_w, bin_h, bin_w, gh, gw, count = align_geom(r_ptr, k, scale, ph, pw, sampling_ratio,
                                                                  ALIGNED, CT)
    gh = tl.where(rm, gh, 0)
    gw = tl.where(rm, gw, 0)
    return k, t, p, q, rm, c, m, b, start_h, start_w, bin_h, bin_w, gh, gw, count


@triton.jit
def _align_fwd_kernel(x_ptr, sxn, sxc, sxh, sxw, r_ptr, scale_ptr, out_ptr, son, soc, soh, sow, arg_ptr,
                      K, C, H, W, ph, pw, sampling_ratio,
                      ALIGNED: tl.constexpr, MAX: tl.constexpr, PS: tl.constexpr, STORE_ARG: tl.constexpr,
                      CT: tl.constexpr, PB: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    # Program (block of RoIs, block of output channels) over a [(RoI, bin), channel] tile. The
    # sample loops run to the block's largest grid; a row takes samples i < its own grid_h,
    # j < its grid_w, in (i, j) order. MAX follows detseg::max_takes (first sample, greater, or
    # NaN over a number; an invalid sample counts as 0). STORE_ARG writes the winning sample
    # i * grid_w + j (-1 for none, or when an invalid sample won) for the backward.
    k, t, p, q, rm, c, m, b, start_h, start_w, bin_h, bin_w, gh, gw, count = _row_block(
        r_ptr, scale_ptr, K, C, ph, pw, sampling_ratio, ALIGNED, CT, PB, BK, BC)
    base = x_ptr + b[:, None] * sxn + channel_offsets(c, p, q, ph, pw, PS) * sxc
    ghf = gh.to(CT)
    gwf = gw.to(CT)
    org_h = bin_origin(start_h, bin_h, p)
    org_w = bin_origin(start_w, bin_w, q)
    acc = tl.full([BK * PB, BC], 0, CT)
    arg = tl.full([BK * PB, BC], -1, tl.int64)
    for i in range(0, tl.max(gh, 0)):
        ylo, yhi, ly, hy, vy = axis_sample(sample_pos(org_h, bin_h, as_type(i, CT), ghf), H)
        i_in = i < gh
        rlo = base + (ylo.to(tl.int64) * sxh)[:, None]
        rhi = base + (yhi.to(tl.int64) * sxh)[:, None]
        for j in range(0, tl.max(gw, 0)):
            xlo, xhi, lx, hx, vx = axis_sample(sample_pos(org_w, bin_w, as_type(j, CT), gwf), W)
            s_in = (i_in & (j < gw))[:, None]
            valid = (vy & vx)[:, None] & s_in
            val = _bilinear_sample(rlo, rhi, sxw, ly, hy, xlo, xhi, lx, hx, m & valid, CT)
            if MAX:
                v = tl.where(valid, val, 0.0)
                first = (as_type(i, tl.int32) == 0) & (as_type(j, tl.int32) == 0)
                takes = s_in & (first | (v > acc) | ((v != v) & (acc == acc)))
                acc = tl.where(takes, v, acc)
                if STORE_ARG:
                    idx = as_type(i, tl.int64) * gw + j
                    arg = tl.where(takes, tl.where(valid, idx[:, None], -1), arg)
            else:
                acc = tl.where(valid, acc + val, acc)
    if not MAX:
        acc = fdiv(acc, count[:, None])
    optr = out_ptr + k[:, None] * son + c[None, :] * soc + p[:, None] * soh + q[:, None] * sow
    store_as(optr, acc, m)
    if STORE_ARG:
        tl.store(arg_ptr + (k[:, None] * C + c[None, :]) * (ph * pw) + t[:, None], arg, mask=m)


def _align_forward(input, rows, scale, cout, ph, pw, sampling_ratio, aligned, max_mode, ps, out, arg=None):
    """Launches the forward kernel over out (Tensor[K, cout, ph, pw], any strides)."""
    K = rows.shape[0]
    H, W = input.shape[2:]
    pb, bk, bc = fwd_blocks(input, ph * pw, K, cout)
    launch(_align_fwd_kernel, (triton.cdiv(K, bk), triton.cdiv(cout, bc)), input, *input.stride(), rows, scale,
           out, *out.stride(), arg if arg is not None else out, K, cout, H, W, ph, pw, sampling_ratio,
           ALIGNED=bool(aligned), MAX=bool(max_mode), PS=bool(ps), STORE_ARG=arg is not None,
           CT=tl_dtype(rows.dtype), PB=pb, BK=bk, BC=bc)


# ================================================================ backward

@device_fn
def _winner_samples(start_h, start_w, bin_h, bin_w, gh, gw, p, q, a, H, W, CT: tl.constexpr):
    """The y- and x-axis samples (lo, hi, l, h each) of the winning samples a = i * grid_w + j
    of rows with bins (p, q): Tensors[R, BC] (a valid winner has grid_w > 0)."""
    gws = tl.maximum(gw, 1)[:, None]
    ylo, yhi, ly, hy, _ = axis_sample(sample_pos(bin_origin(start_h, bin_h, p)[:, None], bin_h[:, None],
                                                 (a // gws).to(CT), gh.to(CT)[:, None]), H)
    xlo, xhi, lx, hx, _ = axis_sample(sample_pos(bin_origin(start_w, bin_w, q)[:, None], bin_w[:, None],
                                                 (a % gws).to(CT), gw.to(CT)[:, None]), W)
    return ylo, yhi, ly, hy, xlo, xhi, lx, hx


@device_fn
def _axis_weights(start, bin_, pv, pm, grid, grid_max, size, pix, CT: tl.constexpr):
    """Summed weights A[r, pix] of the valid samples (i < grid[r]) of bin pv[r] of row r's RoI
    along one axis on pixel coordinates pix, and whether any of them touches the pixel:
    Tensors[R, PIX]."""
    a = tl.full([pv.shape[0], pix.shape[0]], 0, CT)
    hit = tl.full([pv.shape[0], pix.shape[0]], 0, tl.int1)
    gf = grid.to(CT)
    org = bin_origin(start, bin_, pv)
    for i in range(0, grid_max):
        lo, hi, l_, h_, valid = axis_sample(sample_pos(org, bin_, as_type(i, CT), gf), size)
        valid = (valid & pm & (i < grid))[:, None]
        at_lo = valid & (pix[None, :] == lo[:, None])
        at_hi = valid & (pix[None, :] == hi[:, None])
        a += tl.where(at_lo, h_[:, None], 0.0) + tl.where(at_hi, l_[:, None], 0.0)
        hit = hit | at_lo | at_hi
    return a, hit


@device_fn
def _corner_weights(lo, hi, l_, h_, pix):
    # One sample per (row, channel) [R, BC] along one axis on pixels pix: weights and touch
    # masks [R, BC, PIX] (lo == hi at the border: the weights add up to 1).
    at_lo = pix[None, None, :] == lo[:, :, None]
    at_hi = pix[None, None, :] == hi[:, :, None]
    return tl.where(at_lo, h_[:, :, None], 0.0) + tl.where(at_hi, l_[:, :, None], 0.0), at_lo | at_hi


@triton.jit
def _align_bwd_gather_kernel(g_ptr, sgk, sgc, sgh, sgw, r_ptr, scale_ptr, order_ptr, seg_ptr, arg_ptr,
                             out_ptr, son, soc, soh, sow, n_cb, C, H, W, ph, pw, sampling_ratio,
                             ALIGNED: tl.constexpr, MAX: tl.constexpr, PS: tl.constexpr, CT: tl.constexpr,
                             PB: tl.constexpr, RB: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                             BC: tl.constexpr):
    # A [input channel, pixel] tile of image b; its RoIs RB at a time, in RoI order. Non-PS:
    # channel c receives all bins (p, q) of output channel c; PS: input channel c is bin
    # ((c / pw) % ph, c % pw) of output channel c / (ph pw) only.
    b, c, cm, y, x = gather_tile(tl.program_id(0), n_cb, C, TH, TW, BC)
    c0 = (tl.program_id(0) % n_cb) * BC
    y_lo = as_type(tl.program_id(1) * TH, CT) - 1.0
    y_hi = as_type(tl.program_id(1) * TH + TH, CT)
    x_lo = as_type(tl.program_id(2) * TW, CT) - 1.0
    x_hi = as_type(tl.program_id(2) * TW + TW, CT)
    scale = tl.load(scale_ptr)
    acc = tl.full([BC, TH * TW], 0, CT)
    s_end = tl.load(seg_ptr + b + 1)
    for s in range(tl.load(seg_ptr + b), s_end, RB):
        k, p, q, cg, m = gather_rows(order_ptr, s, s_end, C, c0, ph, pw, PS, PB, RB, BC)
        _, start_h, start_w, bin_h, bin_w, gh, gw, count = align_geom(r_ptr, k, scale, ph, pw, sampling_ratio,
                                                                      ALIGNED, CT)
        # Samples lie between start and start + pooled * bin, their corners within a pixel of
        # that: rows of RoIs that miss the tile drop out (a NaN extent fails the test too).
        end_h = start_h + as_type(ph, CT) * bin_h
        end_w = start_w + as_type(pw, CT) * bin_w
        m = m & (dmin(start_h, end_h) <= y_hi) & (dmax(start_h, end_h) >= y_lo)
        m = m & (dmin(start_w, end_w) <= x_hi) & (dmax(start_w, end_w) >= x_lo) & (gh > 0) & (gw > 0)
        gh = tl.where(m, gh, 0)
        gw = tl.where(m, gw, 0)
        gh_max = tl.max(gh, 0)
        if gh_max > 0:
            if PS:
                ay, ty = _axis_weights(start_h, bin_h, p, m, gh, gh_max, H, y, CT)  # [RB * BC, PIX]
                ax, tx = _axis_weights(start_w, bin_w, q, m, gw, tl.max(gw, 0), W, x, CT)
                g = tl.load(g_ptr + k * sgk + cg * sgc + p * sgh + q * sgw, mask=m, other=0)
                g = fdiv(g.to(CT), count)
                part = tl.where(ty & tx, g[:, None] * (ay * ax), 0.0)
                acc += tl.sum(tl.reshape(part, (RB, BC, TH * TW)), axis=0)
            elif MAX:
                gm = m[:, None] & cm[None, :]
                a = tl.load(arg_ptr + (k[:, None] * C + c[None, :]) * (ph * pw) + cg[:, None], mask=gm, other=-1)
                am = a >= 0
                a = tl.where(am, a, 0)
                ylo, yhi, ly, hy, xlo, xhi, lx, hx = _winner_samples(start_h, start_w, bin_h, bin_w, gh, gw, p, q,
                                                                     a, H, W, CT)
                g = tl.load(g_ptr + k[:, None] * sgk + c[None, :] * sgc + (p * sgh + q * sgw)[:, None], mask=gm,
                            other=0).to(CT)
                wy, ty = _corner_weights(ylo, yhi, ly, hy, y)  # [R, BC, PIX]
                wx, tx = _corner_weights(xlo, xhi, lx, hx, x)
                touch = am[:, :, None] & ty & tx
                acc += tl.sum(tl.where(touch, (g[:, :, None] * wy) * wx, 0.0), axis=0)
            else:
                ay, ty = _axis_weights(start_h, bin_h, p, m, gh, gh_max, H, y, CT)  # [RB * PB, PIX]
                ax, tx = _axis_weights(start_w, bin_w, q, m, gw, tl.max(gw, 0), W, x, CT)
                gm = m[:, None] & cm[None, :]
                g = tl.load(g_ptr + k[:, None] * sgk + c[None, :] * sgc + (p * sgh + q * sgw)[:, None], mask=gm,
                            other=0)
                g = fdiv(g.to(CT), count[:, None])  # [R, BC]
                touch = (ty & tx)[:, None, :]
                acc += tl.sum(tl.where(touch, g[:, :, None] * (ay * ax)[:, None, :], 0.0), axis=0)
    store_tile(out_ptr, son, soc, soh, sow, b, c, cm, y, x, H, W, acc)


@triton.jit
def _align_bwd_atomic_kernel(g_ptr, sgk, sgc, sgh, sgw, r_ptr, scale_ptr, arg_ptr, buf_ptr, sbn, sbc, sbh, sbw,
                             K, C, H, W, ph, pw, sampling_ratio,
                             ALIGNED: tl.constexpr, MAX: tl.constexpr, PS: tl.constexpr, CT: tl.constexpr,
                             PB: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    # The forward's program shape; each corner term g * w / count is atomically added.
    k, t, p, q, rm, c, m, b, start_h, start_w, bin_h, bin_w, gh, gw, count = _row_block(
        r_ptr, scale_ptr, K, C, ph, pw, sampling_ratio, ALIGNED, CT, PB, BK, BC)
    base = buf_ptr + b[:, None] * sbn + channel_offsets(c, p, q, ph, pw, PS) * sbc
    g = tl.load(g_ptr + k[:, None] * sgk + c[None, :] * sgc + p[:, None] * sgh + q[:, None] * sgw, mask=m,
                other=0).to(CT)
    if MAX:
        a = tl.load(arg_ptr + (k[:, None] * C + c[None, :]) * (ph * pw) + t[:, None], mask=m, other=-1)
        am = m & (a >= 0)
        a = tl.where(am, a, 0)
        ylo, yhi, ly, hy, xlo, xhi, lx, hx = _winner_samples(start_h, start_w, bin_h, bin_w, gh, gw, p, q, a, H, W,
                                                             CT)
        rlo = base + ylo.to(tl.int64) * sbh
        rhi = base + yhi.to(tl.int64) * sbh
        clo = xlo.to(tl.int64) * sbw
        chi = xhi.to(tl.int64) * sbw
        tl.atomic_add(rlo + clo, g * (hy * hx), mask=am, sem="relaxed")
        tl.atomic_add(rlo + chi, g * (hy * lx), mask=am, sem="relaxed")
        tl.atomic_add(rhi + clo, g * (ly * hx), mask=am, sem="relaxed")
        tl.atomic_add(rhi + chi, g * (ly * lx), mask=am, sem="relaxed")
    else:
        ghf = gh.to(CT)
        gwf = gw.to(CT)
        org_h = bin_origin(start_h, bin_h, p)
        org_w = bin_origin(start_w, bin_w, q)
        for i in range(0, tl.max(gh, 0)):
            ylo, yhi, ly, hy, vy = axis_sample(sample_pos(org_h, bin_h, as_type(i, CT), ghf), H)
            rlo = base + ylo.to(tl.int64)[:, None] * sbh
            rhi = base + yhi.to(tl.int64)[:, None] * sbh
            for j in range(0, tl.max(gw, 0)):
                xlo, xhi, lx, hx, vx = axis_sample(sample_pos(org_w, bin_w, as_type(j, CT), gwf), W)
                vm = m & (vy & vx & (i < gh) & (j < gw))[:, None]
                clo = xlo.to(tl.int64)[:, None] * sbw
                chi = xhi.to(tl.int64)[:, None] * sbw
                cnt = count[:, None]
                tl.atomic_add(rlo + clo, fdiv(g * (hy * hx)[:, None], cnt), mask=vm, sem="relaxed")
                tl.atomic_add(rlo + chi, fdiv(g * (hy * lx)[:, None], cnt), mask=vm, sem="relaxed")
                tl.atomic_add(rhi + clo, fdiv(g * (ly * hx)[:, None], cnt), mask=vm, sem="relaxed")
                tl.atomic_add(rhi + chi, fdiv(g * (ly * lx)[:, None], cnt), mask=vm, sem="relaxed")


def _align_backward(grad, rows, scale, n, c, h, w, ph, pw, sampling_ratio, aligned, max_mode, ps, arg, out_fmt):
    """Input gradient Tensor[n, c, h, w] (grad's dtype, out_fmt) of roi_align / ps_roi_align;
    arg: the winners (max mode) as Tensor[K, C_out, ph * pw] int64, else None."""
    K = rows.shape[0]
    ct = rows.dtype
    if K == 0 or min(n, c, h, w) == 0:
        return torch.zeros((n, c, h, w), dtype=grad.dtype, device=grad.device).contiguous(memory_format=out_fmt)
    meta = dict(ALIGNED=bool(aligned), MAX=bool(max_mode), PS=bool(ps), CT=tl_dtype(ct))
    cout = grad.shape[1]
    if use_atomics(grad):
        buf = torch.zeros((n, c, h, w), dtype=ct, device=grad.device).contiguous(memory_format=out_fmt)
        pb, bk, bc = fwd_blocks(grad, ph * pw, K, cout)
        launch(_align_bwd_atomic_kernel, (triton.cdiv(K, bk), triton.cdiv(cout, bc)), grad, *grad.stride(), rows,
               scale, arg if arg is not None else rows, buf, *buf.stride(), K, cout, h, w, ph, pw, sampling_ratio,
               **meta, PB=pb, BK=bk, BC=bc)
        return buf if buf.dtype == grad.dtype else buf.to(grad.dtype)
    out = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device, memory_format=out_fmt)
    order, seg = by_batch(rows, n)
    pb = pow2(ph * pw, 1, 1 << 20)
    th, tw, bc, rb = gather_blocks(grad, h, w, c, K, 1 if ps else pb)
    n_cb = triton.cdiv(c, bc)
    launch(_align_bwd_gather_kernel, (n * n_cb, triton.cdiv(h, th), triton.cdiv(w, tw)), grad, *grad.stride(),
           rows, scale, order, seg, arg if arg is not None else rows, out, *out.stride(), n_cb, c, h, w, ph, pw,
           sampling_ratio, **meta, PB=pb, RB=rb, TH=th, TW=tw, BC=bc)
    return out


# ================================================================ roi_align ops

def _max_winners(input, rows, scale, ph, pw, sampling_ratio, aligned) -> torch.Tensor:
    """The winning sample of every (RoI, channel, bin) of max mode: Tensor[K, C, ph * pw] int64."""
    K, C = rows.shape[0], input.shape[1]
    arg = torch.empty((K, C, ph * pw), dtype=torch.int64, device=input.device)
    if K and C and input.shape[2] and input.shape[3]:
        out = torch.empty((K, C, ph, pw), dtype=input.dtype, device=input.device)
        _align_forward(input, rows, scale, C, ph, pw, sampling_ratio, aligned, True, False, out, arg)
    return arg


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, pool_mode):
        N, C, H, W = input.shape
        K = rois.shape[0]
        ct = compute_dtype(input)
        fmt = out_format(_checks.roi_channels_last(input))
        max_mode = pool_mode == "max"
        # Max mode keeps each bin's winning sample for the backward (an index per output
        # element) instead of the input it would recompute them from.
        arg = torch.full((K, C, ph * pw), -1, dtype=torch.int64, device=input.device) \
            if max_mode and ctx.needs_input_grad[0] else None
        ctx.save_for_backward(rois, arg)
        ctx.args = (spatial_scale, ph, pw, N, C, H, W, sampling_ratio, aligned, pool_mode)
        out = torch.empty((K, C, ph, pw), dtype=input.dtype, device=input.device, memory_format=fmt)
        if K == 0 or C == 0:
            return out
        if H == 0 or W == 0:  # every sample is outside an empty map
            return out.zero_()
        _align_forward(input, roi_rows(rois, ct), scale_tensor(spatial_scale, ct, input.device), C, ph, pw,
                       sampling_ratio, aligned, max_mode, False, out, arg)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rois, arg = ctx.saved_tensors
        scale, ph, pw, n, c, h, w, sampling_ratio, aligned, pool_mode = ctx.args
        ct = compute_dtype(grad)
        gin = _align_backward(grad, roi_rows(rois, ct), scale_tensor(scale, ct, grad.device), n, c, h, w, ph, pw,
                              sampling_ratio, aligned, pool_mode == "max", False, arg,
                              out_format(_checks.roi_channels_last(grad)))
        return gin, None, None, None, None, None, None, None


def roi_align(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
              sampling_ratio: int, aligned: bool, pool_mode: str = "avg") -> torch.Tensor:
    """input Tensor[N, C, H, W], rois Tensor[K, 5] -> Tensor[K, C, pooled_height, pooled_width] in
    input's dtype, channels-last when input is. Differentiable in input."""
    _checks.roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, pool_mode)
    _checks.roi_batch_indices("roi_align", rois, input.shape[0])
    return _RoIAlign.apply(input, rois, float(spatial_scale), int(pooled_height), int(pooled_width),
                           int(sampling_ratio), bool(aligned), pool_mode)


def _roi_align_backward(grad: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                        pooled_width: int, batch_size: int, channels: int, height: int, width: int,
                        sampling_ratio: int, aligned: bool, pool_mode: str = "avg",
                        input: torch.Tensor | None = None) -> torch.Tensor:
    """grad Tensor[K, C, ph, pw] -> Tensor[batch_size, C, height, width] in grad's dtype,
    channels-last when grad is. Max mode recomputes its winners from input."""
    op = "_roi_align_backward"
    ph, pw = int(pooled_height), int(pooled_width)
    n, c, h, w = int(batch_size), int(channels), int(height), int(width)
    _backward_checks(op, grad, rois, spatial_scale, ph, pw, n, c, h, w)
    _checks.roi_sampling_ratio(op, sampling_ratio)
    _checks.roi_pool_mode(op, pool_mode)
    max_mode = pool_mode == "max"
    if max_mode:
        if input is None:
            _checks.fail(op, "input must be given for pool_mode 'max'")
        if tuple(input.shape) != (n, c, h, w):
            _checks.fail(op, f"input must be a Tensor[{n}, {c}, {h}, {w}], got shape {list(input.shape)}")
        if input.dtype != grad.dtype:
            _checks.fail(op, f"input must have the dtype of grad ({grad.dtype}), got {input.dtype}", TypeError)
    _checks.roi_batch_indices(op, rois, n)
    ct = compute_dtype(grad)
    rows = roi_rows(rois, ct)
    scale = scale_tensor(spatial_scale, ct, grad.device)
    arg = _max_winners(input, rows, scale, ph, pw, int(sampling_ratio), aligned) if max_mode else None
    fmt = out_format(_checks.roi_channels_last(grad))
    return _align_backward(grad, rows, scale, n, c, h, w, ph, pw, int(sampling_ratio), aligned, max_mode, False,
                           arg, fmt)


# ================================================================ ps_roi_align ops

class _PSRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, spatial_scale, ph, pw, sampling_ratio):
        N, C, H, W = input.shape
        K, cout = rois.shape[0], C // (ph * pw)
        ct = compute_dtype(input)
        out = torch.zeros((K, cout, ph, pw), dtype=input.dtype, device=input.device)
        mapping = ps_mapping(K, cout, ph, pw, input.device)
        ctx.save_for_backward(rois, mapping)
        ctx.mark_non_differentiable(mapping)
        ctx.args = (spatial_scale, ph, pw, sampling_ratio, N, C, H, W)
        if K and cout and H and W:
            _align_forward(input, roi_rows(rois, ct), scale_tensor(spatial_scale, ct, input.device), cout, ph, pw,
                           sampling_ratio, True, False, True, out)
        return out, mapping

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _grad_mapping):
        rois, mapping = ctx.saved_tensors
        return (_ps_roi_align_backward(grad, rois, mapping, *ctx.args), None, None, None, None, None)


def ps_roi_align(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                 pooled_width: int, sampling_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C_out * ph * pw, H, W], rois Tensor[K, 5] -> (Tensor[K, C_out, ph, pw],
    channel_mapping int64 Tensor[K, C_out, ph, pw]). Aligned geometry, average. Differentiable."""
    op = "ps_roi_align"
    ph, pw = int(pooled_height), int(pooled_width)
    _checks.roi_sampling_ratio(op, sampling_ratio)
    _checks.roi_args(op, input, rois, spatial_scale, ph, pw)
    _checks.ps_roi_channels(op, input.shape[1], ph, pw)
    _checks.roi_batch_indices(op, rois, input.shape[0])
    return _PSRoIAlign.apply(input, rois, float(spatial_scale), ph, pw, int(sampling_ratio))


def _ps_roi_align_backward(grad: torch.Tensor, rois: torch.Tensor, channel_mapping: torch.Tensor,
                           spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
                           batch_size: int, channels: int, height: int, width: int) -> torch.Tensor:
    """grad Tensor[K, C_out, ph, pw] -> Tensor[batch_size, channels, height, width] (NCHW, grad's
    dtype). The mapping is implied by the geometry; it is only shape-checked."""
    op = "_ps_roi_align_backward"
    ph, pw = int(pooled_height), int(pooled_width)
    n, c, h, w = int(batch_size), int(channels), int(height), int(width)
    _checks.roi_sampling_ratio(op, sampling_ratio)
    ps_backward_checks(op, grad, rois, channel_mapping, spatial_scale, ph, pw, n, c, h, w)
    ct = compute_dtype(grad)
    return _align_backward(grad, roi_rows(rois, ct), scale_tensor(spatial_scale, ct, grad.device), n, c, h, w, ph, pw,
                           int(sampling_ratio), True, False, True, None, torch.contiguous_format)
