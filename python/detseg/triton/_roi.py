"""Shared by the Triton RoI kernels (roi_align.py, roi_pool.py): the backward path rule, the
interpreter-friendly device helpers, the program shapes (forward: (RoI block, bin) rows x
channels; gather backward: input channels x a pixel tile of one image, its RoIs RB at a time)
and their block sizes, and host-side argument handling."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._registrations.roi import _backward_checks
from ..ops import _checks
from ._utils import dmax, dmin, fdiv, interpreted, pow2, store_as

# Tests set this to run the atomic backward under the interpreter.
FORCE_ATOMICS = False


def use_atomics(t: torch.Tensor) -> bool:
    """Whether a backward on t's device may scatter with atomics (order-dependent sums)."""
    if FORCE_ATOMICS:
        return True
    return not interpreted(t) and not torch.are_deterministic_algorithms_enabled()


_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def device_fn(fn):
    """triton.jit for a device helper, except under the interpreter: there every call of a jit
    helper re-patches triton.language (~0.4 ms, more than the arithmetic of a whole sample),
    while a plain function runs the same tl code. Kernels stay triton.jit."""
    fn = getattr(fn, "fn", fn)
    return fn if _INTERPRET else triton.jit(fn)


fdiv = device_fn(fdiv)
dmin = device_fn(dmin)
dmax = device_fn(dmax)
store_as = device_fn(store_as)


# ================================================================ device helpers

@device_fn
def as_type(n, DT: tl.constexpr):
    """n (a Python / constexpr int, a loop index or a scalar tensor) as a scalar tensor of DT."""
    # tl.full, not tl.zeros: the latter is a jit function, costly to call in the interpreter
    return tl.full([], n, DT)


@device_fn
def channel_offsets(c, p, q, ph, pw, PS: tl.constexpr):
    """Input channel of output channel c (row vector) at bin (p, q) (column vectors):
    detseg::ps_input_channel for the position-sensitive op, c itself otherwise."""
    if PS:
        ci = (c[None, :] * ph + p[:, None]) * pw + q[:, None]
    else:
        ci = c[None, :] + p[:, None] * 0
    return ci.to(tl.int64)


@device_fn
def row_tile(pid, K, ph, pw, PB: tl.constexpr, BK: tl.constexpr):
    """Rows of a (RoI block, bin) tile: RoI k = pid * BK + r // PB, bin t = r % PB = p * pw + q,
    and the row mask. Several RoIs per program pay off in the interpreter (its cost is per
    op, whatever the tile size); on a GPU BK is 1."""
    r = tl.arange(0, BK * PB)
    k = pid.to(tl.int64) * BK + r // PB
    t = r % PB
    rm = (t < ph * pw) & (k < K)
    return tl.where(rm, k, 0), t, t // pw, t % pw, rm


@device_fn
def gather_tile(pid0, n_cb, C, TH: tl.constexpr, TW: tl.constexpr, BC: tl.constexpr):
    """Program (b * n_cb + channel block, tile row, tile column) of a gather: (b, channels c,
    channel mask, pixel rows y, pixel columns x) of its [BC, TH * TW] tile."""
    b = pid0 // n_cb
    c = (pid0 % n_cb) * BC + tl.arange(0, BC)
    pix = tl.arange(0, TH * TW)
    y = tl.program_id(1) * TH + pix // TW
    x = tl.program_id(2) * TW + pix % TW
    return b.to(tl.int64), c, c < C, y, x


