"""nms and batched_nms: exact index equality with detseg.reference (and with an independent
numpy oracle) on every backend, at the decision boundary (IoU == threshold), with ties,
degenerate and non-finite inputs; batched_nms against per-class nms merged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg import reference as R

THR = 0.5


# ---------------------------------------------------------------- an independent oracle

def np_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Greedy NMS written from the spec (CONTEXT.md), not from the reference: stable descending
    score order with NaN first; IoU in float32 for every dtype but float64, with clamped
    intersection sides and no eps; suppress iff double(IoU) > thr."""
    ct = np.float64 if boxes.dtype == torch.float64 else np.float32
    b = boxes.double().numpy().astype(ct)
    s = scores.double().numpy()
    n = len(s)
    order = sorted(range(n), key=lambda i: (0, 0.0, i) if math.isnan(s[i]) else (1, -s[i], i))
    b = b[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)
    removed = np.zeros(n, dtype=bool)
    keep = []
    with np.errstate(all="ignore"):
        for i in range(n):
            if removed[i]:
                continue
            keep.append(order[i])
            w = np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:])
            h = np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:])
            # clamp at 0 with NaN passing through (torch.clamp / detseg::clamp_min0)
            w = np.where(w < 0, ct(0), w).astype(ct)
            h = np.where(h < 0, ct(0), h).astype(ct)
            inter = (w * h).astype(ct)
            iou = (inter / (area[i] + area[i + 1:] - inter)).astype(ct)
            removed[i + 1:] |= iou.astype(np.float64) > thr
    return keep


def np_batched_nms(boxes, scores, idxs, thr) -> list[int]:
    """Per-class np_nms, merged by (NaN first, score descending, index ascending)."""
    kept = []
    for c in torch.unique(idxs).tolist():
        members = torch.where(idxs == c)[0]
        kept += members[np_nms(boxes[members], scores[members], thr)].tolist()
    s = scores.double()
    return sorted(kept, key=lambda i: (0, 0.0, i) if math.isnan(s[i]) else (1, -float(s[i]), i))


def _scenario(kind: str, n: int, seed: int):
    if kind == "random":
        return D.random_boxes(n, seed), D.distinct_scores(n, seed)
    if kind == "clustered":
        return D.clustered_boxes(n, seed), D.distinct_scores(n, seed) * 0.9 + 0.05
    if kind == "ties":  # integer boxes (equal and edge-sharing ones) with 3 score levels
        return D.integer_boxes(n, seed, scale=12, max_wh=10), D.tie_scores(n, seed)
    if kind == "zero_area":
        return D.zero_area_boxes(n, seed), D.tie_scores(n, seed, levels=5)
    if kind == "nonfinite":
        s = D.distinct_scores(n, seed)
        if n >= 5:
            s[0], s[3], s[4] = math.nan, math.inf, -math.inf
        return D.nonfinite_boxes(n, seed), s
    raise ValueError(kind)


def _run(backend, device, boxes, scores, thr, lay="contiguous"):
    out = detseg.nms(D.layout(boxes, lay).to(device), D.layout(scores, lay).to(device), thr, backend=backend)
    assert out.dtype == torch.int64 and out.dim() == 1 and out.device.type == device
    return out.cpu()


# ---------------------------------------------------------------- nms: matrix

SCENARIOS = ["random", "clustered", "ties"]


def _with_scenarios(params, scenarios):
    """Crosses a B.matrix() with scenarios; the interpreted Triton backend gets them in
    rotation (one per combination) instead of all of them."""
    out = []
    for i, p in enumerate(params):
        target = p.values[0]
        for j, sc in enumerate(scenarios):
            if B.interpreted(*target) and j != i % len(scenarios):
                continue
            out.append(pytest.param(sc, *p.values, id=f"{p.id}-{sc}", marks=p.marks))
    return out


@pytest.mark.parametrize("scenario,target,n,dtype,lay",
                         _with_scenarios(B.matrix(D.DTYPES, D.LAYOUTS, sizes=B.NMS_SIZES), SCENARIOS))
def test_nms(scenario, target, n, dtype, lay):
    backend, device = target
    boxes, scores = _scenario(scenario, n, seed=n)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    thr = 0.3 if scenario == "random" else THR  # random boxes rarely overlap by more than 0.3
    keep = _run(backend, device, boxes, scores, thr, lay)
    expected = R.nms(boxes, scores, thr)
    assert keep.tolist() == expected.tolist()
    if n >= 33 and scenario != "random":
        assert 0 < len(keep) < n, "the scenario must suppress something to be a test"


