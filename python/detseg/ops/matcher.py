"""Prediction-to-ground-truth matching and sampling (SEMANTICS.md c.10): torchvision's
``Matcher``, ``SSDMatcher`` and ``BalancedPositiveNegativeSampler``, and detectron2's
``Matcher(thresholds, labels)`` as ``Detectron2Matcher``. Small, control-flow heavy code on
torch tensors (any device); the matrices are ``Tensor[M ground truths, N predictions]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import _checks

__all__ = ["Matcher", "SSDMatcher", "Detectron2Matcher", "BalancedPositiveNegativeSampler"]


def _quality_matrix(op: str, m) -> None:
    _checks.tensor(op, "match_quality_matrix", m)
    if m.dim() != 2:
        _checks.fail(op, f"match_quality_matrix must be a Tensor[M, N] (ground truths x predictions), "
                         f"got shape {list(m.shape)}")


def _predictions_tied_for_a_gt_max(m: torch.Tensor) -> torch.Tensor:
    """Indices of the predictions that reach some ground truth's highest quality (ties included)."""
    highest_foreach_gt = m.max(dim=1).values
    return torch.where(m == highest_foreach_gt[:, None])[1]


class Matcher:
    """torchvision's ``Matcher``: for each prediction (column) the ground truth (row) of highest
    quality; quality >= ``high_threshold`` keeps the index, [low, high) gives
    ``BETWEEN_THRESHOLDS`` (-2), < low gives ``BELOW_LOW_THRESHOLD`` (-1). With
    ``allow_low_quality_matches`` every prediction tied for some ground truth's highest quality
    gets its argmax back. An empty matrix raises ValueError (no ground truth / no predictions).
    Ties in the per-prediction max go to the lowest ground-truth index; NaN qualities win the
    max (torch.max) and keep their index. Returns ``Tensor[N]`` int64."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False):
        if not (float(low_threshold) <= float(high_threshold)):
            _checks.fail("Matcher", f"low_threshold must be <= high_threshold, got {low_threshold!r} > "
                                    f"{high_threshold!r}")
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
                f"allow_low_quality_matches={self.allow_low_quality_matches})")

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        m = match_quality_matrix
        _quality_matrix(type(self).__name__, m)
        if m.numel() == 0:
            # torchvision's words: empty targets or proposals are not supported in training.
            if m.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        matched_vals, matches = m.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None
        below = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if all_matches is not None:
            self.set_low_quality_matches_(matches, all_matches, m)
        return matches

    def set_low_quality_matches_(self, matches: torch.Tensor, all_matches: torch.Tensor,
                                 match_quality_matrix: torch.Tensor) -> None:
        """Restores the argmax of every prediction tied for some ground truth's highest quality."""
        preds = _predictions_tied_for_a_gt_max(match_quality_matrix)
        matches[preds] = all_matches[preds]


class SSDMatcher(Matcher):
    """torchvision's ``SSDMatcher(threshold)``: ``Matcher(threshold, threshold)``, then each ground
    truth's best prediction (first on ties) is forced to that ground truth (later ground truths
    win a shared prediction)."""

    def __init__(self, threshold: float):
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        matches = super().__call__(match_quality_matrix)
        best_pred_foreach_gt = match_quality_matrix.max(dim=1).indices
        matches[best_pred_foreach_gt] = torch.arange(best_pred_foreach_gt.size(0), dtype=torch.int64,
                                                     device=best_pred_foreach_gt.device)
        return matches


class Detectron2Matcher:
    """detectron2's ``Matcher(thresholds, labels, allow_low_quality_matches)``.

    ``thresholds`` ascending, splitting qualities into len(thresholds) + 1 intervals
    [-inf, t0), [t0, t1), ..., [t_last, inf); ``labels`` (one per interval, each -1 ignore,
    0 negative, 1 positive). Returns ``(matches Tensor[N] int64, match_labels Tensor[N] int8)``;
    with ``allow_low_quality_matches`` every prediction tied for a ground truth's highest quality
    gets label 1. An empty matrix gives matches 0 and labels[0] (detectron2's behaviour, no
    error); negative qualities raise ValueError.
    """

    def __init__(self, thresholds: Sequence[float], labels: Sequence[int], allow_low_quality_matches: bool = False):
        op = "Detectron2Matcher"
        th = [float(t) for t in thresholds]
        if any(math.isnan(t) for t in th) or any(a > b for a, b in zip(th[:-1], th[1:])):
            _checks.fail(op, f"thresholds must be ascending numbers, got {list(thresholds)!r}")
        if len(labels) != len(th) + 1:
            _checks.fail(op, f"labels must hold len(thresholds) + 1 = {len(th) + 1} values, got {len(labels)}")
        if not all(int(lab) in (-1, 0, 1) for lab in labels):
            _checks.fail(op, f"labels must each be -1, 0 or 1, got {list(labels)!r}")
        self.thresholds = [-math.inf, *th, math.inf]
        self.labels = [int(lab) for lab in labels]
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = match_quality_matrix
        _quality_matrix("Detectron2Matcher", m)
        n = m.shape[1]
        if m.numel() == 0:
            return (m.new_full((n,), 0, dtype=torch.int64), m.new_full((n,), self.labels[0], dtype=torch.int8))
        if bool((m < 0).any()):
            _checks.fail("Detectron2Matcher", "match_quality_matrix must be >= 0 everywhere")
        matched_vals, matches = m.max(dim=0)
        match_labels = matches.new_full(matches.size(), 1, dtype=torch.int8)
        for lab, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            match_labels[(matched_vals >= low) & (matched_vals < high)] = lab
        if self.allow_low_quality_matches:
            match_labels[_predictions_tied_for_a_gt_max(m)] = 1
        return matches, match_labels


class BalancedPositiveNegativeSampler:
    """torchvision's sampler: per image, at most ``int(batch_size_per_image * positive_fraction)``
    positives (matched index >= 1) and the rest up to ``batch_size_per_image`` negatives (== 0),
    chosen by ``torch.randperm`` on the tensor's device (reproducible under torch.manual_seed;
    -1 and other negative values are ignored). Returns two lists of uint8 masks, each shaped like
    the input."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        if int(batch_size_per_image) < 0:
            _checks.fail("BalancedPositiveNegativeSampler",
                         f"batch_size_per_image must be >= 0, got {batch_size_per_image!r}")
        if not (0.0 <= float(positive_fraction) <= 1.0):
            _checks.fail("BalancedPositiveNegativeSampler",
                         f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    def __call__(self, matched_idxs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pos_idx, neg_idx = [], []
        for m in matched_idxs:
            positive = torch.where(m >= 1)[0]
            negative = torch.where(m == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
            perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
            pos_mask = torch.zeros_like(m, dtype=torch.uint8)
            neg_mask = torch.zeros_like(m, dtype=torch.uint8)
            pos_mask[positive[perm1]] = 1
            neg_mask[negative[perm2]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx
