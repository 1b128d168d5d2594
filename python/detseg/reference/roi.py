"""Reference RoI ops in plain PyTorch: the oracle of the C++ / CUDA / Triton kernels.

roi_align mirrors csrc/include/detseg/roi_align.h and roi_pool csrc/include/detseg/roi_pool.h
term for term (same operation order per sample, so only the summation over samples differs).
Differentiable through autograd.

Memory-bounded: nothing of size RoIs x H x W is ever built. Each chunk of RoIs gathers its
bilinear corners (or its bin pixels) as Tensor[k, ph, gh, pw, gw, C] with k chosen so that
this stays under _BUDGET elements, and the chunk runs under activation checkpointing, so
the backward also holds one chunk at a time (plus one input-sized gradient buffer) instead
of every chunk's gathered corners (pytorch/vision#8168).
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

from ..ops import _checks

# Elements of one gathered tensor per chunk (x4 corners and a few temporaries alive at once).
_BUDGET = 1 << 22
_MAX_GRID = 1 << 16  # kRoiMaxGrid
_COORD_LIMIT = 1073741824.0  # kRoiPoolCoordLimit


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _chunks(extents: list[tuple[int, int]], per_elem: int):
    """Consecutive RoI ranges whose padded gather (k x max extent product x per_elem) fits the budget."""
    k0 = 0
    n = len(extents)
    while k0 < n:
        eh, ew = extents[k0]
        k1 = k0 + 1
        while k1 < n:
            nh, nw = max(eh, extents[k1][0]), max(ew, extents[k1][1])
            if (k1 + 1 - k0) * max(nh, 1) * max(nw, 1) * per_elem > _BUDGET:
                break
            eh, ew = nh, nw
            k1 += 1
        yield k0, k1, max(eh, 1), max(ew, 1)
        k0 = k1


def _flat_nhwc(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h * w, c)


def _finish(out_khwc: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    out = out_khwc.permute(0, 3, 1, 2).to(dtype)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _empty_like_out(input, k, c, ph, pw, dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # sum() * 0 keeps the (empty) graph connected so backward through an empty result works.
    z = input.new_zeros((k, c, ph, pw), dtype=dtype).contiguous(memory_format=fmt)
    return z + input.sum().to(dtype) * 0 if input.requires_grad else z


# ---------------------------------------------------------------- roi_align

def _axis(start, bin_, grid, pooled: int, g: int, size: int, cdt):
    """AxisSample for every (RoI, bin p, sample i): Tensors[k, pooled, g] (detseg/roi_align.h)."""
    p = torch.arange(pooled, dtype=cdt, device=start.device)[None, :, None]
    i = torch.arange(g, dtype=cdt, device=start.device)[None, None, :]
    gr = grid.clamp(min=1).to(cdt)[:, None, None]
    b = bin_[:, None, None]
    v = start[:, None, None] + p * b + (i + 0.5) * b / gr
    valid = (v >= -1) & (v <= size) & (i < grid[:, None, None].to(cdt))
    v = torch.where(valid, v, torch.zeros_like(v))
    v = torch.where(v <= 0, torch.zeros_like(v), v)
    lo = v.long()
    last = lo >= size - 1
    lo = torch.where(last, torch.full_like(lo, size - 1), lo)
    hi = torch.where(last, lo, lo + 1)
    v = torch.where(last, lo.to(cdt), v)
    l_ = v - lo.to(cdt)
    return lo, hi, l_, 1 - l_, valid


def _roi_align_chunk(xf, r, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count,
                     H: int, W: int, ph: int, pw: int, gh: int, gw: int, max_mode: bool):
    cdt = xf.dtype
    k = r.shape[0]
    C = xf.shape[1]
    ylo, yhi, ly, hy, vy = _axis(start_h, bin_h, grid_h, ph, gh, H, cdt)  # [k, ph, gh]
    xlo, xhi, lx, hx, vx = _axis(start_w, bin_w, grid_w, pw, gw, W, cdt)  # [k, pw, gw]
    b = r[:, 0].long()[:, None, None, None, None] * (H * W)

    def yy(t):
        return t[:, :, :, None, None]

    def xx(t):
        return t[:, None, None, :, :]

    def corner(yi, xi):
        idx = (b + yy(yi) * W + xx(xi)).reshape(-1)
        return xf.index_select(0, idx).view(k, ph, gh, pw, gw, C)

    w1 = (yy(hy) * xx(hx))[..., None]
    w2 = (yy(hy) * xx(lx))[..., None]
    w3 = (yy(ly) * xx(hx))[..., None]
    w4 = (yy(ly) * xx(lx))[..., None]
    val = w1 * corner(ylo, xlo) + w2 * corner(ylo, xhi) + w3 * corner(yhi, xlo) + w4 * corner(yhi, xhi)
    valid = (yy(vy) & xx(vx))[..., None]
    val = torch.where(valid, val, torch.zeros((), dtype=cdt, device=val.device))
    if not max_mode:
        return val.sum(dim=(2, 4)) / count[:, None, None, None]  # [k, ph, pw, C]
    # Samples beyond a RoI's own grid (padding of the chunk) never win; real samples keep
    # their (iy, ix) order, so argmax's first-maximum rule is max_takes' rule.
    real = (yy(torch.arange(gh, device=val.device)[None, None, :] < grid_h[:, None, None])
            & xx(torch.arange(gw, device=val.device)[None, None, :] < grid_w[:, None, None]))[..., None]
    val = torch.where(real, val, torch.full((), -math.inf, dtype=cdt, device=val.device))
    val = val.permute(0, 1, 3, 2, 4, 5).reshape(k, ph, pw, gh * gw, C)
    idx = val.argmax(dim=3, keepdim=True)
    out = val.gather(3, idx).squeeze(3)
    has = ((grid_h > 0) & (grid_w > 0))[:, None, None, None]
    return torch.where(has, out, torch.zeros((), dtype=cdt, device=out.device))


def roi_align(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
              sampling_ratio: int, aligned: bool, pool_mode: str = "avg") -> torch.Tensor:
    """input Tensor[N, C, H, W], rois Tensor[K, 5] -> Tensor[K, C, pooled_height, pooled_width]."""
    op = "roi_align"
    _checks.roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, pool_mode)
    N, C, H, W = input.shape
    K = rois.shape[0]
    ph, pw = int(pooled_height), int(pooled_width)
    _checks.roi_batch_indices(op, rois, N)
    cl = _checks.roi_channels_last(input)
    if K == 0 or C == 0 or H == 0 or W == 0:
        return _empty_like_out(input, K, C, ph, pw, input.dtype, cl)
    cdt = _compute_dtype(input)
    r = rois.detach().to(cdt)
    start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _align_geometry(r, spatial_scale, ph, pw, sampling_ratio,
                                                                            aligned, cdt)
    xf = _flat_nhwc(input.to(cdt))
    extents = list(zip(grid_h.tolist(), grid_w.tolist()))
    outs = []
    for k0, k1, gh, gw in _chunks(extents, C * ph * pw):
        args = (xf, r[k0:k1], start_h[k0:k1], start_w[k0:k1], bin_h[k0:k1], bin_w[k0:k1], grid_h[k0:k1],
                grid_w[k0:k1], count[k0:k1], H, W, ph, pw, gh, gw, pool_mode == "max")
        if torch.is_grad_enabled() and xf.requires_grad:
            outs.append(checkpoint(_roi_align_chunk, *args, use_reentrant=False))
        else:
            outs.append(_roi_align_chunk(*args))
    return _finish(torch.cat(outs), input.dtype, cl)


def _align_geometry(r, spatial_scale, ph: int, pw: int, sampling_ratio: int, aligned: bool, cdt):
    """RoiAlignGeom of every RoI (detseg/roi_align.h): start, bin size, grid, count."""
    K = r.shape[0]
    scale = float(spatial_scale)
    off = 0.5 if aligned else 0.0
    start_w = r[:, 1] * scale - off
    start_h = r[:, 2] * scale - off
    roi_w = (r[:, 3] * scale - off) - start_w
    roi_h = (r[:, 4] * scale - off) - start_h
    if not aligned:
        one = torch.ones((), dtype=cdt, device=r.device)
        roi_w = torch.where(roi_w < 1, one, roi_w)
        roi_h = torch.where(roi_h < 1, one, roi_h)
    bin_h, bin_w = roi_h / ph, roi_w / pw

    def grid(size, pooled):
        if sampling_ratio > 0:
            return torch.full((K,), int(sampling_ratio), dtype=torch.int64, device=r.device)
        g = torch.ceil(size / pooled)
        # NaN, +-inf, negative -> 0 (before the cap: NaN fails both comparisons)
        g = torch.where((g > 0) & torch.isfinite(g), g, torch.zeros_like(g))
        return torch.where(g < _MAX_GRID, g, torch.full_like(g, _MAX_GRID)).long()

    grid_h, grid_w = grid(roi_h, ph), grid(roi_w, pw)
    n = grid_h * grid_w
    count = torch.where(n > 0, grid_h.to(cdt) * grid_w.to(cdt), torch.ones((), dtype=cdt, device=r.device))
    return start_h, start_w, bin_h, bin_w, grid_h, grid_w, count


# ---------------------------------------------------------------- roi_pool

def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    # std::round (half away from zero); torch.round rounds half to even. v - trunc(v) is exact.
    t = torch.trunc(v)
    return t + torch.where((v - t).abs() >= 0.5, torch.sign(v), torch.zeros_like(v))


def _pool_axis(start, bin_, pooled: int, size: int, cdt):
    """[lo, hi) of every bin along one axis: Tensors[k, pooled] (detseg/roi_pool.h)."""
    p = torch.arange(pooled, dtype=cdt, device=start.device)[None, :]
    lo = torch.floor(p * bin_[:, None]).long() + start[:, None]
    hi = torch.ceil((p + 1) * bin_[:, None]).long() + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def _pool_geometry(r, spatial_scale, ph: int, pw: int, H: int, W: int, cdt, plus_one: int):
    """Bin pixel ranges [h0, h1) x [w0, w1): Tensors[K, ph] / [K, pw] (detseg/roi_pool.h), and
    each RoI's largest bin extent."""
    c = r[:, 1:] * float(spatial_scale)
    finite = torch.isfinite(c).all(dim=1)
    c = torch.where(finite[:, None], c, torch.zeros_like(c)).clamp(-_COORD_LIMIT, _COORD_LIMIT)
    c = _round_half_away(c).long()
    sw, sh, ew, eh = c.unbind(1)
    bin_w = (ew - sw + plus_one).clamp(min=1).to(cdt) / pw
    bin_h = (eh - sh + plus_one).clamp(min=1).to(cdt) / ph
    h0, h1 = _pool_axis(sh, bin_h, ph, H, cdt)
    w0, w1 = _pool_axis(sw, bin_w, pw, W, cdt)
    zero = torch.zeros((), dtype=torch.int64, device=r.device)
    h1 = torch.where(finite[:, None], h1, zero)
    h0 = torch.where(finite[:, None], h0, zero)
    w1 = torch.where(finite[:, None], w1, zero)
    w0 = torch.where(finite[:, None], w0, zero)
    ext_h = (h1 - h0).clamp(min=0).amax(dim=1).tolist()
    ext_w = (w1 - w0).clamp(min=0).amax(dim=1).tolist()
    return h0, h1, w0, w1, list(zip(ext_h, ext_w))


