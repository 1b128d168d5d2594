"""soft_nms, diou_nms, matrix_nms (and their category-wise forms): C++ kernel equals the
reference to the bit; external oracles ensemble-boxes (soft-NMS), cv2.dnn.softNMSBoxes, and
float64 transcriptions of the DIoU-NMS / SOLOv2 Matrix NMS formulas.

The soft-NMS peers are compared where their conventions coincide with detseg's "opencv" one
(decay iff IoU > threshold; a box is kept while its decayed score stays above min_score):
distinct scores (their tie order follows swaps), no pair IoU within 1e-4 of the threshold,
no decayed score within 1e-4 of min_score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _backends as B
import _data as D
import detseg
from tolerances import assert_bitwise, assert_close

pytestmark = pytest.mark.usefixtures("_cpp")


@pytest.fixture
def _cpp():
    B.require("cpp")


def _far(boxes: torch.Tensor, thr: float, margin: float = 1e-4) -> bool:
    iou = detseg.reference.box_iou_matrix(boxes.double(), boxes.double(), "iou", 0.0)
    return bool(((iou - thr).abs() > margin).all())


def _inputs(n: int, seed: int, thr: float | None = None, integer: bool = False):
    for attempt in range(50):
        s = seed * 100 + attempt
        boxes = D.integer_boxes(n, s, scale=60, max_wh=30) if integer else D.clustered_boxes(n, s, clusters=5, jitter=6)
        if thr is None or _far(boxes, thr):
            return boxes.float(), D.distinct_scores(n, s).float()
    raise AssertionError("could not draw inputs away from the threshold")


SIZES = [0, 1, 7, 60, 211]


# ---------------------------------------------------------------- C++ == reference

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("convention", ["mmcv", "opencv"])
@pytest.mark.parametrize("batched", [False, True])
def test_soft_nms_cpp_equals_reference(dtype, n, method, convention, batched):
    boxes = D.clustered_boxes(n, n + 1, clusters=4, jitter=5).to(dtype)
    scores = D.tie_scores(n, n + 2, levels=5).to(dtype) if n % 2 else torch.rand(n, generator=D.gen(n)).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 5)) if batched else None
    args = (boxes, scores, idxs, 0.3, 0.5, 0.1, method, convention)
    k1, v1 = torch.ops.detseg.soft_nms(*args)
    k2, v2 = detseg.reference.soft_nms(*args)
    assert_bitwise(k1, k2)
    assert_bitwise(v1, v2)
    assert v1.dtype == dtype and k1.dtype == torch.int64
    if n:
        assert (v1[1:] <= v1[:-1]).all()
        assert len(set(k1.tolist())) == len(k1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("thr", [0.0, 0.35, 0.7])
def test_diou_nms_cpp_equals_reference(dtype, n, batched, thr):
    boxes = D.clustered_boxes(n, n + 3, clusters=4, jitter=5).to(dtype)
    scores = D.tie_scores(n, n, levels=6).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 1)) if batched else None
    assert_bitwise(torch.ops.detseg.diou_nms(boxes, scores, idxs, thr), detseg.reference.diou_nms(boxes, scores,
                                                                                                 idxs, thr))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_matrix_nms_cpp_equals_reference(dtype, n, batched, kernel):
    boxes = D.clustered_boxes(n, n + 4, clusters=4, jitter=5).to(dtype)
    scores = D.tie_scores(n, n + 1, levels=6).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 2)) if batched else None
    got = torch.ops.detseg.matrix_nms(boxes, scores, idxs, kernel, 2.0)
    assert_bitwise(got, detseg.reference.matrix_nms(boxes, scores, idxs, kernel, 2.0))
    assert bool((got <= scores).all())


def test_nonfinite_inputs_match_reference():
    boxes = D.nonfinite_boxes(40, 3).float()
    scores = torch.rand(40, generator=D.gen(1))
    scores[[3, 9]] = float("nan")
    scores[5] = float("inf")
    for args in [(None, 0.3, 0.5, 0.1, "linear", "mmcv"), (None, 0.3, 0.5, 0.1, "gaussian", "opencv")]:
        k1, v1 = torch.ops.detseg.soft_nms(boxes, scores, *args)
        k2, v2 = detseg.reference.soft_nms(boxes, scores, *args)
        assert_bitwise(k1, k2)
        assert_bitwise(v1, v2)
        assert 3 not in k1.tolist() and 9 not in k1.tolist()  # NaN scores dropped
    assert_bitwise(torch.ops.detseg.diou_nms(boxes, scores, None, 0.5), detseg.reference.diou_nms(boxes, scores,
                                                                                                 None, 0.5))
    for kernel in ("linear", "gaussian"):
        assert_bitwise(torch.ops.detseg.matrix_nms(boxes, scores, None, kernel, 2.0),
                       detseg.reference.matrix_nms(boxes, scores, None, kernel, 2.0))


def test_conventions_differ_at_the_threshold():
    # IoU exactly 0.5 (representable): mmcv decays (>=), opencv does not (>).
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])  # inter 2, union 4
    scores = torch.tensor([0.9, 0.8])
    for backend in B.CPU_BACKENDS:
        _, v = detseg.ops.soft_nms(boxes, scores, 0.5, 0.5, 0.0, "linear", "mmcv", backend=backend)
        assert v.tolist() == pytest.approx([0.9, 0.4])
        _, v = detseg.ops.soft_nms(boxes, scores, 0.5, 0.5, 0.0, "linear", "opencv", backend=backend)
        assert v.tolist() == pytest.approx([0.9, 0.8])
        # mmcv drops after decay below min_score; opencv stops below min_score
        k, _ = detseg.ops.soft_nms(boxes, scores, 0.5, 0.5, 0.5, "linear", "mmcv", backend=backend)
        assert k.tolist() == [0]


def test_diou_keeps_overlapping_boxes_with_distant_centres():
    # IoU 0.5 > 0.45 (plain NMS suppresses), but DIoU = 0.5 - 1 / 17 = 0.441 < 0.45.
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert detseg.ops.nms(boxes, scores, 0.45).tolist() == [0]
    for backend in B.CPU_BACKENDS:
        assert detseg.ops.diou_nms(boxes, scores, 0.45, backend=backend).tolist() == [0, 1]
        assert detseg.ops.diou_nms(boxes, scores, 0.44, backend=backend).tolist() == [0]


def test_thread_count_does_not_change_the_result():
    boxes, scores = _inputs(3000, 5)
    idxs = torch.randint(0, 8, (3000,), generator=D.gen(2))

    def run():
        return (*torch.ops.detseg.soft_nms(boxes, scores, idxs, 0.3, 0.5, 0.05, "gaussian", "mmcv"),
                torch.ops.detseg.diou_nms(boxes, scores, idxs, 0.5),
                torch.ops.detseg.matrix_nms(boxes[:800], scores[:800], idxs[:800], "gaussian", 2.0))

    for a, b in zip(B.at_threads(1, run), B.at_threads(2, run)):
        assert_bitwise(a, b)


# ---------------------------------------------------------------- external oracles

@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("n", [7, 60, 250])
def test_soft_nms_vs_ensemble_boxes(method, n):
    eb = pytest.importorskip("ensemble_boxes.ensemble_boxes_nms")
    thr, sigma, min_score = 0.4, 0.5, 0.05
    boxes, scores = _inputs(n, n, thr)
    norm = (boxes / 200.0).double()  # ensemble-boxes works on [0, 1] coordinates
    keep, val = detseg.ops.soft_nms(norm, scores.double(), thr, sigma, min_score, method, "opencv")
    # Method codes: 1 linear (decay iff IoU > Nt), 2 gaussian exp(-IoU^2 / sigma); kept iff the
    # pick-time score > thresh.
    theirs = eb.cpu_soft_nms_float(norm.numpy().copy(), scores.double().numpy().copy(), Nt=thr, sigma=sigma,
                                   thresh=min_score, method=1 if method == "linear" else 2)
    assert not bool(((val - min_score).abs() < 1e-4).any())
    assert keep.tolist() == [int(i) for i in theirs]
    if n >= 60:
        assert len(keep) < n  # the comparison must include drops


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("n", [7, 60, 250])
def test_soft_nms_vs_opencv(method, n):
    cv2 = pytest.importorskip("cv2")
    thr, sigma, min_score = 0.3, 0.5, 0.2
    boxes, scores = _inputs(n, n + 11, thr, integer=True)
    xywh = detseg.reference.box_convert(boxes.double(), "xyxy", "xywh").round().long().tolist()
    upd, idx = cv2.dnn.softNMSBoxes(xywh, scores.tolist(), min_score, thr, top_k=0, sigma=sigma,
                                    method=1 if method == "linear" else 2)
    keep, val = detseg.ops.soft_nms(boxes, scores, thr, sigma, min_score, method, "opencv")
    assert keep.tolist() == np.asarray(idx).reshape(-1).tolist()
    assert_close(val, torch.from_numpy(np.asarray(upd, dtype=np.float32).reshape(-1)).double())
    if n >= 60:
        assert len(keep) < n


def _diou_nms_f64(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """DIoU-NMS from the paper's formula, float64, written independently."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep, dead = [], set()
    for a, i in enumerate(order):
        if i in dead:
            continue
        keep.append(i)
        for j in order[a + 1:]:
            bi, bj = boxes[i], boxes[j]
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
            c2 = (max(bi[2], bj[2]) - min(bi[0], bj[0])) ** 2 + (max(bi[3], bj[3]) - min(bi[1], bj[1])) ** 2
            d2 = ((bi[0] + bi[2]) / 2 - (bj[0] + bj[2]) / 2) ** 2 + ((bi[1] + bi[3]) / 2 - (bj[1] + bj[3]) / 2) ** 2
            if inter / union - d2 / c2 > thr:
                dead.add(j)
    return keep