@pytest.mark.parametrize("scenario", ["random", "clustered", "ties", "zero_area", "nonfinite"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("n", [0, 1, 7, 33, 257])
def test_reference_nms_matches_spec_oracle(scenario, dtype, n):
    # the reference is the oracle of every other test: check it against np_nms first
    boxes, scores = _scenario(scenario, n, seed=n + 1)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    for thr in (0.0, 0.3, 0.7, 1.0):
        assert R.nms(boxes, scores, thr).tolist() == np_nms(boxes, scores, thr), thr


@pytest.mark.parametrize("scenario", ["zero_area", "nonfinite"])
@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("n", [7, 65])
def test_nms_degenerate(scenario, target, dtype, n):
    backend, device = target
    if B.interpreted(*target) and (n, dtype) != (65, torch.float32):
        pytest.skip("interpreted Triton: one size and dtype (the rest is covered by cpp/reference)")
    boxes, scores = _scenario(scenario, n, seed=n + 2)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    for thr in (0.0, 0.5, 1.0):
        assert _run(backend, device, boxes, scores, thr).tolist() == np_nms(boxes, scores, thr), thr


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nms_thresholds_0_and_1(target, dtype):
    backend, device = target
    boxes, scores = _scenario("ties", 40, seed=3)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    # 1: IoU > 1 never holds, even for identical boxes (IoU == 1 is kept)
    dup = torch.cat([boxes, boxes])
    dup_s = torch.cat([scores, scores])
    assert _run(backend, device, dup, dup_s, 1.0).tolist() == torch.sort(dup_s, descending=True, stable=True)[1].tolist()
    # 0: any positive overlap suppresses; touching boxes (IoU 0) do not (pytorch/vision#8949)
    keep = _run(backend, device, boxes, scores, 0.0)
    assert keep.tolist() == np_nms(boxes, scores, 0.0)
    kb = boxes[keep].double()
    iou = R.box_iou_matrix(kb, kb, "iou", 0.0)
    assert bool((iou.fill_diagonal_(0) <= 0).all())
    touching = torch.tensor([[0, 0, 1, 1], [1, 0, 2, 1], [0, 1, 1, 2]], dtype=dtype)
    assert _run(backend, device, touching, torch.tensor([3, 2, 1], dtype=dtype), 0.0).tolist() == [0, 1, 2]


RATIOS = [(1, 2), (7, 10), (1, 3), (2, 3), (3, 4), (5, 8), (9, 10), (1, 7), (6, 7)]


def _ratio_pairs(dtype, offset, unit):
    """All RATIOS pairs in one input, each pair 100 units away from the others (disjoint), the
    larger box first with the higher score; returns boxes, scores, the IoU of each pair."""
    boxes, ious = [], []
    for k, (num, den) in enumerate(RATIOS):
        boxes.append(D.pair_at_iou(num, den, offset, unit) + torch.tensor([100.0 * k, 0, 100.0 * k, 0]))
        ious.append(D.iou_in(dtype, num, den))
    boxes = torch.cat(boxes)
    scores = torch.linspace(1.0, 0.5, len(boxes), dtype=torch.float64)
    return boxes, scores, ious


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("offset,unit", [(0.0, 1.0), (37.0, 0.5), (-12.0, 4.0)])
def test_nms_iou_exactly_at_threshold(target, dtype, offset, unit):
    # IoU == threshold is kept, the next representable threshold below suppresses. Each
    # pair's IoU is num/den rounded once in the compute type (inter and union are exact).
    backend, device = target
    boxes64, scores64, ious = _ratio_pairs(dtype, offset, unit)
    boxes, scores = boxes64.to(dtype), scores64.to(dtype)
    if not torch.equal(boxes.double(), boxes64) or len(torch.unique(scores)) != len(scores):
        pytest.skip("coordinates or scores not exact in this dtype")
    if B.interpreted(*target) and (dtype not in (torch.float32, torch.float64) or offset != 37.0):
        pytest.skip("interpreted Triton: two dtypes, one offset")

    def expected(thr):
        # pair k keeps both boxes iff its IoU (as a double) is not above thr
        return [i for k, iou in enumerate(ious) for i in ((2 * k, 2 * k + 1) if iou <= thr else (2 * k,))]

    thresholds = []
    for k, ((num, den), iou) in enumerate(zip(RATIOS, ious)):
        if B.interpreted(*target) and k % 3:
            continue  # interpreted Triton: every third ratio as the threshold (all pairs still present)
        thresholds += [iou, D.nearest_below(iou), num / den]
    for thr in thresholds:
        keep = _run(backend, device, boxes, scores, thr)
        assert keep.tolist() == expected(thr), thr
    # the lower-scored box first in input order: the decision is symmetric
    swapped = boxes.reshape(-1, 2, 4).flip(1).reshape(-1, 4)
    thr = D.nearest_below(ious[1])
    keep = _run(backend, device, swapped, scores, thr)
    assert keep.tolist() == expected(thr)


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nms_ties_keep_input_order(target, dtype):
    backend, device = target
    same = torch.tensor([[0, 0, 10, 10]] * 5, dtype=dtype)
    assert _run(backend, device, same, torch.ones(5, dtype=dtype), 0.5).tolist() == [0]
    disjoint = torch.tensor([[i * 20, 0, i * 20 + 10, 10] for i in range(9)], dtype=dtype)
    s = torch.tensor([1, 2, 1, 2, 1, 2, 1, 2, 1], dtype=dtype)
    assert _run(backend, device, disjoint, s, 0.5).tolist() == [1, 3, 5, 7, 0, 2, 4, 6, 8]
    # among equal scores the earlier box wins the suppression
    overl = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10]], dtype=dtype)
    assert _run(backend, device, overl.flip(0), torch.ones(3, dtype=dtype), 0.5).tolist() == [0]


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nms_nan_and_inf(target, dtype):
    backend, device = target
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10],
                          [0, 0, math.nan, 10], [0, 0, 10, 10]], dtype=dtype)
    scores = torch.tensor([0.5, math.inf, math.nan, -math.inf, 0.9, math.nan], dtype=dtype)
    # order: NaN (input order) > +inf > 0.9 > 0.5 > -inf; box 2 (NaN score) suppresses the
    # other copies; box 4 has a NaN coordinate: NaN IoU, never suppressed, never suppresses
    assert _run(backend, device, boxes, scores, 0.5).tolist() == [2, 4]
    inf_boxes = torch.tensor([[0, 0, math.inf, math.inf], [0, 0, math.inf, math.inf], [0, 0, 5, 5],
                              [-math.inf, 0, 5, 5]], dtype=dtype)
    s = torch.tensor([4.0, 3, 2, 1], dtype=dtype)
    assert _run(backend, device, inf_boxes, s, 0.5).tolist() == np_nms(inf_boxes, s, 0.5)


