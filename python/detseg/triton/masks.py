"""Triton kernels of the mask family: confusion_matrix (per-program histograms of the bins of
csrc/include/detseg/masks.h, summed on the host: integers, so any order gives the same counts)
and mask_iou (a blocked matmul of the masks as 0/1 halves with float32 accumulation, exact
below 2^24 pixels, and the IoU epilogue of detseg::mask_pair_iou). masks_to_boxes and
paste_masks_in_image have no Triton kernel yet ("auto" falls back to detseg.reference)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import reference
from ..ops import _checks
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
def _confusion_hist_kernel(p_ptr, t_ptr, part_ptr, per, C, IGNORE, HAS_IGNORE: tl.constexpr, NB: tl.constexpr,
                           BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    img = tl.program_id(1).to(tl.int64)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < per
    p = tl.load(p_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    t = tl.load(t_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    b = _bins(p, t, C, IGNORE, HAS_IGNORE)
    b = tl.where(m, b, NB - 1)  # masked lanes land in a spare bin (NB > C*C + 2), dropped on the host
    h = tl.histogram(b.to(tl.int32), NB)
    tl.store(part_ptr + (img * tl.num_programs(0) + pid) * NB + tl.arange(0, NB), h)


@triton.jit
def _confusion_atomic_kernel(p_ptr, t_ptr, hist_ptr, per, C, IGNORE, HAS_IGNORE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    img = tl.program_id(1).to(tl.int64)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < per
    p = tl.load(p_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    t = tl.load(t_ptr + img * per + offs, mask=m, other=0).to(tl.int64)
    b = _bins(p, t, C, IGNORE, HAS_IGNORE)
    tl.atomic_add(hist_ptr + img * (C * C + 2) + b, tl.full(b.shape, 1, tl.int64), mask=m)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None,
                     per_image: bool = False, invalid: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    _checks.confusion_matrix(pred, target, num_classes, per_image, invalid)
    c = int(num_classes)
    bins = c * c + 2
    batch = pred.shape[0] if per_image else 1
    p = pred.reshape(batch, -1).contiguous()
    t = target.reshape(batch, -1).contiguous()
    if p.dtype == torch.bool:
        p = p.to(torch.uint8)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    per = p.shape[1]
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
    bad = hist[:, c * c + 1]
    if invalid == "error" and int(bad.sum()) > 0:
        reference.confusion_matrix(pred, target, num_classes, ignore_index, per_image, invalid)  # raises, naming the pixel
    matrix = hist[:, : c * c].reshape(batch, c, c)
    if not per_image:
        return matrix[0].contiguous(), bad[0].clone()
    return matrix.contiguous(), bad.clone()


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
