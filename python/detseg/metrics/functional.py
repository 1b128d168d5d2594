"""Segmentation metrics from a confusion matrix, and soft Dice from probabilities.

A confusion matrix is int ``Tensor[..., C, C]`` with row = target class, column = predicted
class (detseg.confusion_matrix; leading dims = images, for samplewise metrics). All results
are float64.

Classes absent from both prediction and target (an empty union, a zero denominator) have no
defined IoU / Dice. ``absent`` picks what they get, and whether means count them:

==============  =========================  ==================================================
absent          per-class value            means (mean IoU, macro Dice, mean accuracy)
==============  =========================  ==================================================
"nan"           NaN                        skip them (nanmean); all absent -> NaN
"neg1"          -1 (torchmetrics MeanIoU)  skip them; all absent -> NaN
"one"           1 (MONAI ignore_empty=     include them
                False: both empty = 1)
"zero"          0                          include them
"ignore_empty"  NaN for every class with   skip them; no class with target pixels -> NaN
                no target pixel (MONAI
                ignore_empty=True)
==============  =========================  ==================================================

"ignore_empty" is MONAI's rule, which looks at the target only: a class predicted where the
target has none is skipped too (the other conventions score it 0). "micro" Dice pools only the
classes with target pixels. For pixel accuracy per class (recall), "absent" means a class with
no target pixel, so "nan" and "ignore_empty" agree there.
"""

from __future__ import annotations

import torch

from ..ops._checks import choice

ABSENT = ("nan", "neg1", "one", "zero", "ignore_empty")
_FILL = {"nan": float("nan"), "neg1": -1.0, "one": 1.0, "zero": 0.0, "ignore_empty": float("nan")}
AVERAGES = ("micro", "macro", "weighted", "none")

__all__ = [
    "iou_per_class", "mean_iou", "frequency_weighted_iou", "dice_per_class", "dice_score", "pixel_accuracy",
    "class_accuracy", "mean_class_accuracy", "soft_dice", "dice_loss",
]


def _fail(fn: str, msg: str, exc=ValueError):
    raise exc(f"detseg.metrics.{fn}: {msg}")


def _cm(fn: str, cm: torch.Tensor) -> torch.Tensor:
    if not isinstance(cm, torch.Tensor) or cm.dim() < 2 or cm.shape[-1] != cm.shape[-2]:
        _fail(fn, f"confmat must be a Tensor[..., C, C], got {getattr(cm, 'shape', type(cm).__name__)}")
    return cm.double()


def _absent(fn: str, absent: str) -> str:
    return choice("metrics." + fn, "absent", absent, ABSENT)


def _defined(den: torch.Tensor, absent: str, target: torch.Tensor | None) -> torch.Tensor:
    """Where a ratio is defined: a positive denominator, and for "ignore_empty" target pixels
    (``target``: the class's target count; None when den > 0 already implies them)."""
    if absent == "ignore_empty" and target is not None:
        return (den > 0) & (target > 0)
    return den > 0


def _ratio(num: torch.Tensor, den: torch.Tensor, absent: str, target: torch.Tensor | None = None) -> torch.Tensor:
    return torch.where(_defined(den, absent, target), num / den.clamp(min=1e-300), torch.full_like(num, _FILL[absent]))


def _mean(values: torch.Tensor, den: torch.Tensor, absent: str, target: torch.Tensor | None = None) -> torch.Tensor:
    if absent in ("one", "zero"):
        return values.mean(-1)
    return torch.where(_defined(den, absent, target), values, torch.full_like(values, float("nan"))).nanmean(-1)


def _parts(cm: torch.Tensor, include_background: bool):
    tp = cm.diagonal(dim1=-2, dim2=-1)
    target = cm.sum(-1)
    pred = cm.sum(-2)
    if not include_background:
        tp, target, pred = tp[..., 1:], target[..., 1:], pred[..., 1:]
    return tp, target, pred


def iou_per_class(confmat: torch.Tensor, absent: str = "nan", include_background: bool = True) -> torch.Tensor:
    """IoU (Jaccard) of each class: tp / (tp + fp + fn). ``Tensor[..., C, C] -> Tensor[..., C]``."""
    cm = _cm("iou_per_class", confmat)
    tp, t, p = _parts(cm, include_background)
    return _ratio(tp, t + p - tp, _absent("iou_per_class", absent), t)


