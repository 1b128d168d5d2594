"""Matcher, SSDMatcher, Detectron2Matcher and BalancedPositiveNegativeSampler against
independent loop implementations of torchvision's / detectron2's rules (SEMANTICS.md c.10)."""

from __future__ import annotations

import pytest
import torch

import _data as D
import detseg


def _quantised(m, n, seed, levels=7):
    """Qualities on a coarse grid in [0, 1): many ties within rows and columns."""
    return torch.randint(0, levels, (m, n), generator=D.gen(seed)).float() / levels


def _loop_matcher(q, high, low, allow_low):
    """torchvision's rule, one prediction (column) at a time."""
    m, n = q.shape
    best_gt = []
    out = []
    for j in range(n):
        col = q[:, j].tolist()
        v = max(col)
        i = col.index(v)  # first ground truth on ties
        best_gt.append(i)
        out.append(-1 if v < low else (-2 if v < high else i))
    if allow_low:
        for i in range(m):
            row = q[i].tolist()
            top = max(row)
            for j in range(n):
                if row[j] == top:
                    out[j] = best_gt[j]
    return torch.tensor(out, dtype=torch.int64)


@pytest.mark.parametrize("allow_low", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (5, 1), (4, 37), (13, 200)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matcher_against_loop(shape, allow_low, seed):
    q = _quantised(*shape, seed)
    got = detseg.Matcher(0.5, 0.3, allow_low)(q)
    assert got.dtype == torch.int64 and got.shape == (shape[1],)
    assert torch.equal(got, _loop_matcher(q, 0.5, 0.3, allow_low))


def test_matcher_thresholds_inclusive():
    q = torch.tensor([[0.7, 0.5, 0.4999, 0.3, 0.2999, 0.0]])
    assert detseg.Matcher(0.5, 0.3)(q).tolist() == [0, 0, -2, -2, -1, -1]
    # the low-quality restore brings back every prediction tied for a GT's best, not only the first
    q2 = torch.tensor([[0.2, 0.25, 0.25, 0.1], [0.1, 0.1, 0.1, 0.15]])
    assert detseg.Matcher(0.5, 0.3, True)(q2).tolist() == [-1, 0, 0, 1]
    assert detseg.Matcher(0.5, 0.3, False)(q2).tolist() == [-1, -1, -1, -1]


def test_matcher_errors():
    with pytest.raises(ValueError, match="No ground-truth boxes available for one of the images during training"):
        detseg.Matcher(0.5, 0.3)(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="No proposal boxes available for one of the images during training"):
        detseg.Matcher(0.5, 0.3)(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        detseg.Matcher(0.5, 0.3)(torch.zeros(0, 0))
    with pytest.raises(ValueError, match="detseg.Matcher: low_threshold must be <= high_threshold"):
        detseg.Matcher(0.3, 0.5)
    with pytest.raises(ValueError, match=r"detseg.Matcher: match_quality_matrix must be a Tensor\[M, N\]"):
        detseg.Matcher(0.5, 0.3)(torch.zeros(3))


def test_ssd_matcher():
    q = torch.tensor([[0.1, 0.3, 0.2, 0.9], [0.2, 0.25, 0.1, 0.2], [0.05, 0.0, 0.6, 0.1]])
    got = detseg.SSDMatcher(0.5)(q)
    # plain matcher: [-1, -1, 2, 0]; GT 1's best prediction (1, IoU 0.25) is forced to GT 1
    assert got.tolist() == [-1, 1, 2, 0]
    # two GTs sharing a best prediction: the later GT wins (index assignment order)
    q2 = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    assert detseg.SSDMatcher(0.5)(q2).tolist() == [1, -1]


def _loop_d2(q, thresholds, labels, allow_low):
    th = [-float("inf"), *thresholds, float("inf")]
    m, n = q.shape
    matches, lab = [], []
    for j in range(n):
        col = q[:, j].tolist()
        v = max(col)
        matches.append(col.index(v))
        lab.append(next(lb for lb, lo, hi in zip(labels, th[:-1], th[1:]) if lo <= v < hi))
    if allow_low:
        for i in range(m):
            row = q[i].tolist()
            for j in range(n):
                if row[j] == max(row):
                    lab[j] = 1
    return torch.tensor(matches), torch.tensor(lab, dtype=torch.int8)


@pytest.mark.parametrize("allow_low", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (11, 123)])
def test_detectron2_matcher(shape, allow_low):
    q = _quantised(*shape, 3)
    matcher = detseg.Detectron2Matcher([0.3, 0.7], [0, -1, 1], allow_low)
    matches, labels = matcher(q)
    want_m, want_l = _loop_d2(q, [0.3, 0.7], [0, -1, 1], allow_low)
    assert matches.dtype == torch.int64 and labels.dtype == torch.int8
    assert torch.equal(matches, want_m) and torch.equal(labels, want_l)


def test_detectron2_matcher_empty_and_errors():
    matches, labels = detseg.Detectron2Matcher([0.5], [0, 1])(torch.zeros(0, 4))
    assert matches.tolist() == [0] * 4 and labels.tolist() == [0] * 4
    with pytest.raises(ValueError, match="detseg.Detectron2Matcher: labels must hold len\\(thresholds\\) \\+ 1 = 3"):
        detseg.Detectron2Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="detseg.Detectron2Matcher: thresholds must be ascending"):
        detseg.Detectron2Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match="detseg.Detectron2Matcher: labels must each be -1, 0 or 1"):
        detseg.Detectron2Matcher([0.5], [0, 2])
    with pytest.raises(ValueError, match="detseg.Detectron2Matcher: match_quality_matrix must be >= 0"):
        detseg.Detectron2Matcher([0.5], [0, 1])(torch.tensor([[-0.1, 0.5]]))


def test_sampler_counts_and_reproducibility():
    g = D.gen(4)
    matched = [torch.randint(-1, 4, (500,), generator=g), torch.tensor([-1, 0, 0, 2, -1]),
               torch.zeros(0, dtype=torch.int64)]
    sampler = detseg.BalancedPositiveNegativeSampler(64, 0.25)
    torch.manual_seed(123)
    pos, neg = sampler(matched)
    torch.manual_seed(123)
    pos2, neg2 = sampler(matched)
    for a, b in zip(pos + neg, pos2 + neg2):
        assert a.dtype == torch.uint8 and torch.equal(a, b)
    for m, p, n in zip(matched, pos, neg):
        assert p.shape == m.shape and n.shape == m.shape
        assert bool((m[p.bool()] >= 1).all()) and bool((m[n.bool()] == 0).all())
        assert not bool((p.bool() & n.bool()).any())
    npos = int((matched[0] >= 1).sum())
    assert int(pos[0].sum()) == min(npos, 16)
    assert int(neg[0].sum()) == min(int((matched[0] == 0).sum()), 64 - int(pos[0].sum()))
    assert pos[1].tolist() == [0, 0, 0, 1, 0] and neg[1].tolist() == [0, 1, 1, 0, 0]
    torch.manual_seed(124)
    pos3, _ = sampler(matched)
    assert not torch.equal(pos3[0], pos[0])  # the selection does follow the RNG


def test_sampler_bad_args():
    with pytest.raises(ValueError, match="detseg.BalancedPositiveNegativeSampler: positive_fraction must be in"):
        detseg.BalancedPositiveNegativeSampler(64, 1.5)
    with pytest.raises(ValueError, match="detseg.BalancedPositiveNegativeSampler: batch_size_per_image must be >= 0"):
        detseg.BalancedPositiveNegativeSampler(-1, 0.5)