@pytest.mark.parametrize("n", [7, 80, 200])
@pytest.mark.parametrize("thr", [0.2, 0.5])
def test_diou_nms_vs_formula(n, thr):
    boxes, scores = _inputs(n, n + 3)
    keep = detseg.ops.diou_nms(boxes.double(), scores.double(), thr)
    assert keep.tolist() == _diou_nms_f64(boxes.double().numpy(), scores.double().numpy(), thr)
    if n >= 80:
        assert len(keep) < n


def _matrix_nms_solov2(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, kernel: str, sigma: float):
    """SOLOv2's matrix_nms transcribed on box IoU (float64): sorted inputs, returns decayed scores."""
    n = len(scores)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    iw = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    inter = iw * ih
    iou = np.triu(inter / (area[:, None] + area[None] - inter), k=1)
    label_matrix = np.triu(labels[:, None] == labels[None], k=1)
    decay_iou = iou * label_matrix
    compensate = np.broadcast_to(decay_iou.max(0), (n, n)).T
    if kernel == "gaussian":
        decay = np.exp(-sigma * decay_iou ** 2) / np.exp(-sigma * compensate ** 2)
    else:
        decay = (1 - decay_iou) / (1 - compensate)
    return scores * decay.min(0)


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
@pytest.mark.parametrize("n", [7, 90])
def test_matrix_nms_vs_solov2_formula(kernel, n):
    boxes, scores = _inputs(n, n + 9)
    labels = torch.randint(0, 3, (n,), generator=D.gen(n))
    order = torch.sort(scores, descending=True, stable=True)[1]
    want = _matrix_nms_solov2(boxes[order].double().numpy(), scores[order].double().numpy(),
                              labels[order].numpy(), kernel, 2.0)
    got = detseg.ops.batched_matrix_nms(boxes.double(), scores.double(), labels, kernel, 2.0)[order]
    assert_close(got, torch.from_numpy(want))
    assert bool((got < scores[order].double() - 1e-6).any())  # something decayed