def mean_iou(confmat: torch.Tensor, absent: str = "nan", include_background: bool = True) -> torch.Tensor:
    """Mean of iou_per_class over classes (absent classes per ``absent``). ``-> Tensor[...]``."""
    absent = _absent("mean_iou", absent)
    cm = _cm("mean_iou", confmat)
    tp, t, p = _parts(cm, include_background)
    den = t + p - tp
    return _mean(_ratio(tp, den, absent, t), den, absent, t)


def frequency_weighted_iou(confmat: torch.Tensor) -> torch.Tensor:
    """sum_c (target pixels of c / all pixels) * IoU_c; classes without target pixels weigh 0.
    NaN when the matrix is empty."""
    cm = _cm("frequency_weighted_iou", confmat)
    tp, t, p = _parts(cm, True)
    iou = _ratio(tp, t + p - tp, "zero")
    total = t.sum(-1)
    return torch.where(total > 0, (t * iou).sum(-1) / total.clamp(min=1e-300), torch.full_like(total, float("nan")))


def dice_per_class(confmat: torch.Tensor, absent: str = "nan", include_background: bool = True) -> torch.Tensor:
    """Dice = F1 = 2 tp / (2 tp + fp + fn) of each class. ``Tensor[..., C, C] -> Tensor[..., C]``."""
    cm = _cm("dice_per_class", confmat)
    tp, t, p = _parts(cm, include_background)
    return _ratio(2 * tp, t + p, _absent("dice_per_class", absent), t)


def dice_score(confmat: torch.Tensor, average: str = "macro", absent: str = "nan",
               include_background: bool = True) -> torch.Tensor:
    """Dice averaged over classes as torchmetrics' DiceScore ``average``:
    "micro" (pooled counts: 2 sum tp / sum (pred + target)), "macro" (mean of dice_per_class),
    "weighted" (weights = target pixels per class), "none" (dice_per_class).
    ``Tensor[..., C, C] -> Tensor[...]`` (``[..., C]`` for "none")."""
    choice("metrics.dice_score", "average", average, AVERAGES)
    absent = _absent("dice_score", absent)
    cm = _cm("dice_score", confmat)
    tp, t, p = _parts(cm, include_background)
    den = t + p
    if average == "micro":
        if absent == "ignore_empty":
            keep = t > 0
            tp, den = torch.where(keep, tp, torch.zeros_like(tp)), torch.where(keep, den, torch.zeros_like(den))
        return _ratio(2 * tp.sum(-1), den.sum(-1), absent)
    dice = _ratio(2 * tp, den, absent, t)
    if average == "none":
        return dice
    if average == "macro":
        return _mean(dice, den, absent, t)
    valid = _defined(den, absent, t) if absent in ("nan", "neg1", "ignore_empty") else torch.ones_like(den, dtype=torch.bool)
    w = torch.where(valid, t, torch.zeros_like(t))
    total = w.sum(-1)
    d = torch.where(valid, dice, torch.zeros_like(dice))
    return torch.where(total > 0, (w * d).sum(-1) / total.clamp(min=1e-300), torch.full_like(total, float("nan")))


def pixel_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Correct pixels / all counted pixels (NaN for an empty matrix). ``-> Tensor[...]``."""
    cm = _cm("pixel_accuracy", confmat)
    total = cm.sum((-2, -1))
    return torch.where(total > 0, cm.diagonal(dim1=-2, dim2=-1).sum(-1) / total.clamp(min=1e-300),
                       torch.full_like(total, float("nan")))


def class_accuracy(confmat: torch.Tensor, absent: str = "nan") -> torch.Tensor:
    """Per-class accuracy (recall) tp / target pixels; absent = no target pixel. ``-> Tensor[..., C]``."""
    cm = _cm("class_accuracy", confmat)
    tp, t, _ = _parts(cm, True)
    return _ratio(tp, t, _absent("class_accuracy", absent), t)


def mean_class_accuracy(confmat: torch.Tensor, absent: str = "nan") -> torch.Tensor:
    """Mean of class_accuracy over classes (absent classes per ``absent``). ``-> Tensor[...]``."""
    absent = _absent("mean_class_accuracy", absent)
    cm = _cm("mean_class_accuracy", confmat)
    tp, t, _ = _parts(cm, True)
    return _mean(_ratio(tp, t, absent, t), t, absent, t)


# ---------------------------------------------------------------- soft Dice

def _soft_parts(fn: str, probs: torch.Tensor, target: torch.Tensor, squared: bool):
    """(intersection, denominator, target sum) ``Tensor[B, C]`` summed over the spatial dims."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        _fail(fn, f"probs must be a floating-point Tensor, got {getattr(probs, 'dtype', type(probs).__name__)}",
              TypeError)
    if probs.dim() < 2:
        _fail(fn, f"probs must be a Tensor[B, C, ...] (multi-class) or Tensor[B, ...] (binary), got shape "
                  f"{list(probs.shape)}")
    if target.shape == probs.shape:
        t = target.to(probs.dtype)
        p = probs
    elif target.dim() == probs.dim() - 1 and target.shape[0] == probs.shape[0] and target.shape[1:] == probs.shape[2:]:
        if target.is_floating_point():
            _fail(fn, f"an index target must be an integer tensor, got {target.dtype}", TypeError)
        c = probs.shape[1]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
            _fail(fn, f"target labels must be in [0, {c}), got [{int(target.min())}, {int(target.max())}]")
        t = torch.nn.functional.one_hot(target.long(), c).movedim(-1, 1).to(probs.dtype)
        p = probs
    else:
        _fail(fn, f"target must have the shape of probs {list(probs.shape)} (one-hot or binary) or "
                  f"{[probs.shape[0], *probs.shape[2:]]} (class indices), got {list(target.shape)}")
    dims = tuple(range(2, p.dim()))
    if not dims:  # binary [B, N]: one class, the rest is space
        p, t = p[:, None], t[:, None]
        dims = (2,)
    inter = (p * t).sum(dims)
    tsum = t.sum(dims)
    den = (p * p).sum(dims) + (t * t).sum(dims) if squared else p.sum(dims) + tsum
    return inter, den, tsum


def soft_dice(probs: torch.Tensor, target: torch.Tensor, *, reduction: str = "samplewise", smooth: float = 0.0,
              squared: bool = False, absent: str = "nan") -> torch.Tensor:
    """Soft Dice (2 sum p t + smooth) / (sum p + sum t + smooth) of probabilities.

    probs: ``Tensor[B, C, ...]`` class probabilities (softmax / sigmoid outputs), with target
    one-hot of the same shape or class indices ``Tensor[B, ...]``; or binary ``Tensor[B, N]``
    (one class, N pixels) with a target of the same shape. ``squared``: sum p^2 + sum t^2 in
    the denominator (V-Net). reduction: "samplewise" (Dice of each (sample, class), then the
    mean), "global" (sums over the batch first, then the mean over classes), "none"
    (``Tensor[B, C]``). A (sample, class) whose denominator is 0 (with smooth = 0) follows
    ``absent`` as the metrics above; with "ignore_empty", every (sample, class) whose target
    is empty is NaN and skipped (MONAI DiceMetric, ignore_empty=True). Differentiable.
    """
    if reduction not in ("samplewise", "global", "none"):
        _fail("soft_dice", f"reduction must be 'samplewise', 'global' or 'none', got {reduction!r}")
    absent = _absent("soft_dice", absent)
    inter, den, tsum = _soft_parts("soft_dice", probs, target, squared)
    if reduction == "global":
        inter, den, tsum = inter.sum(0), den.sum(0), tsum.sum(0)
    num, den = 2 * inter + smooth, den + smooth
    ok = _defined(den, absent, tsum)
    # the inner where keeps the gradient of undefined entries finite (no 0 / 0 in backward)
    dice = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, _FILL[absent]))
    if reduction == "none":
        return dice
    if absent in ("one", "zero"):
        return dice.mean()
    return torch.where(ok, dice, torch.full_like(dice, float("nan"))).nanmean()


def dice_loss(probs: torch.Tensor, target: torch.Tensor, *, reduction: str = "samplewise", smooth: float = 1.0,
              squared: bool = False) -> torch.Tensor:
    """1 - soft_dice(...) with smooth = 1 by default (every term defined, so every term has a
    gradient); absent (sample, class) pairs count as perfect (Dice 1)."""
    return 1.0 - soft_dice(probs, target, reduction=reduction, smooth=smooth, squared=squared, absent="one")
