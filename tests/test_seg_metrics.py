"""Segmentation metrics: functional metrics from a confusion matrix (absent-class conventions),
torchmetrics MeanIoU / DiceScore as external oracles, soft Dice and Dice loss, the streaming
objects and their torch.distributed sync (two processes, gloo)."""

from __future__ import annotations

import math

import pytest
import torch

import _backends  # noqa: F401  -- sets TRITON_INTERPRET before detseg is imported
import detseg
import detseg.metrics as M
from detseg.metrics import functional as F

C = 5


def _maps(b=4, h=16, w=18, seed=0, c=C):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, c - 1, (b, h, w), generator=g)  # class c - 1 never in the target
    p = torch.where(torch.rand(b, h, w, generator=g) < 0.6, t, torch.randint(0, c, (b, h, w), generator=g))
    p[p == 2] = 1  # class 2: in the target only
    t[0][t[0] == 3] = 0  # image 0 has no class 3 anywhere
    p[0][p[0] == 3] = 0
    return p, t


def _literal(cm):
    cm = cm.double()
    tp, t, p = cm.diag(), cm.sum(1), cm.sum(0)
    return tp, t, p


# ---------------------------------------------------------------- functional

def test_functional_values_by_hand():
    cm = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # class 2 absent from both
    iou = F.iou_per_class(cm)
    assert iou[:2].tolist() == [5 / 8, 3 / 6] and math.isnan(iou[2])
    assert F.iou_per_class(cm, "neg1")[2] == -1 and F.iou_per_class(cm, "one")[2] == 1
    assert F.mean_iou(cm).item() == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert F.mean_iou(cm, "neg1").item() == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert F.mean_iou(cm, "one").item() == pytest.approx((5 / 8 + 3 / 6 + 1) / 3)
    assert F.mean_iou(cm, "zero").item() == pytest.approx((5 / 8 + 3 / 6) / 3)
    assert F.frequency_weighted_iou(cm).item() == pytest.approx((6 * 5 / 8 + 5 * 3 / 6) / 11)
    assert F.dice_per_class(cm)[:2].tolist() == pytest.approx([10 / 13, 6 / 9])
    assert F.pixel_accuracy(cm).item() == pytest.approx(8 / 11)
    assert F.class_accuracy(cm)[:2].tolist() == pytest.approx([5 / 6, 3 / 5])
    assert F.mean_class_accuracy(cm).item() == pytest.approx((5 / 6 + 3 / 5) / 2)
    assert F.dice_score(cm, "micro").item() == pytest.approx(16 / 22)
    assert F.dice_score(cm, "weighted").item() == pytest.approx((6 * 10 / 13 + 5 * 6 / 9) / 11)
    empty = torch.zeros(3, 3, dtype=torch.int64)
    for fn in (F.mean_iou, F.pixel_accuracy, F.frequency_weighted_iou, F.mean_class_accuracy):
        assert math.isnan(fn(empty))
    assert F.mean_iou(empty, "one") == 1.0
    with pytest.raises(ValueError, match=r"detseg.metrics.mean_iou: absent must be one of"):
        F.mean_iou(cm, "skip")
    with pytest.raises(ValueError, match=r"confmat must be a Tensor\[..., C, C\]"):
        F.mean_iou(torch.zeros(3, 4))


def test_functional_batched_and_background():
    p, t = _maps()
    per = detseg.confusion_matrix(p, t, C, per_image=True)
    assert F.iou_per_class(per).shape == (4, C)
    for b in range(4):
        torch.testing.assert_close(F.mean_iou(per)[b], F.mean_iou(per[b]), equal_nan=True)
    nb = F.iou_per_class(per[1], include_background=False)
    torch.testing.assert_close(nb, F.iou_per_class(per[1])[1:], equal_nan=True)


# ---------------------------------------------------------------- torchmetrics oracles

def _torchmetrics():
    # imported lazily: the spawned workers of the distributed test import this module too
    return pytest.importorskip("torchmetrics.segmentation")