# ---------------------------------------------------------------- errors and registration

@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_bad_input(backend):
    boxes, scores = _inputs(10, 1)
    with pytest.raises(ValueError, match=r"detseg.soft_nms: method must be one of 'linear', 'gaussian'"):
        detseg.ops.soft_nms(boxes, scores, method="hard", backend=backend)
    with pytest.raises(ValueError, match=r"detseg.soft_nms: convention must be one of 'mmcv', 'opencv'"):
        detseg.ops.soft_nms(boxes, scores, convention="tf", backend=backend)
    with pytest.raises(ValueError, match=r"detseg.soft_nms: sigma must be a finite number > 0"):
        detseg.ops.soft_nms(boxes, scores, sigma=0.0, backend=backend)
    with pytest.raises(ValueError, match=r"detseg.soft_nms: scores must be a Tensor\[N\] with N = 10"):
        detseg.ops.soft_nms(boxes, scores[:3], backend=backend)
    with pytest.raises(ValueError, match=r"detseg.diou_nms: iou_threshold must be a number in \[0, 1\]"):
        detseg.ops.diou_nms(boxes, scores, -0.1, backend=backend)
    with pytest.raises(TypeError, match=r"detseg.diou_nms: idxs must be an integer tensor"):
        detseg.ops.batched_diou_nms(boxes, scores, scores, 0.5, backend=backend)
    with pytest.raises(ValueError, match=r"detseg.matrix_nms: kernel must be one of 'linear', 'gaussian'"):
        detseg.ops.matrix_nms(boxes, scores, "box", backend=backend)
    with pytest.raises(ValueError, match=r"detseg.matrix_nms: boxes must be a Tensor\[N, 4\]"):
        detseg.ops.matrix_nms(boxes[:, :3], scores, backend=backend)