def _roi_pool_chunk(xf, b, h0, h1, w0, w1, H: int, W: int, bh: int, bw: int):
    cdt, dev = xf.dtype, xf.device
    k, ph = h0.shape
    pw = w0.shape[1]
    C = xf.shape[1]
    hh = h0[:, :, None] + torch.arange(bh, device=dev)[None, None, :]  # [k, ph, bh]
    ww = w0[:, :, None] + torch.arange(bw, device=dev)[None, None, :]  # [k, pw, bw]
    vh, vw = hh < h1[:, :, None], ww < w1[:, :, None]
    hh, ww = hh.clamp(max=H - 1), ww.clamp(max=W - 1)
    pos = hh[:, :, :, None, None] * W + ww[:, None, None, :, :]  # [k, ph, bh, pw, bw]
    idx = (b[:, None, None, None, None] * (H * W) + pos).reshape(-1)
    vals = xf.index_select(0, idx).view(k, ph, bh, pw, bw, C)
    valid = (vh[:, :, :, None, None] & vw[:, None, None, :, :])[..., None]
    vals = torch.where(valid, vals, torch.full((), -math.inf, dtype=cdt, device=dev))
    vals = vals.permute(0, 1, 3, 2, 4, 5).reshape(k, ph, pw, bh * bw, C)
    am = vals.argmax(dim=3, keepdim=True)
    out = vals.gather(3, am).squeeze(3)
    empty = ((h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :])[..., None]  # [k, ph, pw, 1]
    out = torch.where(empty, torch.zeros((), dtype=cdt, device=dev), out)
    plane = pos.permute(0, 1, 3, 2, 4).reshape(k, ph, pw, bh * bw)
    arg = plane.gather(3, am.reshape(k, ph, pw, C))  # [k, ph, pw, C] plane indices
    arg = torch.where(empty, torch.full((), -1, dtype=torch.int64, device=dev), arg)
    return out, arg


