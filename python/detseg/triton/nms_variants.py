"""Triton soft-NMS and DIoU-NMS: mirrors of soft_one / diou_one in csrc/cpu/nms_variants.cpp.
The pair IoU of soft-NMS is detseg::nms_suppresses' inter / (area_i + area_j - inter)
(csrc/include/detseg/nms.h), DIoU-NMS's is detseg::pair_iou<kDIoU, kMatrix> with eps 0
(csrc/include/detseg/boxes.h, triton/iou.py's pair_iou), in float32 (float64 for float64).

Both are sequential per category: one program per category holds all of its boxes in one
block and loops over the picks. The priority sort and the grouping into categories are torch
ops on the host. Gaussian decays: float32 ones use libm_expf below, bit-identical to the C
library's expf that the CPU kernel calls; float64 ones use tl.exp and may differ from the C
library's exp in the last bit. Everything else is bit-identical to the CPU kernel."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ..reference.boxes import nms_threshold
from ._utils import clamp_min0, compute_dtype, dmax, dmin, fdiv, launch
from .iou import pair_iou


# glibc's expf (ARM's optimized-routines algorithm): x / ln2 = k / 32 + r / 32 with |r| <= 1/2,
# 2^(k / 32) from a 32-entry table (tab[i] = bits(2^(i / 32)) - (i << 47), then k's integer
# part added to the exponent field), 2^(r / 32) by a cubic, all in float64 with fused
# multiply-adds where the x86-64 FMA build of glibc has them. Checked against expf() for all
# 2^32 float32 inputs (0 differ). The constants travel in tensors: a Python float literal
# reaches a Triton kernel rounded to float32.
_EXPF_TAB = [
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540]
# 32 / ln2, the rounding shift 1.5 * 2^52, the cubic's coefficients (scaled by 32^-k)
_EXPF_C = [float.fromhex("0x1.71547652b82fep+0") * 32, float.fromhex("0x1.8p+52"),
           float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3, float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2,
           float.fromhex("0x1.62e42ff0c52d6p-1") / 32]


def _expf_tables(device) -> tuple[torch.Tensor, torch.Tensor]:
    tab = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in _EXPF_TAB], dtype=torch.int64, device=device)
    return tab, torch.tensor(_EXPF_C, dtype=torch.float64, device=device)


@triton.jit
def libm_expf(x, tab_ptr, c_ptr):
    """expf(x) of a float32 x, bit-identical to glibc's (see _EXPF_TAB)."""
    xd = x.to(tl.float64)
    inv = tl.load(c_ptr)
    shift = tl.load(c_ptr + 1)
    kd = tl.fma(xd, inv, shift)
    ki = kd.to(tl.int64, bitcast=True)
    kd = kd - shift
    r = tl.fma(xd, inv, -kd)
    t = tl.load(tab_ptr + (ki & 31)) + (ki << 47)
    s = t.to(tl.float64, bitcast=True)
    z = tl.fma(tl.load(c_ptr + 2), r, tl.load(c_ptr + 3))
    y = tl.fma(tl.load(c_ptr + 4), r, tl.full(r.shape, 1.0, tl.float64))
    y = tl.fma(z, r * r, y) * s
    res = y.to(tl.float32)
    res = tl.where(x > 88.72283172607421875, float("inf"), res)  # 0x1.62e42ep6f: overflow
    return tl.where(x < -103.972076416015625, 0.0, res)  # -0x1.9fe368p6f: underflow


@triton.jit
def _expf_kernel(x_ptr, y_ptr, tab_ptr, c_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + o, libm_expf(tl.load(x_ptr + o, mask=o < n, other=0.0), tab_ptr, c_ptr), mask=o < n)


def expf(x: torch.Tensor) -> torch.Tensor:
    """libm_expf over a float32 tensor (the tests check it against the C library)."""
    x = x.contiguous()
    y = torch.empty_like(x)
    if x.numel():
        tab, c = _expf_tables(x.device)
        launch(_expf_kernel, (triton.cdiv(x.numel(), 4096),), x, y, tab, c, x.numel(), BLOCK=4096)
    return y


@triton.jit
def _load_box(b_ptr, i, mask):
    """Box i (or boxes i, a block) of an xyxy Tensor[N, 4]; masked-off lanes read 0."""
    x1 = tl.load(b_ptr + 4 * i, mask=mask, other=0.0)
    y1 = tl.load(b_ptr + 4 * i + 1, mask=mask, other=0.0)
    x2 = tl.load(b_ptr + 4 * i + 2, mask=mask, other=0.0)
    y2 = tl.load(b_ptr + 4 * i + 3, mask=mask, other=0.0)
    return x1, y1, x2, y2


