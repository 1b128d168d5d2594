"""References of the NMS variants (csrc/cpu/nms_variants.cpp): soft-NMS, DIoU-NMS, Matrix NMS.
The IoU of a pair is detseg::nms_suppresses' inter / (area_i + area_j - inter) (soft and
Matrix NMS) or detseg::pair_iou<kDIoU, kMatrix> with eps 0 (DIoU-NMS), computed in float32
(float64 for float64 input); the category-wise forms never compare across categories."""

from __future__ import annotations

import torch

from ..ops import _checks
from .boxes import _pair_iou, _sorted_order, compute_dtype, nms_threshold
from .postprocess import libm_exp


def _iou_one(b: torch.Tensor, i: int, rest: torch.Tensor) -> torch.Tensor:
    """IoU of box i with boxes[rest], in detseg::nms_suppresses' operation order."""
    x1, y1, x2, y2 = b.unbind(-1)
    area = (x2 - x1) * (y2 - y1)
    w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
    h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
    inter = w * h
    return inter / (area[i] + area[rest] - inter)


def _groups(idxs: torch.Tensor | None, n: int, device) -> list[torch.Tensor]:
    if idxs is None:
        return [torch.arange(n, device=device)]
    return [torch.where(idxs == c)[0] for c in torch.unique(idxs)]


def _soft_one(b: torch.Tensor, s: torch.Tensor, thr: float, sigma: float, min_score: float, gaussian: bool,
              opencv: bool):
    """Soft-NMS of one category; returns (positions in pick order, pick-time scores)."""
    s = s.clone()
    alive = ~torch.isnan(s)
    if opencv:
        alive &= s.double() > min_score
    keep, kept_scores = [], []
    while bool(alive.any()):
        live = torch.where(alive)[0]
        i = int(live[torch.argmax(s[live])])  # first maximum: the lowest index
        if opencv and float(s[i]) < min_score:
            break
        keep.append(i)
        kept_scores.append(s[i])
        alive[i] = False
        rest = torch.where(alive)[0]
        if rest.numel() == 0:
            break
        iou = _iou_one(b, i, rest)
        iou = torch.where(torch.isnan(iou), torch.zeros_like(iou), iou)  # NaN coordinates: no overlap
        if gaussian:
            w = libm_exp(-(iou * iou) / sigma)
        else:
            hit = iou.double() > thr if opencv else iou.double() >= thr
            w = torch.where(hit, 1 - iou, torch.ones_like(iou))
        s[rest] = s[rest] * w
        if not opencv:
            alive[rest] &= ~(s[rest].double() < min_score)
    pos = torch.tensor(keep, dtype=torch.int64, device=b.device)
    vals = torch.stack(kept_scores) if kept_scores else s.new_zeros(0)
    return pos, vals


def soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score, method, convention):
    """Twin of torch.ops.detseg.soft_nms: (kept indices int64 Tensor[K], decayed scores Tensor[K]),
    by decayed score descending, ties by index ascending."""
    _checks.soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score, method, convention)
    dt = compute_dtype(boxes)
    b, s = boxes.to(dt), scores.to(dt)
    all_pos, all_val = [], []
    for members in _groups(idxs, b.shape[0], b.device):
        pos, val = _soft_one(b[members], s[members], iou_threshold, sigma, min_score, method == "gaussian",
                             convention == "opencv")
        all_pos.append(members[pos])
        all_val.append(val)
    if not all_pos:
        return torch.zeros(0, dtype=torch.int64, device=b.device), s.new_zeros(0)
    pos, val = torch.cat(all_pos), torch.cat(all_val)
    o = torch.sort(pos)[1]  # index ascending, then a stable descending score sort
    pos, val = pos[o], val[o]
    o = _sorted_order(val)
    return pos[o], val[o]


def diou_nms(boxes, scores, idxs, iou_threshold):
    """Twin of torch.ops.detseg.diou_nms: kept indices int64 Tensor[K] by decreasing score."""
    _checks.diou_nms(boxes, scores, idxs, iou_threshold)
    dt = compute_dtype(boxes)
    thr = nms_threshold(iou_threshold, dt)
    keep = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for members in _groups(idxs, boxes.shape[0], boxes.device):
        order = members[_sorted_order(scores[members])]
        b = boxes.to(dt)[order]
        n = b.shape[0]
        removed = [False] * n
        for i in range(n):
            if removed[i]:
                continue
            keep[order[i]] = True
            if i + 1 == n:
                break
            rest = b[i + 1:]
            d = _pair_iou(tuple(b[i].expand_as(rest).unbind(-1)), tuple(rest.unbind(-1)), "diou", False, 0.0)
            for j in torch.where(d > thr)[0].tolist():
                removed[i + 1 + j] = True
    kept = torch.where(keep)[0]
    return kept[_sorted_order(scores[kept])]


def _nan_min0(x: torch.Tensor) -> torch.Tensor:
    return x.min(0)[0] if x.shape[0] else x.new_ones(x.shape[1:])


def matrix_nms(boxes, scores, idxs, kernel, sigma):
    """Twin of torch.ops.detseg.matrix_nms: decayed scores Tensor[N] in input order."""
    _checks.matrix_nms(boxes, scores, idxs, kernel, sigma)
    dt = compute_dtype(boxes)
    n = boxes.shape[0]
    if n == 0:
        return scores.to(dt).clone()
    order = _sorted_order(scores)
    b, s = boxes.to(dt)[order], scores.to(dt)[order]
    iou = torch.stack([_iou_one(b, i, torch.arange(n, device=b.device)) for i in range(n)])
    iou = torch.where(torch.isnan(iou), torch.zeros_like(iou), iou)  # NaN coordinates: no overlap
    if idxs is not None:
        lab = idxs[order]
        iou = torch.where(lab[:, None] == lab[None, :], iou, torch.zeros_like(iou))
    iou = torch.triu(iou, diagonal=1)
    comp = iou.max(0)[0][:, None]  # comp_i = max_k IoU_ki, one per row i
    if kernel == "gaussian":
        decay = libm_exp((-sigma) * (iou * iou)) / libm_exp((-sigma) * (comp * comp))
    else:
        decay = (1 - iou) / (1 - comp)
    out = s * _nan_min0(decay)
    res = torch.empty_like(out)
    res[order] = out
    return res
