"""Triton kernels of the mask family: confusion_matrix (per-program histograms of the bins of
csrc/include/detseg/masks.h, summed on the host: integers, so any order gives the same counts)
and mask_iou (a blocked matmul of the masks as 0/1 halves with float32 accumulation, exact
below 2^24 pixels, and the IoU epilogue of detseg::mask_pair_iou), masks_to_boxes (a min / max
reduction per mask) and paste_masks_in_image (one lane per output pixel, the taps of
detseg::resize_tap / grid_sample_tap)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import reference
from ..ops import _checks
from ..reference.masks import boxes_init, confusion_layout, confusion_outputs
from ._utils import interpreted, launch

# Beyond this many bins a per-program histogram costs more than it saves: atomics instead.
_MAX_HIST_BINS = 4096


@triton.jit
def _bins(p, t, C, IGNORE, HAS_IGNORE: tl.constexpr):
    # detseg::confusion_bin: ignored target -> C*C, a label outside [0, C) -> C*C + 1
    valid = (p >= 0) & (p < C) & (t >= 0) & (t < C)
    b = tl.where(valid, t * C + p, C * C + 1)
    if HAS_IGNORE:
        b = tl.where(t == IGNORE, C * C, b)
    return b


@triton.jit
def _block_bins(p_ptr, t_ptr, per, C, IGNORE, HAS_IGNORE: tl.constexpr, BLOCK: tl.constexpr):
    # program (pixel block, image): its block index, image, lane mask and the lanes' bins
    pid = tl.program_id(0)
    img = tl.program_id(1).to(tl.int64)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < per
    p = tl.load(p_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    t = tl.load(t_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    return pid, img, m, _bins(p, t, C, IGNORE, HAS_IGNORE)


@triton.jit
def _confusion_hist_kernel(p_ptr, t_ptr, part_ptr, per, C, IGNORE, HAS_IGNORE: tl.constexpr, NB: tl.constexpr,
                           BLOCK: tl.constexpr):
    pid, img, m, b = _block_bins(p_ptr, t_ptr, per, C, IGNORE, HAS_IGNORE, BLOCK)
    b = tl.where(m, b, NB - 1)  # masked lanes land in a spare bin (NB > C*C + 2), dropped on the host
    h = tl.histogram(b.to(tl.int32), NB)
    tl.store(part_ptr + (img * tl.num_programs(0) + pid) * NB + tl.arange(0, NB), h)


@triton.jit
def _confusion_atomic_kernel(p_ptr, t_ptr, hist_ptr, per, C, IGNORE, HAS_IGNORE: tl.constexpr, BLOCK: tl.constexpr):
    pid, img, m, b = _block_bins(p_ptr, t_ptr, per, C, IGNORE, HAS_IGNORE, BLOCK)
    tl.atomic_add(hist_ptr + img * (C * C + 2) + b, tl.full(b.shape, 1, tl.int64), mask=m)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None,
                     per_image: bool = False, invalid: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    c, p, t = confusion_layout(pred, target, num_classes, per_image, invalid)
    p, t = p.contiguous(), t.contiguous()
    (batch, per), bins = p.shape, c * c + 2
    if p.dtype == torch.bool:
        p = p.to(torch.uint8)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    # A label can equal ignore_index only when its dtype represents it (as the C++ kernel).
    info = torch.iinfo(t.dtype)
    has_ignore = ignore_index is not None and info.min <= int(ignore_index) <= info.max
    ign = int(ignore_index) if has_ignore else 0
    block = 1 << 16 if interpreted(p) else 1024
    hist = torch.zeros(batch, bins, dtype=torch.int64, device=pred.device)
    if per > 0 and batch > 0:
        grid = (triton.cdiv(per, block), batch)
        nb = triton.next_power_of_2(bins + 1)
        if nb <= _MAX_HIST_BINS:
            part = torch.empty(batch, grid[0], nb, dtype=torch.int32, device=pred.device)
            launch(_confusion_hist_kernel, grid, p, t, part, per, c, ign, HAS_IGNORE=has_ignore, NB=nb, BLOCK=block)
            hist = part.sum(1, dtype=torch.int64)[:, :bins].contiguous()
        else:
            launch(_confusion_atomic_kernel, grid, p, t, hist, per, c, ign, HAS_IGNORE=has_ignore, BLOCK=block)
    if invalid == "error" and int(hist[:, c * c + 1].sum()) > 0:
        # raises, naming the first offending pixel
        reference.confusion_matrix(pred, target, num_classes, ignore_index, per_image, invalid)
    return confusion_outputs(hist, c, per_image)


@triton.jit
def _mask_iou_kernel(a_ptr, b_ptr, area1_ptr, area2_ptr, crowd_ptr, out_ptr, N, M, K, HAS_CROWD: tl.constexpr,
                     BN: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    cols = tl.program_id(1).to(tl.int64) * BM + tl.arange(0, BM)
    rm, cm = rows < N, cols < M
    acc = tl.zeros((BN, BM), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        km = ks < K
        a = tl.load(a_ptr + rows[:, None] * K + ks[None, :], mask=rm[:, None] & km[None, :], other=0).to(tl.float16)
        b = tl.load(b_ptr + cols[:, None] * K + ks[None, :], mask=cm[:, None] & km[None, :], other=0).to(tl.float16)
        acc += tl.dot(a, tl.trans(b))
    inter = acc.to(tl.float64)
    a1 = tl.load(area1_ptr + rows, mask=rm, other=0).to(tl.float64)
    a2 = tl.load(area2_ptr + cols, mask=cm, other=0).to(tl.float64)
    den = a1[:, None] + a2[None, :] - inter
    if HAS_CROWD:
        crowd = tl.load(crowd_ptr + cols, mask=cm, other=0) != 0
        den = tl.where(crowd[None, :], a1[:, None] + 0.0 * a2[None, :], den)
    iou = tl.where(den > 0, inter / tl.where(den > 0, den, 1.0), 0.0)  # detseg::mask_pair_iou
    tl.store(out_ptr + rows[:, None] * M + cols[None, :], iou.to(tl.float32), mask=rm[:, None] & cm[None, :])


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor, iscrowd: torch.Tensor | None = None) -> torch.Tensor:
    _checks.mask_iou(masks1, masks2, iscrowd)
    n, m = masks1.shape[0], masks2.shape[0]
    k = masks1.shape[1] * masks1.shape[2]
    if k >= (1 << 24):  # float32 accumulation would not be exact
        return reference.mask_iou(masks1, masks2, iscrowd)
    a = masks1.reshape(n, k).contiguous().view(torch.uint8)
    b = masks2.reshape(m, k).contiguous().view(torch.uint8)
    for arg, x in (("masks1", a), ("masks2", b)):
        if x.numel() and int(x.max()) > 1:
            _checks.non_binary_error("mask_iou", arg, int(x[x > 1][0]))
    out = torch.empty(n, m, dtype=torch.float32, device=masks1.device)
    if n == 0 or m == 0:
        return out
    area1 = a.sum(1, dtype=torch.int64)
    area2 = b.sum(1, dtype=torch.int64)
    crowd = iscrowd.contiguous() if iscrowd is not None else area2
    bn, bm = 32, 32
    bk = 4096 if interpreted(a) else 128
    grid = (triton.cdiv(n, bn), triton.cdiv(m, bm))
    launch(_mask_iou_kernel, grid, a, b, area1, area2, crowd, out, n, m, k, HAS_CROWD=iscrowd is not None,
           BN=bn, BM=bm, BK=bk)
    return out


@triton.jit
def _bounds_kernel(m_ptr, out_ptr, H, W, BLOCK: tl.constexpr):
    k = tl.program_id(0).to(tl.int64)
    hw = H * W
    big = hw + W + H
    x0 = tl.full((BLOCK,), big, tl.int64)
    y0 = tl.full((BLOCK,), big, tl.int64)
    x1 = tl.full((BLOCK,), -1, tl.int64)
    y1 = tl.full((BLOCK,), -1, tl.int64)
    for s in range(0, hw, BLOCK):
        offs = s + tl.arange(0, BLOCK).to(tl.int64)
        inb = offs < hw
        nz = (tl.load(m_ptr + k * hw + offs, mask=inb, other=0) != 0) & inb
        x = offs % W
        y = offs // W
        x0 = tl.minimum(x0, tl.where(nz, x, big))
        y0 = tl.minimum(y0, tl.where(nz, y, big))
        x1 = tl.maximum(x1, tl.where(nz, x, -1))
        y1 = tl.maximum(y1, tl.where(nz, y, -1))
    bx0, by0, bx1, by1 = tl.min(x0, 0), tl.min(y0, 0), tl.max(x1, 0), tl.max(y1, 0)
    empty = bx1 < 0
    tl.store(out_ptr + 4 * k, tl.where(empty, 0, bx0).to(tl.float32))
    tl.store(out_ptr + 4 * k + 1, tl.where(empty, 0, by0).to(tl.float32))
    tl.store(out_ptr + 4 * k + 2, tl.where(empty, 0, bx1).to(tl.float32))
    tl.store(out_ptr + 4 * k + 3, tl.where(empty, 0, by1).to(tl.float32))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    out, empty = boxes_init(masks)
    if empty:
        return out
    n, h, w = masks.shape
    m = masks.contiguous()
    if m.dtype == torch.bool:
        m = m.view(torch.uint8)
    block = triton.next_power_of_2(min(h * w, 1 << 16 if interpreted(m) else 2048))
    launch(_bounds_kernel, (n,), m, out, h, w, BLOCK=block)
    return out


@triton.jit
def _resize_tap(dst, in_size, out_size, CT: tl.constexpr):
    # detseg::resize_tap (upsample_bilinear2d, align_corners=False)
    scale = in_size.to(CT) / out_size.to(CT)
    src = scale * (dst.to(CT) + 0.5) - 0.5
    src = tl.where(src < 0, 0.0, src)
    i0 = tl.minimum(src.to(tl.int64), in_size - 1)
    l1 = src - i0.to(CT)
    l1 = tl.where(l1 < 0, 0.0, tl.where(l1 > 1, 1.0, l1))
    i1 = tl.where(i0 + 1 < in_size, i0 + 1, in_size - 1)
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _grid_tap(dst, lo, hi, size, CT: tl.constexpr):
    # detseg::grid_sample_tap (grid_sample, align_corners=False, zeros padding); ok = any tap
    g = ((dst.to(CT) + 0.5) - lo) / (hi - lo) * 2.0 - 1.0
    src = ((g + 1.0) * size.to(CT) - 1.0) / 2.0
    f = tl.floor(src)
    ok = (f >= -2.0) & (f <= size.to(CT) + 1.0)
    f = tl.where(ok, f, -4.0)
    i0 = f.to(tl.int64)
    l1 = tl.where(ok, src - f, 0.0)
    l0 = tl.where(ok, (f + 1.0) - src, 0.0)
    return i0, i0 + 1, l0, l1


@triton.jit
def _paste_kernel(m_ptr, b_ptr, ib_ptr, out_ptr, H, W, MH, MW, PAD, THR, TORCHVISION: tl.constexpr,
                  THRESHOLD: tl.constexpr, CT: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = offs < H * W
    x = offs % W
    y = offs // W
    mask = m_ptr + k * MH * MW
    if TORCHVISION:
        bx0 = tl.load(ib_ptr + 4 * k)
        by0 = tl.load(ib_ptr + 4 * k + 1)
        bx1 = tl.load(ib_ptr + 4 * k + 2)
        by1 = tl.load(ib_ptr + 4 * k + 3)
        inside = inb & (x >= bx0) & (x <= bx1) & (y >= by0) & (y <= by1)
        ow = tl.maximum(bx1 - bx0 + 1, 1)
        oh = tl.maximum(by1 - by0 + 1, 1)
        xi0, xi1, lx0, lx1 = _resize_tap(x - bx0, MW + 2 * PAD, ow, CT)
        yi0, yi1, ly0, ly1 = _resize_tap(y - by0, MH + 2 * PAD, oh, CT)
        xi0, xi1, yi0, yi1 = xi0 - PAD, xi1 - PAD, yi0 - PAD, yi1 - PAD
        okx0, okx1 = (xi0 >= 0) & (xi0 < MW), (xi1 >= 0) & (xi1 < MW)
        oky0, oky1 = (yi0 >= 0) & (yi0 < MH), (yi1 >= 0) & (yi1 < MH)
        v00 = tl.load(mask + yi0 * MW + xi0, mask=inside & oky0 & okx0, other=0).to(CT)
        v01 = tl.load(mask + yi0 * MW + xi1, mask=inside & oky0 & okx1, other=0).to(CT)
        v10 = tl.load(mask + yi1 * MW + xi0, mask=inside & oky1 & okx0, other=0).to(CT)
        v11 = tl.load(mask + yi1 * MW + xi1, mask=inside & oky1 & okx1, other=0).to(CT)
        v = ly0 * (lx0 * v00 + lx1 * v01) + ly1 * (lx0 * v10 + lx1 * v11)
        v = tl.where(inside, v, 0.0)
    else:
        x_lo = tl.load(b_ptr + 4 * k).to(CT)
        y_lo = tl.load(b_ptr + 4 * k + 1).to(CT)
        x_hi = tl.load(b_ptr + 4 * k + 2).to(CT)
        y_hi = tl.load(b_ptr + 4 * k + 3).to(CT)
        xi0, xi1, lx0, lx1 = _grid_tap(x, x_lo, x_hi, MW, CT)
        yi0, yi1, ly0, ly1 = _grid_tap(y, y_lo, y_hi, MH, CT)
        okx0, okx1 = (xi0 >= 0) & (xi0 < MW), (xi1 >= 0) & (xi1 < MW)
        oky0, oky1 = (yi0 >= 0) & (yi0 < MH), (yi1 >= 0) & (yi1 < MH)
        v = tl.zeros((BLOCK,), CT)
        v += tl.where(oky0 & okx0, tl.load(mask + yi0 * MW + xi0, mask=inb & oky0 & okx0, other=0).to(CT)
                      * (lx0 * ly0), 0.0)
        v += tl.where(oky0 & okx1, tl.load(mask + yi0 * MW + xi1, mask=inb & oky0 & okx1, other=0).to(CT)
                      * (lx1 * ly0), 0.0)
        v += tl.where(oky1 & okx0, tl.load(mask + yi1 * MW + xi0, mask=inb & oky1 & okx0, other=0).to(CT)
                      * (lx0 * ly1), 0.0)
        v += tl.where(oky1 & okx1, tl.load(mask + yi1 * MW + xi1, mask=inb & oky1 & okx1, other=0).to(CT)
                      * (lx1 * ly1), 0.0)
    if THRESHOLD:
        tl.store(out_ptr + k * H * W + offs, (v >= THR).to(tl.int8), mask=inb)
    else:
        tl.store(out_ptr + k * H * W + offs, v.to(out_ptr.dtype.element_ty), mask=inb)


def _torchvision_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """detseg::torchvision_paste_box for every box: ``Tensor[N, 4]`` int64 (non-finite -> empty)."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    e = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], 1)
    lim = float(1 << 40)
    ib = e.nan_to_num(0.0).clamp(-lim, lim).to(torch.int64)
    bad = ~torch.isfinite(e).all(1)
    return torch.where(bad[:, None], torch.tensor([0, 0, -1, -1], device=boxes.device), ib).contiguous()


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int = 1,
                         convention: str = "torchvision", threshold: float | None = None) -> torch.Tensor:
    _checks.paste_masks(masks, boxes, height, width, padding, convention)
    n, mh, mw = masks.shape
    ct = torch.float64 if masks.dtype == torch.float64 else torch.float32
    m = masks.to(ct).contiguous()
    b = boxes.to(ct).contiguous()
    out_dt = torch.bool if threshold is not None else masks.dtype
    store_dt = torch.int8 if threshold is not None else ct
    out = torch.empty(n, height, width, dtype=store_dt, device=masks.device)
    if n and height and width:
        tv = convention == "torchvision"
        ib = _torchvision_boxes(b, float(mw + 2 * padding) / mw) if tv else b
        block = triton.next_power_of_2(min(height * width, 1 << 16 if interpreted(m) else 1024))
        grid = (n, triton.cdiv(height * width, block))
        launch(_paste_kernel, grid, m, b, ib, out, height, width, mh, mw, padding,
               float(threshold) if threshold is not None else 0.0, TORCHVISION=tv,
               THRESHOLD=threshold is not None, CT=tl.float64 if ct == torch.float64 else tl.float32, BLOCK=block)
    return out.view(torch.bool) if threshold is not None else out.to(out_dt)