@triton.jit
def _load_members(b_ptr, ids_ptr, start_ptr, len_ptr, g, BLOCK: tl.constexpr):
    """Category g's members (see _groups) in one block: start, count m, lanes q, in-bounds
    mask, original box indices and their coordinates."""
    start = tl.load(start_ptr + g)
    m = tl.load(len_ptr + g)
    q = tl.arange(0, BLOCK)
    inb = q < m
    orig = tl.load(ids_ptr + start + q, mask=inb, other=0)
    x1, y1, x2, y2 = _load_box(b_ptr, orig, inb)
    return start, m, q, inb, orig, x1, y1, x2, y2


@triton.jit
def _soft_kernel(b_ptr, s_ptr, ids_ptr, start_ptr, len_ptr, prm_ptr, sig_ptr, oi_ptr, os_ptr, cnt_ptr, tab_ptr, c_ptr,
                 GAUSS: tl.constexpr, OPENCV: tl.constexpr, BLOCK: tl.constexpr):
    g = tl.program_id(0)
    start, m, q, inb, orig, x1, y1, x2, y2 = _load_members(b_ptr, ids_ptr, start_ptr, len_ptr, g, BLOCK)
    thr = tl.load(prm_ptr)  # float64: the decisions compare in double, as the C++ kernel
    min_score = tl.load(prm_ptr + 1)
    sigma = tl.load(sig_ptr)  # the compute dtype
    area = (x2 - x1) * (y2 - y1)
    cur = tl.load(s_ptr + orig, mask=inb, other=0.0)
    alive = inb & (cur == cur)  # NaN scores are dropped
    if OPENCV:
        alive = alive & (cur.to(tl.float64) > min_score)
    neg_inf = float("-inf")
    big = 0x7FFFFFFFFFFFFFFF
    k = tl.zeros([], tl.int64)
    first = tl.full([], 1, tl.int32)
    go = tl.sum(alive.to(tl.int32), 0) > 0
    while go:
        # The pick: NaN first (only inf * 0 makes one), else the largest score; ties by index.
        nan_m = alive & (cur != cur)
        has_nan = tl.max(nan_m.to(tl.int32), 0) > 0
        mx = tl.max(tl.where(alive & (cur == cur), cur, neg_inf), 0)
        cand = tl.where(has_nan, nan_m, alive & (cur == mx))
        p = tl.min(tl.where(cand, orig, big), 0)
        sel = inb & (orig == p)
        if cur.dtype == tl.float64:
            ps = tl.sum(tl.where(sel, cur.to(tl.int64, bitcast=True), 0), 0).to(tl.float64, bitcast=True)
        else:
            ps = tl.sum(tl.where(sel, cur.to(tl.int32, bitcast=True), 0), 0).to(tl.float32, bitcast=True)
        take = tl.full([], 1, tl.int1)
        if OPENCV:
            take = ~(ps.to(tl.float64) < min_score)
        tl.store(oi_ptr + start + k, p, mask=take)
        tl.store(os_ptr + start + k, ps, mask=take)
        k += take.to(tl.int64)
        alive = alive & ~sel
        if not OPENCV:
            # mmcv drops every box under min_score after each pick: only the first pick can
            # find an undecayed one, later ones check the boxes they decay.
            alive = alive & ~((first != 0) & (cur.to(tl.float64) < min_score))
        first = first * 0
        px1, py1, px2, py2 = _load_box(b_ptr, p, True)
        pa = (px2 - px1) * (py2 - py1)
        iw = clamp_min0(dmin(px2, x2) - dmax(px1, x1))
        ih = clamp_min0(dmin(py2, y2) - dmax(py1, y1))
        inter = iw * ih
        v = fdiv(inter, pa + area - inter)
        if GAUSS:
            if v.dtype == tl.float32:
                w = libm_expf(fdiv(-(v * v), sigma), tab_ptr, c_ptr)
            else:
                w = tl.exp(fdiv(-(v * v), sigma))
        else:
            if OPENCV:
                hit = v.to(tl.float64) > thr
            else:
                hit = v.to(tl.float64) >= thr
            w = tl.where(hit, 1.0 - v, 1.0)
        # Only a positive overlap changes a score (the C++ kernel skips the others).
        upd = alive & (v > 0)
        cur = tl.where(upd, cur * w, cur)
        if not OPENCV:
            alive = alive & ~(upd & (cur.to(tl.float64) < min_score))
        go = take & (tl.sum(alive.to(tl.int32), 0) > 0)
    tl.store(cnt_ptr + g, k)


