"""Run-length encoded masks, compatible with pycocotools' ``mask`` module byte for byte.

An RLE is a dict ``{"size": [h, w], "counts": bytes}`` (compressed, as pycocotools returns;
``str`` counts from JSON and uncompressed ``list`` counts are accepted on input). Masks are
``Tensor[N, H, W]`` (bool or uint8 0/1) in torch's layout; pixels are read column-major as in
pycocotools (a mask laid out column-major, e.g. ``torch.from_numpy(fortran_hwn).permute(2, 0, 1)``,
is read in place). The batched tensor forms pass runs as ``(counts int64 Tensor[total], offsets
int64 Tensor[N + 1])``. CPU only: run-length coding is a sequential scan per mask, so there is no
CUDA or Triton kernel (GPU masks are copied to the host).

The compressed string is built in C++ (one pass from the mask, no intermediate runs tensor)
and sliced into ``bytes`` per mask in Python: measured faster than building the dicts in C++.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .. import _backend
from . import _checks

__all__ = ["rle_encode", "rle_decode", "rle_area", "rle_to_bbox", "rle_iou", "rle_encode_runs",
           "rles_to_runs", "runs_to_rles", "rle_from_polygons"]

_CPU = torch.device("cpu")


def _masks3(op: str, masks) -> tuple[torch.Tensor, bool]:
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(masks)
    _checks.tensor(op, "masks", masks)
    if masks.dim() not in (2, 3):
        _checks.fail(op, f"masks must be a Tensor[N, H, W] or Tensor[H, W], got shape {list(masks.shape)}")
    if masks.dtype not in (torch.bool, torch.uint8):
        _checks.fail(op, f"masks must be a bool or uint8 tensor, got {masks.dtype}", TypeError)
    single = masks.dim() == 2
    return (masks[None] if single else masks).cpu(), single


def rle_encode_runs(masks: torch.Tensor, *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Runs of ``Tensor[N, H, W]`` masks: ``(counts int64 Tensor[total], offsets int64 Tensor[N + 1])``."""
    m, _ = _masks3("rle_encode", masks)
    return _backend.dispatch("rle_encode", backend, _CPU, m)


def _dicts(chars: torch.Tensor, offsets: torch.Tensor, sizes: list[list[int]]) -> list[dict]:
    buf = chars.numpy().tobytes()
    o = offsets.tolist()
    return [{"size": sizes[i], "counts": buf[o[i]:o[i + 1]]} for i in range(len(o) - 1)]


def rle_encode(masks, *, backend: str = "auto") -> list[dict] | dict:
    """pycocotools ``mask.encode``: ``Tensor[N, H, W]`` -> N dicts (``Tensor[H, W]`` -> one dict)."""
    m, single = _masks3("rle_encode", masks)
    chars, off = _backend.dispatch("rle_encode_string", backend, _CPU, m)
    out = _dicts(chars, off, [[int(m.shape[1]), int(m.shape[2])] for _ in range(m.shape[0])])
    return out[0] if single else out


def _rle_list(op: str, rles) -> list[dict]:
    if isinstance(rles, dict):
        rles = [rles]
    if not isinstance(rles, (list, tuple)):
        _checks.fail(op, f"rles must be an RLE dict or a list of them, got {type(rles).__name__}", TypeError)
    for i, r in enumerate(rles):
        if not isinstance(r, dict) or "size" not in r or "counts" not in r:
            _checks.fail(op, f"rles[{i}] must be a dict with 'size' and 'counts', got {type(r).__name__}", TypeError)
    return list(rles)


