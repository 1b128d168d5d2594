"""hypothesis property tests of the geometry: they must hold on every backend for any boxes."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import _backends as B
import detseg
from detseg import reference as R

# Triton runs in the interpreter on the CPU: fewer examples there.
BACKEND_EXAMPLES = {"cpp": 60, "reference": 60, "triton": 8}

coord = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)
side = st.floats(min_value=2.0 ** -6, max_value=5e2, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def boxes(draw, min_n=1, max_n=12, positive=True):
    n = draw(st.integers(min_n, max_n))
    rows = []
    for _ in range(n):
        x, y = draw(coord), draw(coord)
        if positive:
            w, h = draw(side), draw(side)
        else:  # zero-area and thin boxes as well
            w, h = draw(st.sampled_from([0.0, 1e-3, 1.0]) | side), draw(st.sampled_from([0.0, 1.0]) | side)
        rows.append([x, y, x + w, y + h])
    # a few boxes near others, so overlaps are common
    t = torch.tensor(rows, dtype=torch.float64).reshape(n, 4)
    if n > 2 and draw(st.booleans()):
        t[1:3] = t[0] + torch.tensor(draw(st.lists(st.floats(-5, 5, width=32), min_size=8, max_size=8)),
                                     dtype=torch.float64).reshape(2, 4).abs() * torch.tensor([1, 1, -1, -1])
        t[1:3, 2:] = torch.maximum(t[1:3, 2:], t[1:3, :2] + 1e-2)
    return t


def _settings(backend):
    return settings(max_examples=BACKEND_EXAMPLES[backend])


def _dtypes():
    return st.sampled_from([torch.float64, torch.float32])


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_iou_symmetric_bounded_self_one(backend):
    @_settings(backend)
    @given(a=boxes(), b=boxes(), dtype=_dtypes())
    def prop(a, b, dtype):
        a, b = a.to(dtype), b.to(dtype)
        ab = detseg.box_iou(a, b, backend=backend)
        ba = detseg.box_iou(b, a, backend=backend)
        assert torch.equal(ab, ba.T), "box_iou must be symmetric (bitwise)"
        assert bool(((ab >= 0) & (ab <= 1)).all())
        aa = detseg.box_iou(a, a, backend=backend)
        torch.testing.assert_close(aa.diagonal(), torch.ones(len(a), dtype=aa.dtype), rtol=0, atol=1e-6)
    prop()


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_giou_diou_ciou_bounds(backend):
    @_settings(backend)
    @given(a=boxes(), b=boxes())
    def prop(a, b):
        iou = detseg.box_iou(a, b, backend=backend)
        giou = detseg.generalized_box_iou(a, b, backend=backend)
        diou = detseg.distance_box_iou(a, b, backend=backend)
        ciou = detseg.complete_box_iou(a, b, backend=backend)
        slack = 1e-12
        assert bool((giou <= iou + slack).all()), "GIoU <= IoU"
        assert bool((giou >= -1 - slack).all()), "GIoU >= -1"
        assert bool((diou <= iou + slack).all()), "DIoU <= IoU"
        assert bool((diou >= -1 - slack).all()), "DIoU >= -1"
        assert bool((ciou <= diou + slack).all()), "CIoU <= DIoU (alpha, v >= 0)"
        torch.testing.assert_close(giou, generalized_t(a, b))
        # symmetric kinds
        for fn in (detseg.generalized_box_iou, detseg.distance_box_iou, detseg.complete_box_iou):
            torch.testing.assert_close(fn(b, a, backend=backend), fn(a, b, backend=backend).T, rtol=1e-12, atol=1e-12)
    prop()


def generalized_t(a, b):
    """GIoU from its definition with numpy, float64 (an independent check of the formula)."""
    a, b = a.numpy()[:, None], b.numpy()[None]
    area = lambda t: (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])  # noqa: E731
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = area(a) + area(b) - inter
    c = (np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])) * \
        (np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1]))
    return torch.from_numpy(inter / union - (c - union) / c)


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_losses_in_range(backend):
    @_settings(backend)
    @given(a=boxes(min_n=1, max_n=8), data=st.data())
    def prop(a, data):
        b = data.draw(boxes(min_n=len(a), max_n=len(a)))
        for fn, hi in ((detseg.generalized_box_iou_loss, 2), (detseg.distance_box_iou_loss, 2),
                       (detseg.complete_box_iou_loss, 3)):
            loss = fn(a, b, backend=backend)
            assert bool(((loss >= -1e-9) & (loss <= hi + 1e-9)).all()), (fn.__name__, loss)
            # a box against itself: only the eps of the loss form remains, 1 - area / (area + eps)
            area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
            assert bool((fn(a, a, backend=backend).abs() <= 1.01e-7 / area + 1e-12).all())
    prop()


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_nms_properties(backend):
    @_settings(backend)
    @given(b=boxes(min_n=0, max_n=30, positive=False), dtype=_dtypes(), data=st.data())
    def prop(b, dtype, data):
        n = len(b)
        scores = torch.tensor(data.draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1, width=32),
                                                 min_size=n, max_size=n)), dtype=dtype)
        thr = data.draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]) | st.floats(0, 1))
        b = b.to(dtype)
        keep = detseg.nms(b, scores, thr, backend=backend)
        k = keep.tolist()
        assert len(set(k)) == len(k) and all(0 <= i < n for i in k), "a subset of indices"
        ks = scores[keep]
        assert bool((ks[:-1] >= ks[1:]).all()), "decreasing score"
        for i, j in zip(k, k[1:]):  # stable among ties
            assert scores[i] > scores[j] or i < j
        iou = R.box_iou_matrix(b, b, "iou", 0.0)  # float32 for float32 boxes: the NMS IoU
        kept = torch.zeros(n, dtype=torch.bool)
        kept[keep] = True
        sub = iou[keep][:, keep].double().fill_diagonal_(0).nan_to_num(0.0)
        assert bool((sub <= thr).all()), "no kept pair above the threshold"
        order = torch.sort(scores, descending=True, stable=True)[1].tolist()
        rank = {i: r for r, i in enumerate(order)}
        for j in range(n):
            if not kept[j]:
                suppressors = [i for i in k if rank[i] < rank[j] and float(iou[i, j]) > thr]
                assert suppressors, f"box {j} suppressed without a kept box above the threshold"
    prop()


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_batched_nms_is_per_class_nms(backend):
    @_settings(backend)
    @given(b=boxes(min_n=0, max_n=25), data=st.data())
    def prop(b, data):
        n = len(b)
        scores = torch.tensor(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)), dtype=torch.float64)
        idxs = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=torch.int64)
        keep = detseg.batched_nms(b, scores, idxs, 0.5, backend=backend).tolist()
        merged = []
        for c in range(4):
            members = torch.where(idxs == c)[0]
            # per-class nms of the reference: itself equal to every backend's (test_nms.py)
            merged += members[R.nms(b[members], scores[members], 0.5)].tolist()
        assert sorted(keep) == sorted(merged)
        assert keep == sorted(merged, key=lambda i: (-float(scores[i]), i))
    prop()


def test_nan_is_never_a_valid_threshold():
    with pytest.raises(ValueError, match=r"detseg\.nms: iou_threshold"):
        detseg.nms(torch.zeros(1, 4), torch.zeros(1), float("nan"))