@pytest.mark.parametrize("target", B.targets())
def test_nms_integer_inputs_upcast(target):
    backend, device = target
    boxes, scores = _scenario("ties", 50, 9)
    expected = R.nms(boxes.float(), (scores * 3).float(), 0.4).tolist()
    assert _run(backend, device, boxes.int(), (scores * 3).long(), 0.4).tolist() == expected
    assert _run(backend, device, boxes.long(), (scores * 3).float(), 0.4).tolist() == expected


@pytest.mark.parametrize("target", B.targets())
def test_nms_empty(target):
    backend, device = target
    for dt in (torch.float32, torch.float64, torch.float16):
        keep = detseg.nms(torch.zeros(0, 4, dtype=dt, device=device), torch.zeros(0, dtype=dt, device=device), 0.5,
                          backend=backend)
        assert keep.shape == (0,) and keep.dtype == torch.int64 and keep.device.type == device


# ---------------------------------------------------------------- batched_nms

def _classes(kind: str, n: int, seed: int) -> torch.Tensor:
    g = D.gen(seed)
    if kind == "one":
        return torch.zeros(n, dtype=torch.int64)
    if kind == "few":
        return torch.randint(0, 3, (n,), generator=g)
    return torch.randint(-5, 60, (n,), generator=g)  # many, including negative class ids


def _coords(regime: str, boxes: torch.Tensor) -> torch.Tensor:
    if regime == "negative":  # every coordinate < -1: torchvision's offset trick mixes classes here
        return boxes - 400.0
    if regime == "large":  # offsets idx * (max + 1) would lose the boxes' precision
        return boxes + 1.0e6
    return boxes


def _run_batched(backend, device, boxes, scores, idxs, thr, lay="contiguous"):
    out = detseg.batched_nms(D.layout(boxes, lay).to(device), D.layout(scores, lay).to(device),
                             D.layout(idxs, lay).to(device), thr, backend=backend)
    assert out.dtype == torch.int64 and out.dim() == 1 and out.device.type == device
    return out.cpu()


def _batched_params():
    out = []
    grid = [(c, r) for c in ("one", "few", "many") for r in ("normal", "negative", "large")]
    for i, p in enumerate(B.matrix([torch.float64, torch.float32, torch.float16], ["contiguous", "colslice"],
                                   sizes=B.NMS_SIZES)):
        target, n = p.values[0], p.values[1]
        for j, (c, r) in enumerate(grid):
            if B.interpreted(*target) and (n == 1 or j % 3 != i % 3 or c == "one" and r != "normal"):
                continue
            out.append(pytest.param(c, r, *p.values, id=f"{p.id}-{c}-{r}", marks=p.marks))
    return out