@device_fn
def gather_rows(order_ptr, s, s_end, C, c0, ph, pw, PS: tl.constexpr, PB: tl.constexpr, RB: tl.constexpr,
                BC: tl.constexpr):
    """Rows of a gather step over RoIs order[s : s + RB] of one image: (RoI k, bin p, bin q,
    output channel of the row (PS), row mask). Non-PS rows are (RoI slot, bin t) pairs, PS rows
    (RoI slot, input channel c0 + j) with that channel's single bin."""
    if PS:
        r = tl.arange(0, RB * BC)
        slot = s + r // BC
        c = c0 + r % BC
        p = (c // pw) % ph
        q = c % pw
        m = (slot < s_end) & (c < C)
        cg = c // (ph * pw)
    else:
        r = tl.arange(0, RB * PB)
        slot = s + r // PB
        t = r % PB
        p = t // pw
        q = t % pw
        m = (slot < s_end) & (t < ph * pw)
        cg = t
    k = tl.load(order_ptr + slot, mask=m, other=0)
    return k, p, q, cg, m


@device_fn
def store_tile(out_ptr, son, soc, soh, sow, b, c, cm, y, x, H, W, acc):
    optr = out_ptr + b * son + c[:, None].to(tl.int64) * soc + (y * soh + x * sow)[None, :]
    store_as(optr, acc, cm[:, None] & ((y < H) & (x < W))[None, :])


# ================================================================ host helpers

def fwd_blocks(t: torch.Tensor, nb: int, k: int, c: int) -> tuple[int, int, int]:
    """(PB, BK, BC): bins padded to a power of two, RoIs and channels per program."""
    pb = pow2(nb, 1, 1 << 20)
    if interpreted(t):
        bk = pow2(k, 1, max(1, 4096 // pb))
        return pb, bk, pow2(c, 1, max(1, 16384 // (pb * bk)))
    return pb, 1, pow2(c, 1, max(1, 2048 // pb))


def gather_blocks(t: torch.Tensor, h: int, w: int, c: int, k: int, rows: int) -> tuple[int, int, int, int]:
    """(TH, TW, BC, RB) of a gather program: pixel tile, channels, RoIs per step; its largest
    temporary is [RB * rows, BC, TH * TW] (rows: bins per RoI, or channels for PS)."""
    if interpreted(t):  # few large steps: the interpreter's cost is per op
        th, tw = pow2(h, 1, 32), pow2(w, 1, 32)
        bc = pow2(c, 1, max(1, (1 << 13) // (th * tw)))
        rb = pow2(k, 1, max(1, (1 << 18) // (rows * bc * th * tw)))
        return th, tw, bc, rb
    # one RoI per step on a GPU: a RoI that misses the tile costs a few scalar ops
    th, tw = pow2(h, 1, 8), pow2(w, 1, 8)
    return th, tw, pow2(c, 1, max(1, 8192 // (rows * th * tw))), 1


def roi_rows(rois: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    # RoIs in the compute type of the data (detseg/cpu/roi_common.h roi_rows): float16 boxes
    # would lose whole pixels.
    return rois.detach().to(dt).contiguous()


def scale_tensor(spatial_scale: float, ct: torch.dtype, device) -> torch.Tensor:
    # a float64 kernel needs the float64 scale (a Python float argument arrives as float32)
    return torch.tensor([float(spatial_scale)], dtype=ct, device=device)


def out_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def by_batch(rows: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoIs grouped by batch image in RoI order: (order Tensor[K], seg Tensor[n + 1]); the RoIs
    of image b are order[seg[b]:seg[b + 1]]. Batch indices are checked beforehand."""
    bidx = rows[:, 0].long()
    order = torch.sort(bidx, stable=True).indices
    seg = torch.searchsorted(bidx[order], torch.arange(n + 1, device=rows.device))
    return order, seg


def ps_mapping(k: int, cout: int, ph: int, pw: int, device) -> torch.Tensor:
    """channel_mapping Tensor[K, C_out, ph, pw] int64: detseg::ps_input_channel of each output."""
    cin = ((torch.arange(cout, device=device)[:, None, None] * ph + torch.arange(ph, device=device)[:, None]) * pw
           + torch.arange(pw, device=device))
    return cin.expand(k, cout, ph, pw).contiguous()


def ps_backward_checks(op: str, grad, rois, channel_mapping, spatial_scale, ph: int, pw: int, n: int, c: int,
                       h: int, w: int) -> None:
    """The checks of both position-sensitive backward ops (the C++ ps_roi_backward_cout)."""
    _checks.roi_scale_size(op, spatial_scale, ph, pw)
    _checks.ps_roi_channels(op, c, ph, pw)
    _backward_checks(op, grad, rois, spatial_scale, ph, pw, n, c // (ph * pw), h, w)
    if channel_mapping.shape != grad.shape:
        _checks.fail(op, f"channel_mapping must have the shape of grad {list(grad.shape)}, "
                         f"got {list(channel_mapping.shape)}")
    _checks.roi_batch_indices(op, rois, n)