@pytest.mark.parametrize("per_class", [True, False])
@pytest.mark.parametrize("include_background", [True, False])
def test_mean_iou_vs_torchmetrics(per_class, include_background):
    tm_seg = _torchmetrics()
    p, t = _maps(seed=1)
    ref = tm_seg.MeanIoU(num_classes=C, per_class=per_class, include_background=include_background,
                         input_format="index")
    ours = M.MeanIoU(C, per_class=per_class, aggregation="samplewise", absent="neg1")
    for s in (slice(0, 1), slice(1, 4)):
        ref.update(p[s], t[s])
        ours.update(p[s], t[s])
    s = ours.state()
    first = 0 if include_background else 1  # our objects keep every class; torchmetrics drops class 0
    n = s["present"].double()[first:]
    per = F._ratio(s["iou_sum"][first:], n, "neg1")
    if per_class:
        got = per
        if include_background:
            torch.testing.assert_close(ours.compute(), per)
    else:
        # torchmetrics averages over (image, class) pairs where the class occurs: the pooled state
        got = s["iou_sum"][first:].sum() / n.sum()
        if include_background:
            torch.testing.assert_close(M.ConfusionMatrix.compute(ours)["samplewise_pooled_iou"], got)
    torch.testing.assert_close(got.float(), ref.compute().float())


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", "none"])
@pytest.mark.parametrize("aggregation", ["global", "samplewise"])
def test_dice_score_vs_torchmetrics(average, aggregation):
    import warnings

    tm_seg = _torchmetrics()
    p, t = _maps(seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tm_seg.DiceScore(num_classes=C, average=average, aggregation_level=aggregation, input_format="index")
    ours = M.DiceScore(C, average=average, aggregation=aggregation)
    for s in (slice(0, 3), slice(3, 4)):
        ref.update(p[s], t[s])
        ours.update(p[s], t[s])
    torch.testing.assert_close(ours.compute().float(), ref.compute().float(), equal_nan=True)
    if aggregation == "global":  # functional form on the pooled matrix
        torch.testing.assert_close(F.dice_score(detseg.confusion_matrix(p, t, C), average).float(),
                                   ref.compute().float(), equal_nan=True)


# ---------------------------------------------------------------- soft Dice

def test_soft_dice_hard_probs_equal_confusion_dice():
    p, t = _maps(seed=3)
    probs = torch.nn.functional.one_hot(p, C).movedim(-1, 1).double()
    glob = F.soft_dice(probs, t, reduction="global")
    torch.testing.assert_close(glob, F.dice_score(detseg.confusion_matrix(p, t, C), "macro"))
    per = F.soft_dice(probs, t, reduction="none")
    torch.testing.assert_close(per, F.dice_per_class(detseg.confusion_matrix(p, t, C, per_image=True)),
                               equal_nan=True)
    one_hot_t = torch.nn.functional.one_hot(t, C).movedim(-1, 1)
    torch.testing.assert_close(F.soft_dice(probs, one_hot_t, reduction="none"), per, equal_nan=True)
    assert F.soft_dice(probs, t).item() == pytest.approx(per.nanmean().item())


def test_soft_dice_binary_formula_and_grad():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 50, generator=g, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(3, 50, generator=g) > 0.5).double()
    probs = logits.sigmoid()
    d = F.soft_dice(probs, target, reduction="none")
    ref = 2 * (probs * target).sum(1) / (probs.sum(1) + target.sum(1))
    torch.testing.assert_close(d[:, 0], ref)
    sq = F.soft_dice(probs, target, reduction="none", squared=True, smooth=1.0)
    torch.testing.assert_close(sq[:, 0], (2 * (probs * target).sum(1) + 1) / ((probs ** 2).sum(1) + target.sum(1) + 1))
    loss = F.dice_loss(probs, target)
    loss.backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and float(logits.grad.abs().sum()) > 0
    assert torch.autograd.gradcheck(lambda x: F.dice_loss(x.sigmoid(), target, reduction="global"), (logits.detach()
                                    .requires_grad_(),))
    with pytest.raises(ValueError, match=r"reduction must be 'samplewise', 'global' or 'none'"):
        F.soft_dice(probs, target, reduction="mean")
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 4\)"):
        F.soft_dice(torch.rand(2, 4, 3, 3), torch.full((2, 3, 3), 4))


