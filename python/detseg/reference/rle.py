"""Pure-PyTorch twins of the RLE ops (pycocotools' run-length format), mirroring
csrc/include/detseg/rle.h. Same internal names and signatures as torch.ops.detseg.rle_*:
a batch of N RLEs is (counts int64 Tensor[total], offsets int64 Tensor[N + 1]) of runs, or
(chars uint8 Tensor[total], offsets) of compressed strings."""

from __future__ import annotations

import torch

from ..ops import _checks

_MAX_PIXELS = 1 << 32


def _offsets(lengths: list[int]) -> torch.Tensor:
    off = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    if lengths:
        off[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    return off


def _split(values: torch.Tensor, offsets: torch.Tensor) -> list[torch.Tensor]:
    o = offsets.tolist()
    return [values[o[i]:o[i + 1]] for i in range(len(o) - 1)]


def _check_masks(op: str, masks: torch.Tensor) -> None:
    _checks.tensor(op, "masks", masks)
    if masks.dim() != 3:
        _checks.fail(op, f"masks must be a Tensor[N, H, W], got shape {list(masks.shape)}")
    if masks.dtype not in (torch.bool, torch.uint8):
        _checks.fail(op, f"masks must be a bool or uint8 tensor, got {masks.dtype}", TypeError)


def _runs_of(op: str, masks: torch.Tensor) -> list[torch.Tensor]:
    _check_masks(op, masks)
    n, h, w = masks.shape
    if masks.dtype == torch.uint8 and masks.numel() and int(masks.max()) > 1:
        _checks.fail(op, "masks must be binary (uint8 values 0 or 1), got another value")
    # Column-major pixels (x outer, y inner), a leading 0 so that the first run is a 0-run.
    flat = masks.to(torch.int8).transpose(1, 2).reshape(n, h * w)
    out = []
    for i in range(n):
        x = torch.cat([torch.zeros(1, dtype=torch.int8), flat[i]])
        change = torch.nonzero(x[1:] != x[:-1]).flatten()
        bounds = torch.cat([torch.zeros(1, dtype=torch.int64), change, torch.tensor([h * w])])
        out.append(torch.diff(bounds))
    return out


def rle_encode(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    runs = _runs_of("rle_encode", masks)
    counts = torch.cat(runs) if runs else torch.zeros(0, dtype=torch.int64)
    return counts, _offsets([len(r) for r in runs])


def _to_string(runs: list[int]) -> bytes:
    out = bytearray()
    for i, x in enumerate(runs):
        if i > 2:  # pycocotools' delta to two runs back starts at the fourth run
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)


def _from_string(s: bytes) -> list[int]:
    runs: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more and p < len(s):
            c = (s[p] if s[p] < 128 else s[p] - 256) - 48  # a C char is signed
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x & 0xFFFFFFFF)
    return runs


def _chars(parts: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    data = b"".join(parts)
    chars = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    return chars, _offsets([len(p) for p in parts])


def rle_encode_string(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _chars([_to_string(r.tolist()) for r in _runs_of("rle_encode_string", masks)])


def rle_counts_to_string(counts: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _chars([_to_string(r.tolist()) for r in _split(counts, offsets)])


def rle_string_to_counts(chars: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    data = bytes(chars.numpy().tobytes())
    o = offsets.tolist()
    runs = [_from_string(data[o[i]:o[i + 1]]) for i in range(len(o) - 1)]
    counts = torch.tensor([x for r in runs for x in r], dtype=torch.int64)
    return counts, _offsets([len(r) for r in runs])


def rle_decode(counts: torch.Tensor, offsets: torch.Tensor, height: int, width: int) -> torch.Tensor:
    a = height * width
    out = torch.zeros(len(offsets) - 1, width, height, dtype=torch.bool)
    for i, r in enumerate(_split(counts, offsets)):
        if int(r.sum()) > a:
            _checks.fail("rle_decode", f"the runs of RLE {i} sum past height * width = {a}")
        vals = (torch.arange(len(r)) % 2).bool()
        flat = torch.repeat_interleave(vals, r)
        out[i].view(-1)[:flat.numel()] = flat
    return out.transpose(1, 2)


def rle_area(counts: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return torch.tensor([int(r[1::2].sum()) for r in _split(counts, offsets)], dtype=torch.int64)


def _bbox(runs: list[int], h: int, w: int) -> list[float]:
    # pycocotools' rleToBbox in uint32 arithmetic (the trailing 0-run dropped; a 1-run that
    # wraps into the next column spans the full height).
    m = (len(runs) // 2) * 2
    if m == 0 or h == 0:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys, xe, ye, cc, xp = w, h, 0, 0, 0, 0
    for j in range(m):
        cc = (cc + runs[j]) & 0xFFFFFFFF
        t = (cc - j % 2) & 0xFFFFFFFF
        y = t % h
        x = (t - y) // h
        if j % 2 == 0:
            xp = x
        elif xp < x:
            ys, ye = 0, h - 1
        xs, xe, ys, ye = min(xs, x), max(xe, x), min(ys, y), max(ye, y)
    return [float(xs), float(ys), float((xe - xs + 1) & 0xFFFFFFFF), float((ye - ys + 1) & 0xFFFFFFFF)]


def rle_to_bbox(counts: torch.Tensor, offsets: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    s = sizes.tolist()
    boxes = [_bbox(r.tolist(), s[i][0], s[i][1]) for i, r in enumerate(_split(counts, offsets))]
    return torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)


def bbox_iou_coco(dt: torch.Tensor, gt: torch.Tensor, iscrowd: torch.Tensor) -> torch.Tensor:
    """pycocotools' bbIou: ``Tensor[D, 4]`` x ``Tensor[G, 4]`` xywh float64 -> ``Tensor[D, G]``
    (crowd columns: intersection / detection area). fmin / fmax ignore NaN as in C."""
    d = dt.double()[:, None, :]
    g = gt.double()[None, :, :]
    w = torch.fmin(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - torch.fmax(d[..., 0], g[..., 0])
    h = torch.fmin(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - torch.fmax(d[..., 1], g[..., 1])
    inter = w * h
    da = d[..., 2] * d[..., 3]
    union = torch.where(iscrowd.bool()[None, :], da, da + g[..., 2] * g[..., 3] - inter)
    iou = inter / union
    return torch.where((w <= 0) | (h <= 0), torch.zeros_like(iou), iou)


def rle_iou(dt_counts, dt_offsets, dt_sizes, gt_counts, gt_offsets, gt_sizes, iscrowd) -> torch.Tensor:
    dbb = rle_to_bbox(dt_counts, dt_offsets, dt_sizes)
    gbb = rle_to_bbox(gt_counts, gt_offsets, gt_sizes)
    crowd = iscrowd.bool()
    out = bbox_iou_coco(dbb, gbb, crowd)
    ds, gs = dt_sizes.tolist(), gt_sizes.tolist()
    druns, gruns = _split(dt_counts, dt_offsets), _split(gt_counts, gt_offsets)
    for i in range(len(druns)):
        dm = rle_decode(druns[i], torch.tensor([0, len(druns[i])]), *ds[i])[0]
        for j in range(len(gruns)):
            if not out[i, j] > 0:
                out[i, j] = 0.0
                continue
            if ds[i] != gs[j]:
                out[i, j] = -1.0
                continue
            gm = rle_decode(gruns[j], torch.tensor([0, len(gruns[j])]), *gs[j])[0]
            inter = int((dm & gm).sum())
            union = int(dm.sum()) if crowd[j] else int((dm | gm).sum())
            out[i, j] = 0.0 if inter == 0 else inter / union
    return out
