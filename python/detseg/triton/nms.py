"""Triton NMS and class-aware (batched) NMS.

Pipeline (no host round trip but the final kept count):
  1. stable descending sort of the scores (torch.sort on the host side of the launcher:
     NaN first, ties in input order); batched: then a stable sort by class, so each class is
     a contiguous segment in score order;
  2. `_nms_mask_kernel`: bitmask of suppressions over BR x BC tiles, one int64 word per 64
     candidates; bit (i, j) set iff j > i, j in i's class segment and box i suppresses box j
     (the rule of csrc/include/detseg/nms.h, mirrored in `_suppresses`);
  3. `_nms_unwrap_kernel`: one program walks the rows in priority order (the current
     64-row word of the removed mask in a register, the rest in memory), keeping row i iff
     no kept row before it suppressed it;
  4. order-preserving compaction of the kept flags (`_utils.compact`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ..reference import nms_threshold
from ._utils import clamp_min0, compact, compute_dtype, dmax, dmin, fdiv, interpreted, launch, pow2


@triton.jit
def _suppresses(ix1, iy1, ix2, iy2, area_i, jx1, jy1, jx2, jy2, area_j, thr):
    """detseg::nms_suppresses (csrc/include/detseg/nms.h): IoU > threshold, strictly; the
    intersection sides clamped at 0, no eps. A NaN IoU never compares greater."""
    w = clamp_min0(dmin(ix2, jx2) - dmax(ix1, jx1))
    h = clamp_min0(dmin(iy2, jy2) - dmax(iy1, jy1))
    inter = w * h
    return fdiv(inter, area_i + area_j - inter) > thr


@triton.jit
def _load_sorted(b_ptr, s0, s1, order_ptr, pos, m, CT: tl.constexpr):
    src = tl.load(order_ptr + pos, mask=m, other=0)
    p = b_ptr + src * s0
    x1 = tl.load(p, mask=m, other=0).to(CT)
    y1 = tl.load(p + s1, mask=m, other=0).to(CT)
    x2 = tl.load(p + 2 * s1, mask=m, other=0).to(CT)
    y2 = tl.load(p + 3 * s1, mask=m, other=0).to(CT)
    return x1, y1, x2, y2


@triton.jit
def _nms_mask_kernel(b_ptr, s0, s1, order_ptr, segend_ptr, thr_ptr, mask_ptr, n, n_words,
                     BATCHED: tl.constexpr, CT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    # Tile rows [r0, r0 + BR), columns [c0, c0 + BC); BR and BC are multiples of 64, so a
    # tile holds whole words. The unwrap reads, for the 64-row block b, words
    # [b, ceil(segend(last row of b) / 64)): tiles outside that band are never read and are
    # skipped without being written.
    r0 = tl.program_id(0).to(tl.int64) * BR
    c0 = tl.program_id(1).to(tl.int64) * BC
    if BATCHED:
        limit = tl.load(segend_ptr + tl.minimum(r0 + BR, n) - 1)
    else:
        limit = n
    read_end = (limit + 63) // 64 * 64
    if (c0 + BC > r0) & (c0 < read_end):
        rows = r0 + tl.arange(0, BR)
        cols = c0 + tl.arange(0, BC)
        mr = rows < n
        mc = cols < n
        thr = tl.load(thr_ptr)
        ix1, iy1, ix2, iy2 = _load_sorted(b_ptr, s0, s1, order_ptr, rows, mr, CT)
        jx1, jy1, jx2, jy2 = _load_sorted(b_ptr, s0, s1, order_ptr, cols, mc, CT)
        area_i = (ix2 - ix1) * (iy2 - iy1)
        area_j = (jx2 - jx1) * (jy2 - jy1)
        sup = _suppresses(ix1[:, None], iy1[:, None], ix2[:, None], iy2[:, None], area_i[:, None],
                          jx1[None, :], jy1[None, :], jx2[None, :], jy2[None, :], area_j[None, :], thr)
        valid = (cols[None, :] > rows[:, None]) & mc[None, :]
        if BATCHED:
            seg = tl.load(segend_ptr + rows, mask=mr, other=0)
            valid = valid & (cols[None, :] < seg[:, None])
        lane = (tl.arange(0, BC) % 64).to(tl.int64)
        bits = tl.where(sup & valid, tl.full([BR, BC], 1, tl.int64) << lane[None, :], 0)
        # the 64 bits of a word are distinct powers of two: their sum is their OR (and the
        # interpreter runs builtin reductions vectorised, custom combine functions per element)
        words = tl.sum(tl.reshape(bits, (BR, BC // 64, 64)), 2)
        widx = c0 // 64 + tl.arange(0, BC // 64)
        ptrs = mask_ptr + rows[:, None] * n_words + widx[None, :]
        tl.store(ptrs, words, mask=mr[:, None] & (widx[None, :] < n_words))


@triton.jit
def _nms_unwrap_kernel(mask_ptr, removed_ptr, keep_ptr, perm_ptr, segend_ptr, n, n_words,
                       BATCHED: tl.constexpr, CHUNK: tl.constexpr):
    # Greedy unwrap in one program; removed_ptr: n_words zeroed int64 words. Block b of 64
    # rows: `cur` (register) is word b of the removed mask; row i is kept iff its bit is clear,
    # and a kept row ORs its diagonal word into `cur` and its later words into memory (only
    # words inside its class segments can be nonzero). A row's bit is only ever set by earlier
    # rows, so the block's final `cur` holds exactly its suppressed rows. Keep flags go to
    # keep[perm[i]]. Few ops per row: the interpreter's cost is per op.
    lane = tl.arange(0, 64)
    wofs = tl.arange(0, CHUNK)
    for b in range(0, n_words):
        row0 = b * 64 + tl.zeros([], tl.int64)  # int64: row0 * n_words may pass 2^31
        nrows = tl.minimum(n - row0, 64)
        if BATCHED:
            wend = (tl.load(segend_ptr + row0 + nrows - 1) + 63) // 64
        else:
            wend = n_words
        cur = tl.load(removed_ptr + b)
        row = mask_ptr + row0 * n_words  # row r of the block
        for r in range(0, nrows):
            alive = ((cur >> r) & 1) == 0
            cur = cur | tl.where(alive, tl.load(row + b), 0)
            lim = tl.where(alive, wend, b + 1)  # a suppressed row propagates nothing
            for w0 in range(b + 1, lim, CHUNK):
                widx = w0 + wofs
                wm = widx < lim
                later = tl.load(row + widx, mask=wm, other=0)
                old = tl.load(removed_ptr + widx, mask=wm, other=0)
                tl.store(removed_ptr + widx, old | later, mask=wm)
            row += n_words
        rmask = lane < nrows
        kept = ((cur >> lane.to(tl.int64)) & 1) == 0
        dst = tl.load(perm_ptr + row0 + lane, mask=rmask, other=0)
        tl.store(keep_ptr + dst, kept.to(tl.int8), mask=rmask)
        # the next block reads word b + 1, which other threads may have written
        tl.debug_barrier()


def _nms_sorted(boxes: torch.Tensor, order: torch.Tensor, perm: torch.Tensor, segend: torch.Tensor | None,
                iou_threshold: float) -> torch.Tensor:
    """Keep flags (int8, indexed by perm) of greedy NMS over boxes[order] in that order."""
    n = order.numel()
    ct = compute_dtype(boxes)
    dev = boxes.device
    n_words = triton.cdiv(n, 64)
    thr = torch.tensor([nms_threshold(iou_threshold, ct)], dtype=ct, device=dev)
    mask = torch.empty((n, n_words), dtype=torch.int64, device=dev)
    removed = torch.zeros(n_words, dtype=torch.int64, device=dev)
    keep = torch.empty(n, dtype=torch.int8, device=dev)
    batched = segend is not None
    seg = segend if batched else order  # unused when not batched
    if interpreted(boxes):
        br, bc = 128, pow2(n_words * 64, 64, 1024)
        chunk = pow2(n_words, 16, 1024)
    else:
        br, bc, chunk = 64, 128, 128
    ct_tl = tl.float64 if ct == torch.float64 else tl.float32
    launch(_nms_mask_kernel, (triton.cdiv(n, br), triton.cdiv(n, bc)), boxes, boxes.stride(0), boxes.stride(1),
           order, seg, thr, mask, n, n_words, BATCHED=batched, CT=ct_tl, BR=br, BC=bc)
    launch(_nms_unwrap_kernel, (1,), mask, removed, keep, perm, seg, n, n_words, BATCHED=batched, CHUNK=chunk)
    return keep


def _score_order(scores: torch.Tensor) -> torch.Tensor:
    # Stable descending sort; torch.sort ranks NaN above +inf, as every backend does.
    return torch.sort(scores, descending=True, stable=True)[1]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Tensor[N, 4] xyxy, Tensor[N] -> Tensor[K] int64: kept indices by decreasing score
    (equal scores in input order). Suppression iff IoU > iou_threshold, strictly."""
    _checks.nms(boxes, scores, iou_threshold)
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)
    ident = torch.arange(n, device=boxes.device)
    keep = _nms_sorted(boxes, order, ident, None, float(iou_threshold))
    return compact(keep, order)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each category of `idxs` (Tensor[N] int): boxes of different categories are
    never compared, so the result is exact for any finite coordinates. Kept indices sorted by
    score descending, ties by index ascending (NaN first)."""
    _checks.batched_nms(boxes, scores, idxs, iou_threshold)
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)  # score order, ties by index
    cls = idxs[order]
    by_class = torch.sort(cls, stable=True)[1]  # classes contiguous, score order inside
    combined = order[by_class]
    cls_sorted = cls[by_class].contiguous()
    segend = torch.searchsorted(cls_sorted, cls_sorted, right=True)
    # keep flags land at score-order positions (perm = by_class), so the compaction of
    # `order` is already sorted by score, ties by index
    keep = _nms_sorted(boxes, combined, by_class, segend, float(iou_threshold))
    return compact(keep, order)