def test_soft_dice_absent_and_streaming():
    probs = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    target = torch.zeros(2, 4, 4, dtype=torch.int64)
    probs[:, 0] = 1.0  # class 0 everywhere in both; classes 1, 2 absent
    assert F.soft_dice(probs, target).item() == 1.0
    assert F.soft_dice(probs, target, absent="zero").item() == pytest.approx(1 / 3)
    assert F.soft_dice(probs, target, absent="one").item() == 1.0
    assert F.dice_loss(probs, target).item() == 0.0
    p, t = _maps(seed=5)
    probs = torch.softmax(torch.randn(4, C, 16, 18, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64), 1)
    sd = M.SoftDice()
    sd.update(probs[:1], t[:1])
    sd.update(probs[1:], t[1:])
    torch.testing.assert_close(sd.compute(), F.soft_dice(probs, t, reduction="global"))


# ---------------------------------------------------------------- streaming objects

def test_streaming_equals_one_shot_and_reset():
    p, t = _maps(b=6, seed=6)
    t[1, 0, :5] = 255
    m = M.ConfusionMatrix(C, ignore_index=255, samplewise=True)
    for i in range(0, 6, 2):
        m.update(p[i:i + 2], t[i:i + 2])
    r = m.compute()
    cm = detseg.confusion_matrix(p, t, C, 255)
    assert torch.equal(r["confmat"], cm)
    torch.testing.assert_close(r["mean_iou"], F.mean_iou(cm), equal_nan=True)
    torch.testing.assert_close(r["pixel_accuracy"], F.pixel_accuracy(cm))
    assert int(r["invalid_pixels"]) == 0
    m.reset()
    assert int(m.compute()["confmat"].sum()) == 0
    bad = p.clone()
    bad[0, 0, 0] = C
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes = 5\)"):
        m.update(bad, t)
    counting = M.ConfusionMatrix(C, ignore_index=255, invalid="count")
    counting.update(bad, t)
    assert int(counting.compute()["invalid_pixels"]) == 1


def _dist_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        p, t = _maps(b=6, seed=7)
        mine = slice(rank * 3, rank * 3 + 3)
        metrics = {"cm": M.ConfusionMatrix(C, samplewise=True),
                   "dice": M.DiceScore(C, average="macro", aggregation="samplewise"),
                   "miou": M.MeanIoU(C, per_class=True, aggregation="samplewise", absent="neg1")}
        for m in metrics.values():
            m.update(p[mine], t[mine])
        res = {k: m.compute() for k, m in metrics.items()}
        if rank == 0:
            torch.save(res, out)
    finally:
        dist.destroy_process_group()