def roi_pool(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
             pooled_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C, H, W], rois Tensor[K, 5] -> (Tensor[K, C, ph, pw], argmax int64 Tensor[K, C, ph, pw])."""
    op = "roi_pool"
    _checks.roi_pool(input, rois, spatial_scale, pooled_height, pooled_width)
    N, C, H, W = input.shape
    K = rois.shape[0]
    ph, pw = int(pooled_height), int(pooled_width)
    _checks.roi_batch_indices(op, rois, N)
    cl = _checks.roi_channels_last(input)
    fmt = torch.channels_last if cl else torch.contiguous_format
    if K == 0 or C == 0 or H == 0 or W == 0:
        arg = torch.full((K, C, ph, pw), -1, dtype=torch.int64, device=input.device).contiguous(memory_format=fmt)
        return _empty_like_out(input, K, C, ph, pw, input.dtype, cl), arg
    cdt = _compute_dtype(input)
    r = rois.detach().to(cdt)
    h0, h1, w0, w1, extents = _pool_geometry(r, spatial_scale, ph, pw, H, W, cdt, 1)
    b = r[:, 0].long()
    xf = _flat_nhwc(input.to(cdt))
    outs, args = [], []
    for k0, k1, bh, bw in _chunks(extents, C * ph * pw):
        a = (xf, b[k0:k1], h0[k0:k1], h1[k0:k1], w0[k0:k1], w1[k0:k1], H, W, bh, bw)
        if torch.is_grad_enabled() and xf.requires_grad:
            o, g = checkpoint(_roi_pool_chunk, *a, use_reentrant=False)
        else:
            o, g = _roi_pool_chunk(*a)
        outs.append(o)
        args.append(g)
    out = _finish(torch.cat(outs), input.dtype, cl)
    arg = torch.cat(args).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    return out, arg


# ---------------------------------------------------------------- position-sensitive ops

def _ps_setup(op, input, rois, spatial_scale, ph, pw):
    _checks.roi_args(op, input, rois, spatial_scale, ph, pw)
    _checks.ps_roi_channels(op, input.shape[1], ph, pw)
    N, C, H, W = input.shape
    _checks.roi_batch_indices(op, rois, N)
    K, cout = rois.shape[0], C // (ph * pw)
    dev = input.device
    cin = ((torch.arange(cout, device=dev)[:, None, None] * ph + torch.arange(ph, device=dev)[:, None]) * pw
           + torch.arange(pw, device=dev))  # [Cout, ph, pw]: ps_input_channel
    mapping = cin.expand(K, cout, ph, pw).contiguous()
    return N, C, H, W, K, cout, cin, mapping


def _ps_roi_align_chunk(xflat, r, start_h, start_w, bin_h, bin_w, grid_h, grid_w, count, cin,
                        C: int, H: int, W: int, ph: int, pw: int, gh: int, gw: int):
    cdt = xflat.dtype
    ylo, yhi, ly, hy, vy = _axis(start_h, bin_h, grid_h, ph, gh, H, cdt)  # [k, ph, gh]
    xlo, xhi, lx, hx, vx = _axis(start_w, bin_w, grid_w, pw, gw, W, cdt)  # [k, pw, gw]
    base = ((r[:, 0].long()[:, None, None, None] * C + cin[None]) * (H * W))[:, :, :, None, :, None]

    def yy(t):
        return t[:, None, :, :, None, None]

    def xx(t):
        return t[:, None, None, None, :, :]

    def corner(yi, xi):
        return xflat[base + yy(yi) * W + xx(xi)]  # [k, Cout, ph, gh, pw, gw]

    val = (yy(hy) * xx(hx) * corner(ylo, xlo) + yy(hy) * xx(lx) * corner(ylo, xhi)
           + yy(ly) * xx(hx) * corner(yhi, xlo) + yy(ly) * xx(lx) * corner(yhi, xhi))
    val = torch.where(yy(vy) & xx(vx), val, torch.zeros((), dtype=cdt, device=val.device))
    return val.sum(dim=(3, 5)) / count[:, None, None, None]


def ps_roi_align(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                 pooled_width: int, sampling_ratio: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C_out * ph * pw, H, W], rois Tensor[K, 5] -> (Tensor[K, C_out, ph, pw],
    channel_mapping int64 Tensor[K, C_out, ph, pw]). Aligned (half-pixel) geometry, average."""
    op = "ps_roi_align"
    ph, pw = int(pooled_height), int(pooled_width)
    _checks.roi_sampling_ratio(op, sampling_ratio)
    N, C, H, W, K, cout, cin, mapping = _ps_setup(op, input, rois, spatial_scale, ph, pw)
    if K == 0 or cout == 0 or H == 0 or W == 0:
        return _empty_like_out(input, K, cout, ph, pw, input.dtype, False), mapping
    cdt = _compute_dtype(input)
    r = rois.detach().to(cdt)
    start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = _align_geometry(r, spatial_scale, ph, pw, sampling_ratio,
                                                                            True, cdt)
    xflat = input.to(cdt).reshape(-1)
    extents = list(zip(grid_h.tolist(), grid_w.tolist()))
    outs = []
    for k0, k1, gh, gw in _chunks(extents, cout * ph * pw):
        args = (xflat, r[k0:k1], start_h[k0:k1], start_w[k0:k1], bin_h[k0:k1], bin_w[k0:k1], grid_h[k0:k1],
                grid_w[k0:k1], count[k0:k1], cin, C, H, W, ph, pw, gh, gw)
        if torch.is_grad_enabled() and xflat.requires_grad:
            outs.append(checkpoint(_ps_roi_align_chunk, *args, use_reentrant=False))
        else:
            outs.append(_ps_roi_align_chunk(*args))
    return torch.cat(outs).to(input.dtype), mapping