@triton.jit
def _diou_kernel(b_ptr, ids_ptr, start_ptr, len_ptr, thr_ptr, keep_ptr, BLOCK: tl.constexpr):
    g = tl.program_id(0)
    start, m, q, inb, orig, x1, y1, x2, y2 = _load_members(b_ptr, ids_ptr, start_ptr, len_ptr, g, BLOCK)
    thr = tl.load(thr_ptr)
    dead = tl.zeros([BLOCK], tl.int32)
    for i in range(0, m):
        if tl.sum(tl.where(q == i, dead, 0), 0) == 0:
            oi = tl.load(ids_ptr + start + i)
            tl.store(keep_ptr + oi, 1)
            ax1, ay1, ax2, ay2 = _load_box(b_ptr, oi, True)
            d = pair_iou(ax1, ay1, ax2, ay2, x1, y1, x2, y2, 0.0, 2, False)
            dead = tl.where((q > i) & inb & (d > thr), 1, dead)


def _groups(scores: torch.Tensor, idxs):
    """Members of each category in priority order (stable descending score, NaN first):
    ids int64 Tensor[N] and per category its start and length (int64 Tensor[G] each)."""
    n = scores.shape[0]
    order = torch.sort(scores, descending=True, stable=True)[1]
    if idxs is None:
        lens = torch.tensor([n], dtype=torch.int64, device=scores.device)
    else:
        lab, perm = torch.sort(idxs.to(torch.int64)[order], stable=True)
        order = order[perm]
        lens = torch.unique_consecutive(lab, return_counts=True)[1]
    starts = torch.cumsum(lens, 0) - lens
    return order.contiguous(), starts.contiguous(), lens.contiguous()


def _block(lens: torch.Tensor) -> int:
    return max(16, triton.next_power_of_2(int(lens.max())))


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs, iou_threshold: float, sigma: float, min_score: float,
             method: str, convention: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of torch.ops.detseg.soft_nms: (kept indices int64 Tensor[K], decayed scores Tensor[K]),
    by decayed score descending, ties by index ascending."""
    _checks.soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score, method, convention)
    dt = compute_dtype(boxes)
    dev = boxes.device
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev), torch.zeros(0, dtype=dt, device=dev)
    b = boxes.to(dt).contiguous()
    s = scores.to(dt).contiguous()
    ids, starts, lens = _groups(s, idxs)
    prm = torch.tensor([float(iou_threshold), float(min_score)], dtype=torch.float64, device=dev)
    sig = torch.tensor([float(sigma)], dtype=dt, device=dev)
    oi = torch.empty(n, dtype=torch.int64, device=dev)
    os_ = torch.empty(n, dtype=dt, device=dev)
    cnt = torch.empty(lens.shape[0], dtype=torch.int64, device=dev)
    tab, c = _expf_tables(dev)
    launch(_soft_kernel, (lens.shape[0],), b, s, ids, starts, lens, prm, sig, oi, os_, cnt, tab, c,
           GAUSS=method == "gaussian", OPENCV=convention == "opencv", BLOCK=_block(lens))
    # slot j of category g holds its (j - start_g)-th pick; the first cnt_g slots are written
    grp = torch.repeat_interleave(torch.arange(lens.shape[0], device=dev), lens)
    valid = torch.arange(n, device=dev) - starts[grp] < cnt[grp]
    pos, val = oi[valid], os_[valid]
    o = torch.sort(pos)[1]  # index ascending, then a stable descending score sort
    pos, val = pos[o], val[o]
    o = torch.sort(val, descending=True, stable=True)[1]
    return pos[o], val[o]


def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs, iou_threshold: float) -> torch.Tensor:
    """Twin of torch.ops.detseg.diou_nms: kept indices int64 Tensor[K] by decreasing score
    (ties by index)."""
    _checks.diou_nms(boxes, scores, idxs, iou_threshold)
    dt = compute_dtype(boxes)
    dev = boxes.device
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    b = boxes.to(dt).contiguous()
    s = scores.to(dt).contiguous()
    ids, starts, lens = _groups(s, idxs)
    thr = torch.tensor([nms_threshold(float(iou_threshold), dt)], dtype=dt, device=dev)
    keep = torch.zeros(n, dtype=torch.int32, device=dev)
    launch(_diou_kernel, (lens.shape[0],), b, ids, starts, lens, thr, keep, BLOCK=_block(lens))
    kept = torch.nonzero(keep).reshape(-1)
    return kept[torch.sort(s[kept], descending=True, stable=True)[1]]
