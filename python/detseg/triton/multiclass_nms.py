"""Triton fused detection post-processing (multiclass_nms; CPU kernel csrc/cpu/multiclass_nms.cpp,
reference composition python/detseg/reference/postprocess.py).

Pipeline, every image of the batch at once (host syncs: the number of keys that pass, the
widest image's candidate count, which sizes the decode and NMS problems):
  1. `_activate_kernel` / `_softmax_kernel`: the score activation (detseg/postprocess.h) and
     the strict threshold (> the float32-rounded-down threshold, NaN never passes, the
     background class never passes) into one key per (anchor, class): the activated score,
     or -inf where it does not pass (a passing score is never -inf), -0.0 keyed as +0.0 (so
     the order never depends on how a sort treats signed zeros; only activation "none" can
     yield -0.0, and its output score is read back from the raw scores);
  2. torch: the passing keys compacted, then stable sorts by (level or image, score
     descending) (ties keep the flat index n * C + c order, -0.0 ties with +0.0, as the C++
     keys): the top k of each level, then of the image;
  3. `_decode_kernel`: gathers each candidate's box (shared or per class), decodes it against
     its anchor (detseg::decode_box, detseg/box_coder.h) and clips it to the image;
  4. the class-aware NMS of triton/nms.py (`_nms_sorted`: bitmask + greedy unwrap) on groups
     (image, class) or (image) when class-agnostic, candidates in priority order;
  5. torch: the first max_detections kept candidates of each image, scattered into the
     padded outputs.

exp is tl.exp (numpy's in the interpreter, the GPU's fast exp on CUDA), not the C library's
exp of the CPU kernel: with a sigmoid / softmax activation or anchors (decoding), the result is
the reference composition evaluated with `exp` below (bitwise; the tests check it), and may
differ from the CPU kernel where an exp result differs in its last bit. Without exp (boxes and
score_activation="none") it equals the CPU kernel bitwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ..reference import nms_threshold
from ._utils import fdiv, interpreted, launch, pow2
from .box_coder import coder_params, decode_box
from .nms import _nms_sorted

@triton.jit
def _exp_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(out_ptr + i, tl.exp(tl.load(x_ptr + i, mask=m, other=0.0)), mask=m)


def exp(t: torch.Tensor) -> torch.Tensor:
    """The exp of this backend's kernels, elementwise (the `exp` with which the reference
    composition reproduces this backend bitwise)."""
    x = t.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        block = pow2(n, 16, 4096 if interpreted(x) else 1024)
        launch(_exp_kernel, (triton.cdiv(n, block),), x, out, n, BLOCK=block)
    return out


@triton.jit
def _activate_kernel(s_ptr, key_ptr, thr_ptr, total, c, bg, SIGMOID: tl.constexpr, BLOCK: tl.constexpr):
    # One lane per (image, anchor, class), scores contiguous [B, N, C].
    f = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = f < total
    x = tl.load(s_ptr + f, mask=m, other=0.0)
    if SIGMOID:
        x = fdiv(tl.full(x.shape, 1.0, x.dtype), 1.0 + tl.exp(-x))  # detseg::sigmoid
    ok = (x > tl.load(thr_ptr)) & ((f % c) != bg)
    # -0.0 keyed as +0.0: the two tie in every sort (the launcher outputs the raw score)
    tl.store(key_ptr + f, tl.where(ok, tl.where(x == 0.0, 0.0, x), float("-inf")), mask=m)


@triton.jit
def _softmax_kernel(s_ptr, key_ptr, thr_ptr, rows, c, bg, BLOCK: tl.constexpr):
    # One lane per row of C scores: detseg::softmax_row (NaN-propagating max, the sum in class
    # order, a sequential loop rather than a tree reduction, so the rounding is the C++ one).
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = r < rows
    base = s_ptr + r * c
    mx = tl.load(base, mask=m, other=0.0)
    for k in range(1, c):
        x = tl.load(base + k, mask=m, other=0.0)
        mx = tl.where((mx == mx) & ~(x <= mx), x, mx)
    total = tl.zeros_like(mx)
    for k in range(0, c):
        total = total + tl.exp(tl.load(base + k, mask=m, other=0.0) - mx)
    thr = tl.load(thr_ptr)
    for k in range(0, c):
        v = fdiv(tl.exp(tl.load(base + k, mask=m, other=0.0) - mx), total)
        ok = (v > thr) & (k != bg)
        tl.store(key_ptr + r * c + k, tl.where(ok, v, float("-inf")), mask=m)


@triton.jit
def _decode_kernel(flat_ptr, b_ptr, bsb, bsn, bsc, bs4, a_ptr, asb, asn, as4, prm_ptr, out_ptr, total, p, c,
                   PER_CLASS: tl.constexpr, ANCHORS: tl.constexpr, CLIP: tl.constexpr, CT: tl.constexpr,
                   BLOCK: tl.constexpr):
    # One lane per candidate (image, rank); flat index n * C + c of the image; out [B, P, 4].
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = q < total
    img = q // p
    f = tl.load(flat_ptr + q, mask=m, other=0)
    n = f // c
    bp = b_ptr + img * bsb + n * bsn
    if PER_CLASS:
        bp += (f % c) * bsc
    x1 = tl.load(bp, mask=m, other=0.0).to(CT)
    y1 = tl.load(bp + bs4, mask=m, other=0.0).to(CT)
    x2 = tl.load(bp + 2 * bs4, mask=m, other=0.0).to(CT)
    y2 = tl.load(bp + 3 * bs4, mask=m, other=0.0).to(CT)
    if ANCHORS:
        # (x1, y1, x2, y2) are the deltas here
        wx, wy, ww, wh, clip = coder_params(prm_ptr, CT)
        ap = a_ptr + img * asb + n * asn
        ax1 = tl.load(ap, mask=m, other=0.0).to(CT)
        ay1 = tl.load(ap + as4, mask=m, other=0.0).to(CT)
        ax2 = tl.load(ap + 2 * as4, mask=m, other=1.0).to(CT)
        ay2 = tl.load(ap + 3 * as4, mask=m, other=1.0).to(CT)
        x1, y1, x2, y2 = decode_box(x1, y1, x2, y2, ax1, ay1, ax2, ay2, wx, wy, ww, wh, clip)
    if CLIP:
        # torch.clamp(min=0, max=size): NaN passes through
        hgt = tl.load(prm_ptr + 5).to(CT)
        wid = tl.load(prm_ptr + 6).to(CT)
        x1 = tl.where(x1 < 0.0, 0.0, tl.where(x1 > wid, wid, x1))
        y1 = tl.where(y1 < 0.0, 0.0, tl.where(y1 > hgt, hgt, y1))
        x2 = tl.where(x2 < 0.0, 0.0, tl.where(x2 > wid, wid, x2))
        y2 = tl.where(y2 < 0.0, 0.0, tl.where(y2 > hgt, hgt, y2))
    o = out_ptr + 4 * q
    tl.store(o, x1, mask=m)
    tl.store(o + 1, y1, mask=m)
    tl.store(o + 2, x2, mask=m)
    tl.store(o + 3, y2, mask=m)


def _by_segment(v: torch.Tensor, seg: torch.Tensor):
    """Order of candidates (held in (image, flat index) order) by (segment ascending, score
    descending, position ascending): two stable sorts. Returns (order, the ordered segments,
    the rank of each ordered candidate in its segment)."""
    o = torch.sort(v, descending=True, stable=True)[1]
    o = o[torch.sort(seg[o], stable=True)[1]]
    s = seg[o].contiguous()
    rank = torch.arange(s.numel(), device=s.device) - torch.searchsorted(s, s)
    return o, s, rank


def _candidates(key: torch.Tensor, c: int, levels: list[int], level_top_k: int, pre_nms_top_k: int):
    """Keys [B, N * C] -> (scores [B, P], flat indices [B, P]) in priority order, -inf where an
    image has fewer than P candidates. The passing keys are compacted first, so the sorts cost
    what the candidates do, not B * N * C. Host syncs: nonzero's count, P. (The same steps as
    `candidates` of csrc/cuda/multiclass_nms.cu.)"""
    bsz, nc = key.shape
    b, f = torch.nonzero(key != float("-inf"), as_tuple=True)  # (image, flat index) ascending
    m = b.numel()
    v = key.reshape(-1)[b * nc + f]
    seg = b
    if level_top_k >= 0 and m > 0:
        # level of a flat index: the number of level ends (in flat units) at or below it
        ends = torch.tensor(levels, dtype=torch.int64).cumsum(0).mul_(c).to(key.device)
        o, _, rank = _by_segment(v, b * len(levels) + torch.searchsorted(ends, f, right=True))
        # dropped by its level: segment bsz, after every image, never written out
        seg = torch.empty_like(b)
        seg[o] = torch.where(rank < level_top_k, b[o], bsz)
    o, s, rank = _by_segment(v, seg)
    p = int(rank.masked_fill(s >= bsz, -1).max()) + 1 if m else 0
    if pre_nms_top_k >= 0:
        p = min(p, pre_nms_top_k)
    vals = torch.full((bsz, p), float("-inf"), dtype=key.dtype, device=key.device)
    flat = torch.zeros((bsz, p), dtype=torch.int64, device=key.device)
    if p > 0:
        ok = (s < bsz) & (rank < p)
        q = s * p + rank
        vals.view(-1)[q[ok]] = v[o][ok]
        flat.view(-1)[q[ok]] = f[o][ok]
    return vals, flat


# Candidates per NMS call: the suppression bitmask is n^2 / 8 bytes.
_NMS_CHUNK = 8192


def _nms_keep(dec: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Keep flags (bool) of greedy NMS within each group, over candidates dec [M, 4] whose
    order is the priority order inside every group."""
    combined = torch.sort(groups, stable=True)[1]  # groups contiguous, priority order inside
    g = groups[combined].contiguous()
    segend = torch.searchsorted(g, g, right=True)
    return _nms_sorted(dec, combined, combined, segend, iou_threshold) != 0