def test_opcheck():
    boxes, scores = _inputs(30, 2)
    idxs = torch.randint(0, 3, (30,), generator=D.gen(0))
    for i in (None, idxs):
        torch.library.opcheck(torch.ops.detseg.soft_nms.default, (boxes, scores, i, 0.3, 0.5, 0.05, "gaussian",
                                                                  "mmcv"))
        torch.library.opcheck(torch.ops.detseg.diou_nms.default, (boxes, scores, i, 0.5))
        torch.library.opcheck(torch.ops.detseg.matrix_nms.default, (boxes, scores, i, "linear", 2.0))


def test_compile_fullgraph(monkeypatch):
    monkeypatch.setattr(torch._dynamo.config, "capture_dynamic_output_shape_ops", True)
    boxes, scores = _inputs(50, 4)

    def f(b, s):
        k, v = detseg.ops.soft_nms(b, s, 0.3, 0.5, 0.05)
        return k, v, detseg.ops.diou_nms(b, s, 0.5), detseg.ops.matrix_nms(b, s)

    got = torch.compile(f, fullgraph=True, backend="eager")(boxes, scores)
    for a, b in zip(got, f(boxes, scores)):
        assert_bitwise(a, b)
    assert math.isfinite(float(got[1].sum()))


# ---------------------------------------------------------------- Triton (interpreted on the CPU)

@pytest.mark.parametrize("n", [0, 1, 40, 150])
@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
@pytest.mark.parametrize("batched", [False, True])
def test_matrix_nms_triton(n, kernel, batched):
    import _backends
    if "triton" not in _backends.CPU_BACKENDS:
        pytest.skip("Triton is not available on this machine")
    boxes = D.clustered_boxes(n, n + 4, clusters=4, jitter=5)
    scores = D.tie_scores(n, n + 1, levels=6)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 2)) if batched else None
    if batched:
        got = detseg.ops.batched_matrix_nms(boxes, scores, idxs, kernel, 2.0, backend="triton")
    else:
        got = detseg.ops.matrix_nms(boxes, scores, kernel, 2.0, backend="triton")
    want = torch.ops.detseg.matrix_nms(boxes, scores, idxs, kernel, 2.0)
    if kernel == "linear":
        assert_bitwise(got, want)
    else:
        assert_close(got, want.double())


