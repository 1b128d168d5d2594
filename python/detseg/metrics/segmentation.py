"""Streaming semantic-segmentation metrics: ``update(pred, target)`` per batch, ``compute()``,
``reset()``. The state is a sum (an int64 confusion matrix, or per-class sums of per-image
scores), so evaluating a dataset split across processes and summing the states gives the
numbers of one process. ``compute()`` does that sum with ``torch.distributed.all_reduce``
when a process group is initialised (gloo on CPU, NCCL on GPU), on a copy: the local state
keeps accumulating.

    metric = MeanIoU(num_classes=21, ignore_index=255)
    for images, labels in loader:
        metric.update(model(images).argmax(1), labels)
    miou = metric.compute()
"""

from __future__ import annotations

import torch

from ..ops import masks as _ops
from . import functional as F

__all__ = ["ConfusionMatrix", "MeanIoU", "DiceScore", "SoftDice"]


def _all_reduce(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    out = []
    for t in tensors:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out.append(t)
    return out


class ConfusionMatrix:
    """Accumulates the pixel confusion matrix ``Tensor[C, C]`` (int64, row = target class) of
    label maps; ``compute()`` returns every metric of detseg.metrics.functional as a dict.
    ``samplewise=True`` also keeps per-class sums of per-image IoU and Dice (torchmetrics'
    MeanIoU and samplewise DiceScore average per image)."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, *, absent: str = "nan",
                 invalid: str = "error", samplewise: bool = False, device: str | torch.device = "cpu",
                 backend: str = "auto"):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.absent = F._absent(type(self).__name__, absent)
        self.invalid = invalid
        self.samplewise = bool(samplewise)
        self.device = torch.device(device)
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.confmat = torch.zeros(c, c, dtype=torch.int64, device=self.device)
        self.invalid_pixels = torch.zeros((), dtype=torch.int64, device=self.device)
        # samplewise: per class, sum over images of IoU / Dice where defined, and their counts
        self.iou_sum = torch.zeros(c, dtype=torch.float64, device=self.device)
        self.dice_sum = torch.zeros(c, dtype=torch.float64, device=self.device)
        self.present = torch.zeros(c, dtype=torch.int64, device=self.device)
        self.images = torch.zeros((), dtype=torch.int64, device=self.device)

    def _per_image(self) -> bool:
        # Per-image matrices only when a samplewise score needs them: one pooled matrix
        # parallelises over pixels, per-image ones over images only.
        return self.samplewise

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: label maps ``Tensor[B, ...]`` (class indices, any integer dtype)."""
        per = self._per_image()
        cm, bad = _ops.confusion_matrix(pred, target, self.num_classes, self.ignore_index, per_image=per,
                                        invalid="count", backend=self.backend)
        if self.invalid == "error" and int(bad.sum()) > 0:
            _ops.confusion_matrix(pred, target, self.num_classes, self.ignore_index, backend=self.backend)  # raises
        cm = cm.to(self.device)
        self.invalid_pixels += bad.sum().to(self.device)
        self.images += pred.shape[0] if pred.dim() else 1
        if not per:
            self.confmat += cm
            return
        self._update_samples(cm)
        self.confmat += cm.sum(0)
        if self.samplewise:
            tp, t, p = F._parts(cm.double(), True)
            union = t + p - tp
            # an (image, class) pair counts where its IoU is defined: the class in prediction or
            # target, or for "ignore_empty" (MONAI) in the target
            ok = F._defined(union, self.absent, t)
            self.iou_sum += torch.where(ok, tp / union.clamp(min=1), torch.zeros_like(tp)).sum(0)
            self.dice_sum += torch.where(ok, 2 * tp / (t + p).clamp(min=1), torch.zeros_like(tp)).sum(0)
            self.present += ok.sum(0)

    _state_names = ("confmat", "invalid_pixels", "iou_sum", "dice_sum", "present", "images")

    def _update_samples(self, per_image: torch.Tensor) -> None:
        pass

    def state(self) -> dict[str, torch.Tensor]:
        """The state summed over every process of the default group (a copy)."""
        names = self._state_names
        return dict(zip(names, _all_reduce([getattr(self, n) for n in names])))

    def compute(self) -> dict[str, torch.Tensor]:
        s = self.state()
        cm, a = s["confmat"], self.absent
        out = {
            "confmat": cm,
            "iou_per_class": F.iou_per_class(cm, a),
            "mean_iou": F.mean_iou(cm, a),
            "frequency_weighted_iou": F.frequency_weighted_iou(cm),
            "dice_per_class": F.dice_per_class(cm, a),
            "mean_dice": F.dice_score(cm, "macro", a),
            "pixel_accuracy": F.pixel_accuracy(cm),
            "mean_class_accuracy": F.mean_class_accuracy(cm, a),
            "invalid_pixels": s["invalid_pixels"],
        }
        if self.samplewise:
            n = s["present"].double()
            out["samplewise_iou_per_class"] = F._ratio(s["iou_sum"], n, a)
            out["samplewise_dice_per_class"] = F._ratio(s["dice_sum"], n, a)
            out["samplewise_mean_iou"] = F._mean(out["samplewise_iou_per_class"], n, a)
            out["samplewise_mean_dice"] = F._mean(out["samplewise_dice_per_class"], n, a)
            # torchmetrics MeanIoU(per_class=False): the mean over (image, class) pairs, not over classes
            out["samplewise_pooled_iou"] = F._ratio(s["iou_sum"].sum(), n.sum(), "nan")
        return out


class MeanIoU(ConfusionMatrix):
    """Streaming mean IoU. ``aggregation="global"`` (default): IoU of the dataset's pooled
    confusion matrix. ``"samplewise"``: per class, the mean over images where the class occurs
    in prediction or target of the image's IoU (torchmetrics MeanIoU; with ``absent="neg1"``
    and ``per_class=True`` its exact output). ``compute()`` -> ``Tensor[]`` or ``Tensor[C]``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, *, per_class: bool = False,
                 aggregation: str = "global", absent: str = "nan", **kw):
        if aggregation not in ("global", "samplewise"):
            F._fail("MeanIoU", f"aggregation must be 'global' or 'samplewise', got {aggregation!r}")
        self.per_class = per_class
        self.aggregation = aggregation
        super().__init__(num_classes, ignore_index, absent=absent, samplewise=aggregation == "samplewise", **kw)

    def compute(self) -> torch.Tensor:
        r = super().compute()
        key = "samplewise_" if self.aggregation == "samplewise" else ""
        return r[f"{key}iou_per_class"] if self.per_class else r[f"{key}mean_iou"]


class DiceScore(ConfusionMatrix):
    """Streaming Dice of label maps, as torchmetrics DiceScore: average "micro" | "macro" |
    "weighted" | "none" (detseg.metrics.functional.dice_score); aggregation "global" (one
    confusion matrix for the dataset) or "samplewise" (the average of each image, then the
    mean over the images where it is defined)."""

    _state_names = (*ConfusionMatrix._state_names, "sample_sum", "sample_count")

    def __init__(self, num_classes: int, ignore_index: int | None = None, *, average: str = "macro",
                 aggregation: str = "global", absent: str = "nan", **kw):
        if average not in F.AVERAGES:
            F._fail("DiceScore", f"average must be one of {', '.join(map(repr, F.AVERAGES))}, got {average!r}")
        if aggregation not in ("global", "samplewise"):
            F._fail("DiceScore", f"aggregation must be 'global' or 'samplewise', got {aggregation!r}")
        self.average = average
        self.aggregation = aggregation
        super().__init__(num_classes, ignore_index, absent=absent, **kw)

    def reset(self) -> None:
        super().reset()
        shape = (self.num_classes,) if self.average == "none" else ()
        self.sample_sum = torch.zeros(shape, dtype=torch.float64, device=self.device)
        self.sample_count = torch.zeros(shape, dtype=torch.int64, device=self.device)

    def _per_image(self) -> bool:
        return self.aggregation == "samplewise"

    def _update_samples(self, per_image: torch.Tensor) -> None:
        if self.aggregation == "samplewise":
            d = F.dice_score(per_image, self.average, "ignore_empty" if self.absent == "ignore_empty" else "nan")
            self.sample_sum += d.nan_to_num(0.0).sum(0)
            self.sample_count += (~d.isnan()).sum(0)

    def compute(self) -> torch.Tensor:
        s = self.state()
        if self.aggregation == "global":
            return F.dice_score(s["confmat"], self.average, self.absent)
        n = s["sample_count"].double()
        return F._ratio(s["sample_sum"], n, self.absent)


class SoftDice:
    """Streaming soft Dice of probabilities, pooled over the dataset (reduction "global" of
    detseg.metrics.functional.soft_dice): state = per-class sums of 2 sum p t and of the
    denominator."""

    def __init__(self, *, smooth: float = 0.0, squared: bool = False, absent: str = "nan"):
        self.smooth, self.squared, self.absent = float(smooth), bool(squared), F._absent("SoftDice", absent)
        self.reset()

    def reset(self) -> None:
        self.inter: torch.Tensor | None = None
        self.den: torch.Tensor | None = None
        self.tsum: torch.Tensor | None = None

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        inter, den, tsum = F._soft_parts("SoftDice", probs.detach(), target, self.squared)
        inter, den, tsum = inter.double().sum(0), den.double().sum(0), tsum.double().sum(0)
        self.inter = inter if self.inter is None else self.inter + inter
        self.den = den if self.den is None else self.den + den
        self.tsum = tsum if self.tsum is None else self.tsum + tsum

    def compute(self) -> torch.Tensor:
        if self.inter is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        inter, den, tsum = _all_reduce([self.inter, self.den, self.tsum])
        num, den = 2 * inter + self.smooth, den + self.smooth
        return F._mean(F._ratio(num, den, self.absent, tsum), den, self.absent, tsum)