def test_distributed_two_processes_equal_one(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank0.pt")
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    got = torch.load(out)
    p, t = _maps(b=6, seed=7)
    single = {"cm": M.ConfusionMatrix(C, samplewise=True),
              "dice": M.DiceScore(C, average="macro", aggregation="samplewise"),
              "miou": M.MeanIoU(C, per_class=True, aggregation="samplewise", absent="neg1")}
    for m in single.values():
        m.update(p, t)
    ref = {k: m.compute() for k, m in single.items()}
    assert torch.equal(got["cm"]["confmat"], ref["cm"]["confmat"])
    for k in ("mean_iou", "frequency_weighted_iou", "pixel_accuracy", "mean_dice", "samplewise_mean_iou"):
        torch.testing.assert_close(got["cm"][k], ref["cm"][k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["dice"], ref["dice"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["miou"], ref["miou"], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- MONAI ignore_empty

def _monai_literal(p, t, c, ignore_empty, iou=False):
    """MONAI DiceMetric / MeanIoU per (image, class), restated from their documentation: a class
    with target pixels scores 2|X & Y| / (|X| + |Y|) (IoU: |X & Y| / |X | Y|); one without scores
    NaN when ignore_empty, else 1 if the prediction is empty too and 0 if not."""
    out = torch.empty(p.shape[0], c, dtype=torch.float64)
    for b in range(p.shape[0]):
        for k in range(c):
            x, y = p[b] == k, t[b] == k
            inter, nx, ny = int((x & y).sum()), int(x.sum()), int(y.sum())
            if ny > 0:
                out[b, k] = inter / (nx + ny - inter) if iou else 2 * inter / (nx + ny)
            elif ignore_empty:
                out[b, k] = float("nan")
            else:
                out[b, k] = 1.0 if nx == 0 else 0.0
    return out


def test_ignore_empty_by_hand():
    # class 2: predicted once, never in the target; class 3: in neither
    cm = torch.tensor([[5, 1, 1, 0], [2, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    iou = F.iou_per_class(cm, "ignore_empty")
    assert iou[:2].tolist() == [5 / 9, 3 / 6] and iou[2:].isnan().all()
    assert F.iou_per_class(cm, "nan")[2] == 0.0  # the other conventions score a false positive 0
    assert F.mean_iou(cm, "ignore_empty").item() == pytest.approx((5 / 9 + 3 / 6) / 2)
    assert F.mean_iou(cm, "nan").item() == pytest.approx((5 / 9 + 3 / 6) / 3)
    assert F.dice_score(cm, "macro", "ignore_empty").item() == pytest.approx((10 / 14 + 6 / 9) / 2)
    assert F.dice_score(cm, "micro", "ignore_empty").item() == pytest.approx(16 / 23)
    assert F.dice_score(cm, "weighted", "ignore_empty").item() == pytest.approx((7 * 10 / 14 + 5 * 6 / 9) / 12)
    assert F.dice_score(cm, "none", "ignore_empty")[2:].isnan().all()
    torch.testing.assert_close(F.class_accuracy(cm, "ignore_empty"), F.class_accuracy(cm, "nan"), equal_nan=True)
    wrong = torch.tensor([[0, 3], [0, 0]])  # class 0 always predicted as 1; class 1 not in the target
    assert F.mean_iou(wrong, "ignore_empty").item() == 0.0 and F.mean_iou(wrong, "nan").item() == 0.0
    empty = torch.zeros(2, 2, dtype=torch.int64)
    assert math.isnan(F.mean_iou(empty, "ignore_empty")) and math.isnan(F.dice_score(empty, "micro", "ignore_empty"))
    with pytest.raises(ValueError, match=r"'ignore_empty'"):
        F.mean_iou(cm, "skip")


@pytest.mark.parametrize("ignore_empty", [True, False])
def test_monai_conventions_per_image(ignore_empty):
    p, t = _maps(b=5, seed=8)
    absent = "ignore_empty" if ignore_empty else "one"
    per = detseg.confusion_matrix(p, t, C, per_image=True)
    for iou, fn in ((False, F.dice_per_class), (True, F.iou_per_class)):
        lit = _monai_literal(p, t, C, ignore_empty, iou)
        assert lit.isnan().any() == ignore_empty  # the maps do have empty-target classes
        torch.testing.assert_close(fn(per, absent), lit, equal_nan=True)
    if not ignore_empty:
        return  # (samplewise streaming averages only over images where a class occurs, whatever absent is)
    # MONAI's reductions: "mean_batch" (per class over images) and "mean" (over all pairs)
    m = M.ConfusionMatrix(C, absent=absent, samplewise=True)
    m.update(p[:2], t[:2])
    m.update(p[2:], t[2:])
    r = m.compute()
    for iou, key in ((False, "dice"), (True, "iou")):
        lit = _monai_literal(p, t, C, ignore_empty, iou)
        torch.testing.assert_close(r[f"samplewise_{key}_per_class"], lit.nanmean(0), equal_nan=True)
    torch.testing.assert_close(r["samplewise_pooled_iou"], _monai_literal(p, t, C, ignore_empty, True).nanmean())
    d = M.DiceScore(C, average="macro", aggregation="samplewise", absent=absent)
    d.update(p, t)
    torch.testing.assert_close(d.compute(), _monai_literal(p, t, C, True).nanmean(1).nanmean())
    # soft Dice of one-hot probabilities is the hard Dice, per (sample, class)
    probs = torch.nn.functional.one_hot(p, C).movedim(-1, 1).double()
    torch.testing.assert_close(F.soft_dice(probs, t, reduction="none", absent=absent),
                               _monai_literal(p, t, C, True), equal_nan=True)
    torch.testing.assert_close(F.soft_dice(probs, t, absent=absent), _monai_literal(p, t, C, True).nanmean())
    sd = M.SoftDice(absent=absent)
    sd.update(probs[:3], t[:3])
    sd.update(probs[3:], t[3:])
    torch.testing.assert_close(sd.compute(), F.soft_dice(probs, t, reduction="global", absent=absent))
    # binary: a predicted foreground on an empty target is skipped, not scored 0
    assert math.isnan(F.soft_dice(torch.ones(1, 6, dtype=torch.float64), torch.zeros(1, 6), absent=absent))
    assert F.soft_dice(torch.ones(1, 6, dtype=torch.float64), torch.zeros(1, 6), absent="nan").item() == 0.0