def _ps_roi_pool_chunk(xflat, b, h0, h1, w0, w1, cin, C: int, H: int, W: int, bh: int, bw: int):
    cdt, dev = xflat.dtype, xflat.device
    hh = h0[:, :, None] + torch.arange(bh, device=dev)[None, None, :]  # [k, ph, bh]
    ww = w0[:, :, None] + torch.arange(bw, device=dev)[None, None, :]  # [k, pw, bw]
    vh, vw = hh < h1[:, :, None], ww < w1[:, :, None]
    hh, ww = hh.clamp(max=H - 1), ww.clamp(max=W - 1)
    base = ((b[:, None, None, None] * C + cin[None]) * (H * W))[:, :, :, None, :, None]
    vals = xflat[base + hh[:, None, :, :, None, None] * W + ww[:, None, None, None, :, :]]
    valid = vh[:, None, :, :, None, None] & vw[:, None, None, None, :, :]
    s = torch.where(valid, vals, torch.zeros((), dtype=cdt, device=dev)).sum(dim=(3, 5))  # [k, Cout, ph, pw]
    area = ((h1 - h0).clamp(min=0)[:, :, None] * (w1 - w0).clamp(min=0)[:, None, :])[:, None]  # [k, 1, ph, pw]
    return torch.where(area > 0, s / area.clamp(min=1).to(cdt), torch.zeros((), dtype=cdt, device=dev))