def _triton():
    if "triton" not in B.CPU_BACKENDS:
        pytest.skip("Triton is not available on this machine")
    import detseg.triton as T
    return T


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 40])
@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("convention", ["mmcv", "opencv"])
@pytest.mark.parametrize("batched", [False, True])
def test_soft_nms_triton_equals_cpp(dtype, n, method, convention, batched):
    T = _triton()
    boxes = D.clustered_boxes(n, n + 1, clusters=4, jitter=5).to(dtype)
    scores = D.tie_scores(n, n + 2, levels=5).to(dtype) if n % 2 else torch.rand(n, generator=D.gen(n)).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 5)) if batched else None
    args = (boxes, scores, idxs, 0.3, 0.5, 0.1, method, convention)
    k1, v1 = torch.ops.detseg.soft_nms(*args)
    k2, v2 = T.soft_nms(*args)
    assert_bitwise(k2, k1)
    if dtype == torch.float64 and method == "gaussian":
        assert_close(v2, v1)  # tl.exp against the C library's exp: the last bit may differ
    else:
        assert_bitwise(v2, v1)  # float32 gaussian included: libm_expf is glibc's expf
    if n == 40:
        assert len(k1) < n and bool((v1 < scores[k1]).any())  # drops and decays happened


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 40])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("thr", [0.0, 0.35, 0.7])
def test_diou_nms_triton_equals_cpp(dtype, n, batched, thr):
    T = _triton()
    boxes = D.clustered_boxes(n, n + 3, clusters=4, jitter=5).to(dtype)
    scores = D.tie_scores(n, n, levels=6).to(dtype)
    idxs = torch.randint(0, 3, (n,), generator=D.gen(n + 1)) if batched else None
    got = detseg.ops.batched_diou_nms(boxes, scores, idxs, thr, backend="triton") if batched else \
        detseg.ops.diou_nms(boxes, scores, thr, backend="triton")
    assert_bitwise(got, torch.ops.detseg.diou_nms(boxes, scores, idxs, thr))


def test_nms_variants_triton_nonfinite_and_ties():
    T = _triton()
    boxes = D.nonfinite_boxes(40, 3).float()
    scores = torch.rand(40, generator=D.gen(1))
    scores[[3, 9]] = float("nan")
    scores[[5, 6]] = float("inf")
    scores[[10, 11, 12]] = float(scores[13])  # exact ties: the lowest index is picked first
    boxes[11] = boxes[10]
    # identical boxes with infinite scores: linear decay by 1 - IoU = 0 makes inf * 0 = NaN,
    # which is picked next (NaN ranks first)
    boxes[5] = boxes[6] = torch.tensor([10.0, 10.0, 20.0, 20.0])
    for args in [(None, 0.3, 0.5, 0.1, "linear", "mmcv"), (None, 0.3, 0.5, 0.1, "gaussian", "opencv"),
                 (None, 0.0, 0.5, 0.0, "linear", "opencv")]:
        k1, v1 = torch.ops.detseg.soft_nms(boxes, scores, *args)
        k2, v2 = T.soft_nms(boxes, scores, *args)
        assert_bitwise(k2, k1)
        assert_bitwise(v2, v1)
        assert 3 not in k2.tolist() and 9 not in k2.tolist()  # NaN scores dropped
        if args[4] == "linear" and args[1] == 0.3:
            assert k2[:2].tolist() == [6, 5] and math.isnan(v2[0]) and v2[1] == math.inf
    assert_bitwise(T.diou_nms(boxes, scores, None, 0.5), torch.ops.detseg.diou_nms(boxes, scores, None, 0.5))


def test_triton_libm_expf_is_the_c_library_expf():
    _triton()
    from detseg.reference.postprocess import libm_exp
    from detseg.triton.nms_variants import expf

    # random bit patterns over the whole float32 line plus the overflow / underflow edges
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-2 ** 31, 2 ** 31, (60000,), generator=g, dtype=torch.int64).to(torch.int32).view(torch.float32)
    x = torch.cat([x, torch.linspace(-110, 95, 20000), torch.tensor([
        0.0, -0.0, float("inf"), float("-inf"), float("nan"), 88.72283172607421875, 88.72284, -103.972076416015625,
        -103.97208, -87.33654, 1e-40, -1e-40])])
    assert_bitwise(expf(x), libm_exp(x))
