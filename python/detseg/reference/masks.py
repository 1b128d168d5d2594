"""Pure-PyTorch twins of the mask ops (internal names and signatures of csrc/ops.cpp). They
mirror csrc/include/detseg/masks.h: the confusion bins (C * C classes + an ignored and an
invalid tally), the IoU of a mask pair from exact counts, and the two pasting conventions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..ops import _checks

# Elements per chunk of the mask IoU matmul (float32: 64 MiB per operand chunk).
_CHUNK = 1 << 24


def confusion_layout(pred: torch.Tensor, target: torch.Tensor, num_classes: int, per_image: bool,
                     invalid: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Checks the arguments -> (C, pred Tensor[batch, per], target Tensor[batch, per]): one
    histogram of C * C + 2 bins per row (shared with the Triton launcher)."""
    _checks.confusion_matrix(pred, target, num_classes, per_image, invalid)
    batch = pred.shape[0] if per_image else 1
    per = pred.numel() // batch if batch else 0  # explicit: reshape(0, -1) is ambiguous
    return int(num_classes), pred.reshape(batch, per), target.reshape(batch, per)


def confusion_outputs(hist: torch.Tensor, c: int, per_image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """hist int64 Tensor[batch, C * C + 2] -> (matrix Tensor[(batch,) C, C], invalid Tensor[(batch,)])."""
    bad = hist[:, c * c + 1]
    matrix = hist[:, : c * c].reshape(hist.shape[0], c, c)
    if not per_image:
        return matrix[0].contiguous(), bad[0].clone()
    return matrix.contiguous(), bad.clone()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None,
                     per_image: bool = False, invalid: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    c, p, t = confusion_layout(pred, target, num_classes, per_image, invalid)
    p, t = p.long(), t.long()
    batch, bins = p.shape[0], c * c + 2
    valid = (p >= 0) & (p < c) & (t >= 0) & (t < c)
    idx = torch.where(valid, t * c + p, torch.full_like(t, c * c + 1))
    if ignore_index is not None:
        idx = torch.where(t == ignore_index, torch.full_like(t, c * c), idx)
    idx = idx + torch.arange(batch, device=idx.device)[:, None] * bins
    hist = torch.bincount(idx.reshape(-1), minlength=batch * bins).reshape(batch, bins)
    if invalid == "error" and int(hist[:, c * c + 1].sum()) > 0:
        flat = (idx.reshape(-1) % bins == c * c + 1).nonzero()[0, 0]
        i = int(flat)
        _checks.confusion_invalid_error(i, int(pred.reshape(-1)[i]), int(target.reshape(-1)[i]), c)
    return confusion_outputs(hist, c, per_image)


def _require_binary(arg: str, m: torch.Tensor) -> None:
    if m.dtype == torch.uint8 and m.numel() and int(m.max()) > 1:
        _checks.non_binary_error("mask_iou", arg, int(m[m > 1][0]))


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor, iscrowd: torch.Tensor | None = None) -> torch.Tensor:
    _checks.mask_iou(masks1, masks2, iscrowd)
    _require_binary("masks1", masks1)
    _require_binary("masks2", masks2)
    n, m = masks1.shape[0], masks2.shape[0]
    hw = masks1.shape[1] * masks1.shape[2]
    # Exact integer sums: float32 holds them below 2^24 pixels, float64 beyond.
    dt = torch.float32 if hw < (1 << 24) else torch.float64
    a = masks1.reshape(n, hw)
    b = masks2.reshape(m, hw).to(dt)
    area1 = a.sum(1, dtype=torch.float64)
    area2 = masks2.reshape(m, hw).sum(1, dtype=torch.float64)
    rows = max(1, _CHUNK // max(hw, 1))
    inter = torch.empty(n, m, dtype=torch.float64, device=masks1.device)
    for s in range(0, n, rows):
        inter[s:s + rows] = (a[s:s + rows].to(dt) @ b.T).double()
    union = area1[:, None] + area2[None, :] - inter
    denom = union if iscrowd is None else torch.where(iscrowd[None, :], area1[:, None].expand(n, m), union)
    iou = torch.where(denom > 0, inter / denom.clamp(min=1), torch.zeros_like(inter))
    return iou.float()


def boxes_init(masks: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Checks masks_to_boxes' argument -> (zeros Tensor[N, 4] float32, whether N, H or W is 0,
    leaving nothing to scan); shared with the Triton launcher."""
    _checks.masks_to_boxes(masks)
    n, h, w = masks.shape
    return torch.zeros(n, 4, dtype=torch.float32, device=masks.device), n == 0 or h == 0 or w == 0


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    out, empty = boxes_init(masks)
    if empty:
        return out
    n, h, w = masks.shape
    nz = masks != 0
    rows = nz.any(2)  # [N, H]
    cols = nz.any(1)  # [N, W]
    empty = ~rows.any(1)
    # argmax of a bool row gives its first True (0 when none: masked out below).
    y0 = rows.byte().argmax(1)
    y1 = h - 1 - rows.flip(1).byte().argmax(1)
    x0 = cols.byte().argmax(1)
    x1 = w - 1 - cols.flip(1).byte().argmax(1)
    out = torch.stack([x0, y0, x1, y1], 1).float()
    return out.masked_fill(empty[:, None], 0.0)


def _torchvision_box(box: torch.Tensor, scale: float) -> list[int] | None:
    """masks.h torchvision_paste_box: expand by scale (in box's dtype), truncate to int."""
    w_half = (box[2] - box[0]) * 0.5 * scale
    h_half = (box[3] - box[1]) * 0.5 * scale
    x_c = (box[2] + box[0]) * 0.5
    y_c = (box[3] + box[1]) * 0.5
    e = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half])
    if not bool(torch.isfinite(e).all()):
        return None
    lim = float(1 << 40)
    return [int(v) for v in e.clamp(-lim, lim).tolist()]