def ps_roi_pool(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int,
                pooled_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input Tensor[N, C_out * ph * pw, H, W], rois Tensor[K, 5] -> (Tensor[K, C_out, ph, pw],
    channel_mapping int64 Tensor[K, C_out, ph, pw]): the mean of each quantised bin."""
    op = "ps_roi_pool"
    ph, pw = int(pooled_height), int(pooled_width)
    N, C, H, W, K, cout, cin, mapping = _ps_setup(op, input, rois, spatial_scale, ph, pw)
    if K == 0 or cout == 0 or H == 0 or W == 0:
        return _empty_like_out(input, K, cout, ph, pw, input.dtype, False), mapping
    cdt = _compute_dtype(input)
    r = rois.detach().to(cdt)
    h0, h1, w0, w1, extents = _pool_geometry(r, spatial_scale, ph, pw, H, W, cdt, 0)
    b = r[:, 0].long()
    xflat = input.to(cdt).reshape(-1)
    outs = []
    for k0, k1, bh, bw in _chunks(extents, cout * ph * pw):
        a = (xflat, b[k0:k1], h0[k0:k1], h1[k0:k1], w0[k0:k1], w1[k0:k1], cin, C, H, W, bh, bw)
        if torch.is_grad_enabled() and xflat.requires_grad:
            outs.append(checkpoint(_ps_roi_pool_chunk, *a, use_reentrant=False))
        else:
            outs.append(_ps_roi_pool_chunk(*a))
    return torch.cat(outs).to(input.dtype), mapping