def rles_to_runs(rles: Sequence[dict] | dict, *, backend: str = "auto",
                 op: str = "rles_to_runs") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RLE dicts -> ``(counts int64 Tensor[total], offsets int64 Tensor[N + 1], sizes int64 Tensor[N, 2])``."""
    rles = _rle_list(op, rles)
    n = len(rles)
    sizes = torch.tensor([list(r["size"]) for r in rles], dtype=torch.int64).reshape(n, 2)
    compressed = [i for i, r in enumerate(rles) if not isinstance(r["counts"], (list, tuple, np.ndarray))]
    parts: list[Any] = [None] * n
    if compressed:
        strs = [rles[i]["counts"] for i in compressed]
        strs = [s.encode("ascii") if isinstance(s, str) else bytes(s) for s in strs]
        data = b"".join(strs)
        chars = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
        lens = np.fromiter((len(s) for s in strs), np.int64, len(strs))
        soff = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]))
        counts, coff = _backend.dispatch("rle_string_to_counts", backend, _CPU, chars, soff)
        if len(compressed) == n:
            return counts, coff, sizes
        co = coff.tolist()
        for j, i in enumerate(compressed):
            parts[i] = counts[co[j]:co[j + 1]]
    for i in range(n):
        if parts[i] is None:
            parts[i] = torch.as_tensor(np.asarray(rles[i]["counts"], dtype=np.int64))
    lens = [len(p) for p in parts]
    off = torch.zeros(n + 1, dtype=torch.int64)
    if n:
        off[1:] = torch.cumsum(torch.tensor(lens, dtype=torch.int64), 0)
    counts = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    return counts, off, sizes


def runs_to_rles(counts: torch.Tensor, offsets: torch.Tensor, sizes: torch.Tensor, *,
                 backend: str = "auto") -> list[dict]:
    """Runs (and ``sizes Tensor[N, 2]``) -> compressed RLE dicts."""
    chars, off = _backend.dispatch("rle_counts_to_string", backend, _CPU, counts, offsets)
    return _dicts(chars, off, sizes.tolist())


def rle_decode(rles, *, backend: str = "auto") -> torch.Tensor:
    """pycocotools ``mask.decode``: N dicts of one size -> bool ``Tensor[N, H, W]`` (one dict ->
    ``Tensor[H, W]``), column-major strides per mask as pycocotools' Fortran arrays."""
    single = isinstance(rles, dict)
    counts, off, sizes = rles_to_runs(rles, backend=backend, op="rle_decode")
    if len(sizes) == 0:
        return torch.zeros(0, 0, 0, dtype=torch.bool)
    if not bool((sizes == sizes[0]).all()):
        _checks.fail("rle_decode", f"rles must all have the same size, got {sizes.unique(dim=0).tolist()}")
    h, w = (int(v) for v in sizes[0])
    out = _backend.dispatch("rle_decode", backend, _CPU, counts, off, h, w)
    return out[0] if single else out


def rle_area(rles, *, backend: str = "auto") -> torch.Tensor:
    """pycocotools ``mask.area``: int64 ``Tensor[N]`` of foreground pixels."""
    counts, off, _ = rles_to_runs(rles, backend=backend, op="rle_area")
    return _backend.dispatch("rle_area", backend, _CPU, counts, off)


def rle_to_bbox(rles, *, backend: str = "auto") -> torch.Tensor:
    """pycocotools ``mask.toBbox``: float64 ``Tensor[N, 4]`` xywh (an empty mask gives zeros)."""
    counts, off, sizes = rles_to_runs(rles, backend=backend, op="rle_to_bbox")
    return _backend.dispatch("rle_to_bbox", backend, _CPU, counts, off, sizes)


def rle_iou(dt, gt, iscrowd=None, *, backend: str = "auto") -> torch.Tensor:
    """pycocotools ``mask.iou(dt, gt, iscrowd)`` on RLEs: float64 ``Tensor[D, G]``. A crowd GT
    scores intersection / detection area; masks of different sizes whose boxes overlap give -1."""
    dc, do, ds = rles_to_runs(dt, backend=backend, op="rle_iou")
    gc, go, gs = rles_to_runs(gt, backend=backend, op="rle_iou")
    g = len(gs)
    crowd = torch.zeros(g, dtype=torch.bool) if iscrowd is None else torch.as_tensor(iscrowd).bool().reshape(-1)
    if crowd.numel() != g:
        _checks.fail("rle_iou", f"iscrowd must have one entry per gt ({g}), got {crowd.numel()}")
    return _backend.dispatch("rle_iou", backend, _CPU, dc, do, ds, gc, go, gs, crowd)