def _paste_torchvision(mask: torch.Tensor, box: torch.Tensor, height: int, width: int, padding: int,
                       out: torch.Tensor) -> None:
    mh, mw = mask.shape
    b = _torchvision_box(box, float(mw + 2 * padding) / mw)
    if b is None:
        return
    x0, y0 = max(b[0], 0), max(b[1], 0)
    x1, y1 = min(b[2] + 1, width), min(b[3] + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    w, h = max(b[2] - b[0] + 1, 1), max(b[3] - b[1] + 1, 1)
    padded = F.pad(mask[None, None], (padding,) * 4)
    resized = F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    out[y0:y1, x0:x1] = resized[y0 - b[1]:y1 - b[1], x0 - b[0]:x1 - b[0]]


def _paste_detectron2(mask: torch.Tensor, box: torch.Tensor, height: int, width: int, out: torch.Tensor) -> None:
    # grid_sample of the pixel centres normalised into the box (detectron2 _do_paste_mask),
    # over the rows/columns within two mask pixels of the box: beyond, every tap is zero padding.
    mh, mw = mask.shape
    x0, y0, x1, y1 = (float(v) for v in box.tolist())
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return

    def span(lo, hi, size, m):
        if hi == lo:
            return 0, 0
        margin = 2.0 * abs(hi - lo) / m + 2.0
        a = max(0, int(math.floor(min(lo, hi) - margin)))
        b = min(size, int(math.ceil(max(lo, hi) + margin)))
        return a, max(a, b)

    xa, xb = span(x0, x1, width, mw)
    ya, yb = span(y0, y1, height, mh)
    if xb <= xa or yb <= ya:
        return
    dt = mask.dtype
    img_y = torch.arange(ya, yb, dtype=dt, device=mask.device) + 0.5
    img_x = torch.arange(xa, xb, dtype=dt, device=mask.device) + 0.5
    img_y = (img_y - box[1]) / (box[3] - box[1]) * 2 - 1
    img_x = (img_x - box[0]) / (box[2] - box[0]) * 2 - 1
    gx = img_x[None, :].expand(yb - ya, xb - xa)
    gy = img_y[:, None].expand(yb - ya, xb - xa)
    grid = torch.stack([gx, gy], dim=2)[None]
    out[ya:yb, xa:xb] = F.grid_sample(mask[None, None], grid, mode="bilinear", padding_mode="zeros",
                                      align_corners=False)[0, 0]


def paste_masks_in_image(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int = 1,
                         convention: str = "torchvision", threshold: float | None = None) -> torch.Tensor:
    _checks.paste_masks(masks, boxes, height, width, padding, convention)
    n = masks.shape[0]
    ct = torch.float64 if masks.dtype == torch.float64 else torch.float32
    m = masks.to(ct)
    b = boxes.to(ct)
    out_dt = torch.bool if threshold is not None else masks.dtype
    out = torch.empty(n, height, width, dtype=out_dt, device=masks.device)
    plane = torch.empty(height, width, dtype=ct, device=masks.device)
    for i in range(n):  # one image plane at a time: memory stays O(H * W)
        plane.zero_()
        if height and width:
            if convention == "torchvision":
                _paste_torchvision(m[i], b[i], height, width, padding, plane)
            else:
                _paste_detectron2(m[i], b[i], height, width, plane)
        out[i] = plane >= threshold if threshold is not None else plane.to(out_dt)
    return out