def multiclass_nms(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold, level_sizes,
                   level_top_k, pre_nms_top_k, iou_threshold, max_detections, class_agnostic, background_class,
                   score_activation):
    """Twin of torch.ops.detseg.multiclass_nms (schema in csrc/ops.cpp): boxes Tensor[B, N, 4] or
    Tensor[B, N, C, 4] (deltas with anchors Tensor[N, 4] / Tensor[B, N, 4]), scores Tensor[B, N, C]
    -> (num_detections int64 Tensor[B], boxes Tensor[B, K, 4], scores Tensor[B, K], classes int64
    Tensor[B, K], anchor indices int64 Tensor[B, K])."""
    _checks.multiclass_nms(boxes, scores, anchors, weights, bbox_xform_clip, image_size, score_threshold,
                           level_sizes, level_top_k, pre_nms_top_k, iou_threshold, max_detections, class_agnostic,
                           background_class, score_activation)
    bsz, n, c = scores.shape
    k = int(max_detections)
    dev, dt = scores.device, scores.dtype
    num = torch.zeros(bsz, dtype=torch.int64, device=dev)
    ob = torch.zeros(bsz, k, 4, dtype=dt, device=dev)
    os_ = torch.zeros(bsz, k, dtype=dt, device=dev)
    oc = torch.full((bsz, k), -1, dtype=torch.int64, device=dev)
    oi = torch.full((bsz, k), -1, dtype=torch.int64, device=dev)
    if bsz == 0 or n == 0 or c == 0 or k == 0:
        return num, ob, os_, oc, oi

    big = interpreted(scores)
    s = scores.contiguous()
    key = torch.empty(bsz, n * c, dtype=dt, device=dev)
    thr = torch.tensor([nms_threshold(float(score_threshold), dt)], dtype=dt, device=dev)
    bg = int(background_class)
    if score_activation == "softmax":
        rows = bsz * n
        block = pow2(rows, 16, 1024 if big else 128)
        launch(_softmax_kernel, (triton.cdiv(rows, block),), s, key, thr, rows, c, bg, BLOCK=block)
    else:
        total = bsz * n * c
        block = pow2(total, 16, 8192 if big else 1024)
        launch(_activate_kernel, (triton.cdiv(total, block),), s, key, thr, total, c, bg,
               SIGMOID=score_activation == "sigmoid", BLOCK=block)

    levels = [int(v) for v in level_sizes] or [n]
    vals, flat = _candidates(key, c, levels, int(level_top_k), int(pre_nms_top_k))
    p = vals.shape[1]
    if p == 0:
        return num, ob, os_, oc, oi
    valid = vals != float("-inf")

    ct = tl.float64 if dt == torch.float64 else tl.float32
    prm = torch.tensor([*(float(w) for w in weights), float(bbox_xform_clip),
                        *(float(v) for v in (image_size or (0, 0)))], dtype=torch.float64, device=dev)
    per_class = boxes.dim() == 4
    bsb, bsn = boxes.stride(0), boxes.stride(1)
    bsc = boxes.stride(2) if per_class else 0
    bs4 = boxes.stride(-1)
    if anchors is not None:
        asb = anchors.stride(0) if anchors.dim() == 3 else 0
        asn, as4 = anchors.stride(-2), anchors.stride(-1)
        a = anchors
    else:
        asb = asn = as4 = 0
        a = boxes
    dec = torch.empty(bsz, p, 4, dtype=dt, device=dev)
    total = bsz * p
    block = pow2(total, 16, 4096 if big else 256)
    launch(_decode_kernel, (triton.cdiv(total, block),), flat, boxes, bsb, bsn, bsc, bs4, a, asb, asn, as4, prm,
           dec, total, p, c, PER_CLASS=per_class, ANCHORS=anchors is not None, CLIP=len(image_size) > 0, CT=ct,
           BLOCK=block)

    # NMS groups: (image, class), or (image) when class-agnostic; a position without a
    # candidate is a group of its own (never compared), so no compaction (and no sync) is needed.
    img = torch.arange(bsz, device=dev)[:, None]
    cls = flat % c
    groups = img * c + (0 if class_agnostic else cls)
    pos = torch.arange(total, device=dev).view(bsz, p)
    groups = torch.where(valid, groups, bsz * c + pos)
    keep = torch.empty(bsz, p, dtype=torch.bool, device=dev)
    per_call = max(1, _NMS_CHUNK // p)
    for b0 in range(0, bsz, per_call):
        b1 = min(bsz, b0 + per_call)
        keep[b0:b1] = _nms_keep(dec[b0:b1].reshape(-1, 4), groups[b0:b1].reshape(-1), float(iou_threshold)).view(
            b1 - b0, p)
    keep &= valid

    # First K kept of each image, in priority order, into the padded outputs; the rest go to
    # a spare slot at the end that is dropped.
    rank = torch.cumsum(keep, 1) - 1
    sel = keep & (rank < k)
    num.copy_(sel.sum(1))
    dst = torch.where(sel, img * k + rank, bsz * k).reshape(-1)
    if score_activation == "none":
        vals = s.view(bsz, n * c).gather(1, flat)  # the raw bits (-0.0 was keyed as +0.0)
    for out, src in ((ob, dec), (os_, vals), (oc, cls), (oi, flat // c)):
        spare = torch.zeros((bsz * k + 1, *out.shape[2:]), dtype=out.dtype, device=dev)
        spare[:-1] = out.reshape(bsz * k, *out.shape[2:])
        spare.index_put_((dst,), src.reshape(bsz * p, *out.shape[2:]))
        out.copy_(spare[:-1].view(out.shape))
    return num, ob, os_, oc, oi