def _polygon_runs(xy: np.ndarray, h: int, w: int) -> list[int]:
    # pycocotools' rleFrPoly, operation for operation: vertices scaled by 5 and rounded, every
    # edge walked densely along its major axis, the points where x steps kept (as column
    # boundaries), sorted and turned into runs. C's (int) truncates toward zero and maps NaN to
    # INT_MIN (x86), which a degenerate (zero-length) edge produces.
    def c_int(v: np.ndarray) -> np.ndarray:
        out = np.trunc(np.nan_to_num(v, nan=-2.0 ** 31))
        return out.astype(np.int64)

    scale = 5.0
    k = len(xy) // 2
    x = c_int(scale * xy[0:2 * k:2] + .5)
    y = c_int(scale * xy[1:2 * k:2] + .5)
    x = np.append(x, x[0])
    y = np.append(y, y[0])
    us, vs = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(k):
            xs, xe, ys, ye = int(x[j]), int(x[j + 1]), int(y[j]), int(y[j + 1])
            dx, dy = abs(xe - xs), abs(ys - ye)
            flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
            if flip:
                xs, xe, ys, ye = xe, xs, ye, ys
            if dx >= dy:
                s = np.float64(ye - ys) / np.float64(dx)
                d = np.arange(dx + 1)
                t = dx - d if flip else d
                us.append(t + xs)
                vs.append(c_int(ys + s * t + .5))
            else:
                s = np.float64(xe - xs) / np.float64(dy)
                d = np.arange(dy + 1)
                t = dy - d if flip else d
                vs.append(t + ys)
                us.append(c_int(xs + s * t + .5))
    u = np.concatenate(us) if us else np.zeros(0, np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, np.int64)
    step = np.nonzero(u[1:] != u[:-1])[0] + 1
    uj, up, vj, vp = u[step], u[step - 1], v[step], v[step - 1]
    xd = (np.where(uj < up, uj, uj - 1).astype(np.float64) + .5) / scale - .5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
    yd = (np.where(vj < vp, vj, vp).astype(np.float64) + .5) / scale - .5
    yd = np.ceil(np.where(yd < 0, 0, np.where(yd > h, h, yd)))
    a = ((xd[keep].astype(np.int64) * h + yd[keep].astype(np.int64)) & 0xFFFFFFFF).tolist()
    a.append(h * w)
    a.sort()
    prev = 0
    for j in range(len(a)):
        a[j], prev = (a[j] - prev) & 0xFFFFFFFF, a[j]
    b = [a[0]]
    j = 1
    while j < len(a):
        if a[j] > 0:
            b.append(a[j])
            j += 1
        else:
            j += 1
            if j < len(a):
                b[-1] += a[j]
                j += 1
    return b


def rle_from_polygons(polygons: Sequence[Sequence[float]], height: int, width: int, *,
                      backend: str = "auto") -> dict:
    """pycocotools ``merge(frPyObjects(polygons, h, w))``: COCO polygons ``[[x0, y0, x1, y1, ...], ...]``
    -> one compressed RLE dict (the union of the parts). Rasterised in numpy."""
    h, w = int(height), int(width)
    parts = [_polygon_runs(np.asarray(p, dtype=np.float64), h, w) for p in polygons]
    if not parts:
        return {"size": [0, 0], "counts": b""}  # pycocotools' merge of nothing
    off = torch.tensor(np.concatenate([[0], np.cumsum([len(p) for p in parts])]), dtype=torch.int64)
    counts = torch.tensor([c for p in parts for c in p], dtype=torch.int64)
    if len(parts) > 1:
        masks = _backend.dispatch("rle_decode", backend, _CPU, counts, off, h, w)
        counts, off = _backend.dispatch("rle_encode", backend, _CPU, masks.any(0, keepdim=True))
    return runs_to_rles(counts, off, torch.tensor([[h, w]]), backend=backend)[0]