@pytest.mark.parametrize("classes,regime,target,n,dtype,lay", _batched_params())
def test_batched_nms(classes, regime, target, n, dtype, lay):
    backend, device = target
    boxes, scores = _scenario("clustered" if n % 2 else "ties", n, seed=n + 5)
    boxes = _coords(regime, boxes)
    if dtype == torch.float16 and regime == "large":
        boxes = boxes - 1.0e6 + 3.0e4  # float16's range ends at 65504
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    idxs = _classes(classes, n, n)
    keep = _run_batched(backend, device, boxes, scores, idxs, THR, lay)
    assert keep.tolist() == R.batched_nms(boxes, scores, idxs, THR).tolist()


@pytest.mark.parametrize("n", [0, 1, 7, 64, 257])
@pytest.mark.parametrize("classes", ["one", "few", "many"])
@pytest.mark.parametrize("regime", ["normal", "negative", "large"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_batched_nms_is_per_class_nms_merged(n, classes, regime, dtype):
    boxes, scores = _scenario("ties", n, seed=n + 6)
    boxes, scores = _coords(regime, boxes).to(dtype), scores.to(dtype)
    idxs = _classes(classes, n, n + 1)
    assert R.batched_nms(boxes, scores, idxs, THR).tolist() == np_batched_nms(boxes, scores, idxs, THR)


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("idx_dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_batched_nms_idx_dtypes(target, idx_dtype):
    backend, device = target
    boxes, scores = _scenario("ties", 120, 7)
    idxs = _classes("few", 120, 8).to(idx_dtype)
    expected = np_batched_nms(boxes, scores, idxs.long(), THR)
    assert _run_batched(backend, device, boxes, scores, idxs, THR).tolist() == expected
    assert _run_batched(backend, device, boxes, scores, idxs, THR, lay="rowstride").tolist() == expected


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_batched_nms_never_compares_across_classes(target, dtype):
    backend, device = target
    # identical boxes in different classes are all kept, wherever they are
    for base in ([-50.0, -40.0, -30.0, -20.0], [-3.0, -3.0, -2.0, -1.5], [0.0, 0.0, 1.0, 1.0]):
        boxes = torch.tensor([base] * 4, dtype=dtype)
        idxs = torch.tensor([0, 1, 2, 1])
        keep = _run_batched(backend, device, boxes, torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=dtype), idxs, 0.5)
        assert keep.tolist() == [0, 1, 2]
    # negative coordinates where torchvision's offset idxs * (max + 1) (max = -2) would shift
    # class 1 by -1 onto class 0's boxes
    boxes = torch.tensor([[-10.0, -10.0, -2.0, -2.0], [-9.0, -9.0, -1.0 - 1.0, -1.0 - 1.0]], dtype=dtype)
    keep = _run_batched(backend, device, boxes, torch.tensor([0.9, 0.8], dtype=dtype), torch.tensor([0, 1]), 0.3)
    assert keep.tolist() == [0, 1]


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_nms_order_and_nan(target, dtype):
    backend, device = target
    boxes = torch.tensor([[i * 20.0, 0, i * 20 + 10, 10] for i in range(6)], dtype=dtype)
    scores = torch.tensor([0.5, math.nan, 0.7, 0.5, math.nan, 0.7], dtype=dtype)
    idxs = torch.tensor([3, 1, 2, 1, 3, 0])
    # merged order: NaN first (by index), then score descending, ties by index ascending
    assert _run_batched(backend, device, boxes, scores, idxs, 0.5).tolist() == [1, 4, 2, 5, 0, 3]


@pytest.mark.parametrize("target", B.targets())
def test_batched_nms_empty_and_public_upcast(target):
    backend, device = target
    z = torch.zeros(0, 4, device=device)
    keep = detseg.batched_nms(z, torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device),
                              0.5, backend=backend)
    assert keep.shape == (0,) and keep.dtype == torch.int64
    boxes, scores = _scenario("ties", 60, 12)
    idxs = _classes("few", 60, 13)
    expected = np_batched_nms(boxes.float(), (scores * 3).float(), idxs, THR)
    assert _run_batched(backend, device, boxes.int(), (scores * 3).int(), idxs, THR).tolist() == expected


# ---------------------------------------------------------------- score order: special values

SPECIAL_SCORES = [0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 1e-45, -1e-45, 5e-324, 1.0, -1.0,
                  3.4e38, -3.4e38, 0.5]


def _special_scores(n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    vals = torch.tensor(SPECIAL_SCORES, dtype=torch.float64).to(dtype)  # -NaN keeps its sign bit
    return vals[torch.randint(0, len(vals), (n,), generator=D.gen(seed))]


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_nms_score_order_special_values(target, dtype):
    # +0 == -0 (ties: input order), NaN of either sign ranks above +inf, denormals are not 0
    backend, device = target
    n = 40 if B.interpreted(*target) else 300  # > 256: the CPU kernel's sorting path for larger inputs
    boxes = D.random_boxes(n, 3, scale=2000.0, max_wh=20)  # sparse: almost nothing suppressed
    scores = _special_scores(n, dtype, 4)
    assert bool(torch.signbit(scores[torch.isnan(scores)]).any()), "the draw must contain a negative NaN"
    keep = _run(backend, device, boxes.to(dtype), scores, 0.5)
    assert keep.tolist() == R.nms(boxes.to(dtype), scores, 0.5).tolist()
    order = torch.sort(scores, descending=True, stable=True)[1]
    kept = set(keep.tolist())
    assert keep.tolist() == [i for i in order.tolist() if i in kept]
    idxs = torch.randint(0, 5, (n,), generator=D.gen(5))
    assert _run_batched(backend, device, boxes.to(dtype), scores, idxs, 0.5).tolist() == \
        R.batched_nms(boxes.to(dtype), scores, idxs, 0.5).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scenario", ["clustered", "ties", "special"])
def test_nms_large_cpp_vs_reference(dtype, scenario):
    # above 4096 boxes: the CPU kernel's wide radix digits and spatial blocking
    B.require("cpp")
    n = 5000
    if scenario == "clustered":
        boxes, scores = D.clustered_boxes(n, 21, clusters=60, jitter=6), D.distinct_scores(n, 21)
    elif scenario == "ties":
        boxes, scores = D.integer_boxes(n, 22, scale=300, max_wh=25), D.tie_scores(n, 22, levels=4)
    else:
        boxes, scores = D.random_boxes(n, 23, scale=1500, max_wh=40), _special_scores(n, torch.float64, 24)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    for thr in (0.0, 0.5, 0.9):
        keep = detseg.nms(boxes, scores, thr, backend="cpp")
        assert keep.tolist() == R.nms(boxes, scores, thr).tolist(), thr


@pytest.mark.parametrize("classes", [1, 64, 3000])
def test_batched_nms_large_cpp_vs_reference(classes):
    # above 32k boxes the CPU kernel runs classes in parallel
    B.require("cpp")
    n = 33000
    boxes = D.clustered_boxes(n, 31, clusters=200, jitter=8).float()
    scores = D.tie_scores(n, 32, levels=50).float()
    idxs = torch.randint(0, classes, (n,), generator=D.gen(33))
    keep = detseg.batched_nms(boxes, scores, idxs, 0.5, backend="cpp")
    assert keep.tolist() == np_batched_nms_fast(boxes, scores, idxs, 0.5)


def np_batched_nms_fast(boxes, scores, idxs, thr):
    """Per-class cpp nms (itself equal to the reference up to 5000 boxes, above), merged by
    stable score order: the Python reference would take a minute on 33k boxes."""
    kept = []
    by_class = torch.sort(idxs, stable=True)[1]
    _, counts = torch.unique_consecutive(idxs[by_class], return_counts=True)
    for m in torch.split(by_class, counts.tolist()):
        kept += m[detseg.nms(boxes[m], scores[m], thr, backend="cpp")].tolist()
    order = torch.sort(scores, descending=True, stable=True)[1].tolist()
    kept = set(kept)
    return [i for i in order if i in kept]


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("box_dtype,score_dtype", [(torch.float64, torch.float32), (torch.float32, torch.float64),
                                                   (torch.float16, torch.float32), (torch.float32, torch.bfloat16)])
def test_nms_mixed_box_and_score_dtypes(target, box_dtype, score_dtype):
    # accepted (torchvision's CPU kernel rejects them): the IoU follows the boxes' dtype, the
    # order the scores' values; every backend agrees with the reference
    backend, device = target
    boxes, scores = D.clustered_boxes(50, 1).to(box_dtype), D.tie_scores(50, 1, levels=7).to(score_dtype)
    assert _run(backend, device, boxes, scores, 0.5).tolist() == R.nms(boxes, scores, 0.5).tolist()
    idxs = torch.arange(50) % 3
    assert _run_batched(backend, device, boxes, scores, idxs, 0.5).tolist() == \
        R.batched_nms(boxes, scores, idxs, 0.5).tolist()
