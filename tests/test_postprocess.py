"""multiclass_nms: the fused kernel equals the composition of the separate steps
(detseg.reference.postprocess) to the bit, on every input form and option; fixed-size
outputs trace, compile and export; ONNX Runtime's NonMaxSuppression agrees on the class-aware
per-image selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg.reference import postprocess as RP
from tolerances import assert_bitwise

pytestmark = pytest.mark.usefixtures("_cpp")


@pytest.fixture
def _cpp():
    B.require("cpp")


def _anchors(n: int, seed: int, dtype) -> torch.Tensor:
    return D.random_boxes(n, seed, scale=300.0, min_wh=4.0, max_wh=80.0).to(dtype)


def _inputs(b: int, n: int, c: int, seed: int, dtype, form: str):
    """(boxes or deltas, scores logits, anchors or None) for one input form."""
    g = D.gen(seed)
    scores = torch.randn(b, n, c, generator=g, dtype=torch.float64).to(dtype)
    per_class = form.endswith("per_class")
    if form.startswith("deltas"):
        shape = (b, n, c, 4) if per_class else (b, n, 4)
        deltas = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4).to(dtype)
        anchors = _anchors(n, seed + 1, dtype)
        if form.startswith("deltas_batched"):
            anchors = torch.stack([_anchors(n, seed + 2 + i, dtype) for i in range(b)])
        return deltas, scores, anchors
    base = torch.stack([_anchors(n, seed + 3 + i, dtype) for i in range(b)])
    if per_class:
        jitter = torch.randn(b, n, c, 4, generator=g, dtype=torch.float64).to(dtype) * 3
        base = base[:, :, None, :] + jitter
    return base, scores, None


def _run(backend, boxes, scores, anchors, **kw):
    return detseg.ops.multiclass_nms(boxes, scores, anchors=anchors, backend=backend, **kw)


def _same(a, b):
    for x, y in zip(a, b):
        assert_bitwise(x, y)


FORMS = ["boxes", "boxes_per_class", "deltas", "deltas_per_class", "deltas_batched", "deltas_batched_per_class"]
OPTIONS = [
    dict(score_threshold=0.5, iou_threshold=0.5, max_detections=20),
    dict(score_threshold=0.2, iou_threshold=0.3, max_detections=50, score_activation="sigmoid",
         level_sizes=[40, 25, 8], level_top_k=15, pre_nms_top_k=30, image_size=(200, 260)),
    dict(score_threshold=0.05, iou_threshold=0.6, max_detections=200, score_activation="softmax", background_class=0,
         class_agnostic=True),
    dict(score_threshold=-math.inf, iou_threshold=0.0, max_detections=7, pre_nms_top_k=0),
    dict(score_threshold=0.0, iou_threshold=1.0, max_detections=300, score_activation="sigmoid", level_top_k=3,
         level_sizes=[0, 73], weights=(10.0, 10.0, 5.0, 5.0), bbox_xform_clip=1.0, image_size=(120, 90)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("opt", range(len(OPTIONS)))
def test_fused_equals_reference_composition(dtype, form, opt):
    kw = OPTIONS[opt]
    c = 1 if opt == 3 else 5
    boxes, scores, anchors = _inputs(3, 73, c, 10 * opt + len(form), dtype, form)
    got = _run("cpp", boxes, scores, anchors, **kw)
    want = _run("reference", boxes, scores, anchors, **kw)
    _same(got, want)
    assert got.boxes.dtype == dtype and got.classes.dtype == torch.int64
    num = got.num_detections
    k = kw["max_detections"]
    for b in range(3):
        m = int(num[b])
        assert (got.classes[b, m:] == -1).all() and (got.indices[b, m:] == -1).all()
        assert (got.scores[b, m:] == 0).all() and (got.boxes[b, m:] == 0).all()
        s = got.scores[b, :m]
        assert (s[1:] <= s[:-1]).all()  # score descending
        assert m <= k
    if opt == 2:
        assert not (got.classes == 0).any()  # background class never reported


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_class", [False, True])
def test_fused_equals_composition_of_compiled_ops_larger(dtype, per_class):
    # The same composition with the compiled batched_nms / clip: a larger problem, many ties
    # removed by a continuous score distribution, many suppressions.
    form = "deltas_per_class" if per_class else "deltas"
    boxes, scores, anchors = _inputs(2, 1500, 12, 7, dtype, form)
    kw = dict(weights=[1.0, 1.0, 1.0, 1.0], bbox_xform_clip=RP_CLIP, image_size=[400, 500], score_threshold=0.3,
              level_sizes=[1000, 400, 100], level_top_k=300, pre_nms_top_k=700, iou_threshold=0.5,
              max_detections=100, class_agnostic=False, background_class=-1, score_activation="sigmoid")
    got = torch.ops.detseg.multiclass_nms(boxes, scores, anchors, *kw.values())
    want = RP.compose(boxes, scores, anchors, *kw.values(), nms_fn=torch.ops.detseg.batched_nms,
                      clip_fn=torch.ops.detseg.clip_boxes_to_image)
    _same(got, want)
    assert (got[0] == 100).all()


RP_CLIP = math.log(1000.0 / 16)


def test_ties_order_by_anchor_then_class():
    # Every score equal: the output is (anchor, class) ascending, boxes far apart (no suppression).
    n, c = 6, 3
    boxes = torch.stack([torch.tensor([10.0 * i, 0, 10.0 * i + 5, 5]) for i in range(n)])[None]
    scores = torch.full((1, n, c), 0.7)
    for backend in ("cpp", "reference"):
        r = _run(backend, boxes, scores, None, score_threshold=0.5, max_detections=n * c)
        assert r.num_detections.item() == n * c
        assert r.indices[0].tolist() == [i for i in range(n) for _ in range(c)]
        assert r.classes[0].tolist() == [k for _ in range(n) for k in range(c)]


def test_threshold_is_strict_and_nan_scores_are_dropped():
    boxes = torch.stack([torch.tensor([10.0 * i, 0, 10.0 * i + 5, 5]) for i in range(5)])[None]
    scores = torch.tensor([[[0.5], [float("nan")], [0.6], [0.5000001], [float("inf")]]])
    for backend in ("cpp", "reference"):
        r = _run(backend, boxes, scores, None, score_threshold=0.5, max_detections=10)
        assert r.num_detections.item() == 3
        assert r.indices[0, :3].tolist() == [4, 2, 3]
    # sigmoid of NaN is NaN: dropped as well
    r = _run("cpp", boxes, scores, None, score_threshold=0.5, max_detections=10, score_activation="sigmoid")
    assert 1 not in r.indices[0].tolist()


def test_empty_images_k_larger_than_candidates_and_degenerate_sizes():
    boxes, scores, anchors = _inputs(4, 50, 3, 5, torch.float32, "deltas")
    scores[1] = -10.0  # no candidate in image 1
    scores[3, :, :] = -10.0
    scores[3, 7, 2] = 10.0  # exactly one in image 3
    for backend in ("cpp", "reference"):
        r = _run(backend, boxes, scores, anchors, score_threshold=0.5, max_detections=500)
        assert r.num_detections[1] == 0 and r.num_detections[3] == 1
        assert r.indices[3, 0] == 7 and r.classes[3, 0] == 2
        assert r.boxes.shape == (4, 500, 4)
    _same(_run("cpp", boxes, scores, anchors, max_detections=500), _run("reference", boxes, scores, anchors,
                                                                         max_detections=500))
    for b, n, c, k in [(0, 5, 3, 4), (2, 0, 3, 4), (2, 5, 0, 4), (2, 5, 3, 0)]:
        bx = torch.zeros(b, n, 4)
        sc = torch.rand(b, n, c)
        r = _run("cpp", bx, sc, None, max_detections=k)
        assert r.boxes.shape == (b, k, 4) and r.num_detections.shape == (b,)
        _same(r, _run("reference", bx, sc, None, max_detections=k))


def test_per_class_boxes_equal_to_expanded_shared_boxes():
    boxes, scores, _ = _inputs(2, 60, 4, 3, torch.float32, "boxes")
    expanded = boxes[:, :, None, :].expand(2, 60, 4, 4)  # non-contiguous (stride 0)
    a = _run("cpp", boxes, scores, None, score_threshold=0.1)
    b = _run("cpp", expanded, scores, None, score_threshold=0.1)
    _same(a, b)


def test_class_agnostic_equals_nms_over_candidates():
    boxes, scores, _ = _inputs(1, 80, 4, 11, torch.float64, "boxes")
    r = _run("cpp", boxes, scores, None, score_threshold=0.2, class_agnostic=True, max_detections=1000)
    flat = scores[0].reshape(-1)
    idx = torch.where(flat > 0.2)[0]
    cand = boxes[0, idx // 4]
    keep = detseg.ops.nms(cand, flat[idx], 0.5)
    m = int(r.num_detections[0])
    assert r.indices[0, :m].tolist() == (idx[keep] // 4).tolist()
    assert r.classes[0, :m].tolist() == (idx[keep] % 4).tolist()


def test_half_inputs_compute_in_float32():
    boxes, scores, anchors = _inputs(2, 40, 3, 2, torch.float32, "deltas")
    h = _run("cpp", boxes.half(), scores.half(), anchors.half(), score_threshold=0.3)
    f = _run("cpp", boxes.half().float(), scores.half().float(), anchors.half().float(), score_threshold=0.3)
    assert h.boxes.dtype == torch.float16 and h.scores.dtype == torch.float16
    assert torch.equal(h.indices, f.indices) and torch.equal(h.boxes, f.boxes.half())


def test_thread_count_does_not_change_the_result():
    boxes, scores, anchors = _inputs(6, 2000, 10, 4, torch.float32, "deltas")
    run = lambda: _run("cpp", boxes, scores, anchors, score_threshold=0.5, score_activation="sigmoid",  # noqa: E731
                       max_detections=100)
    _same(B.at_threads(1, run), B.at_threads(2, run))


# ---------------------------------------------------------------- ONNX Runtime oracle

def test_class_aware_selection_vs_onnxruntime():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "score"], ["selected"])
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, None, None]),
         helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    thr, sthr = 0.5, 0.3
    b, n, c = 3, 300, 4
    for attempt in range(20):
        boxes = torch.stack([D.clustered_boxes(n, 40 + 3 * attempt + i, clusters=6, jitter=5)
                             for i in range(b)]).float()
        iou = torch.stack([detseg.reference.box_iou_matrix(x.double(), x.double(), "iou", 0.0) for x in boxes])
        if bool(((iou - thr).abs() > 1e-4).all()):
            break
    scores = torch.rand(b, n, c, generator=D.gen(8))
    sel = sess.run(None, {"boxes": boxes.numpy(), "scores": scores.permute(0, 2, 1).contiguous().numpy(),
                          "max_out": np.array([n], dtype=np.int64), "iou": np.array([thr], dtype=np.float32),
                          "score": np.array([sthr], dtype=np.float32)})[0]
    r = _run("cpp", boxes, scores, None, score_threshold=sthr, iou_threshold=thr, max_detections=n * c)
    for i in range(b):
        m = int(r.num_detections[i])
        ours = set(zip(r.classes[i, :m].tolist(), r.indices[i, :m].tolist()))
        theirs = {(int(cc), int(nn)) for bb, cc, nn in sel.tolist() if bb == i}
        assert ours == theirs
        assert len(ours) < int((scores[i] > sthr).sum())  # suppressions happened


# ---------------------------------------------------------------- errors

def _ok():
    boxes, scores, anchors = _inputs(2, 10, 3, 1, torch.float32, "deltas")
    return boxes, scores, anchors


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("mutate,exc,match", [
    (lambda a: a.update(scores=a["scores"][0]), ValueError, r"scores must be a Tensor\[B, N, C\]"),
    (lambda a: a.update(boxes=a["boxes"][:, :5]), ValueError, r"boxes \(deltas\) must be a Tensor\[B, N, 4\]"),
    (lambda a: a.update(anchors=a["anchors"][:3]), ValueError, r"anchors must be a Tensor\[N, 4\]"),
    (lambda a: a.update(weights=(1.0, 0.0, 1.0, 1.0)), ValueError, r"weights must be 4 finite numbers > 0"),
    (lambda a: a.update(image_size=(10,)), ValueError, r"image_size must be empty"),
    (lambda a: a.update(level_sizes=[3, 3]), ValueError, r"level_sizes must be counts >= 0 summing to N = 10"),
    (lambda a: a.update(level_top_k=-2), ValueError, r"level_top_k must be >= 0 or -1"),
    (lambda a: a.update(iou_threshold=1.5), ValueError, r"iou_threshold must be a number in \[0, 1\]"),
    (lambda a: a.update(max_detections=-1), ValueError, r"max_detections must be >= 0"),
    (lambda a: a.update(background_class=3), ValueError, r"background_class must be -1 \(none\) or a class"),
    (lambda a: a.update(score_activation="relu"), ValueError, r"score_activation must be one of"),
    (lambda a: a.update(score_threshold=float("nan")), ValueError, r"score_threshold must be a number"),
])
def test_bad_input(backend, mutate, exc, match):
    boxes, scores, anchors = _ok()
    a = dict(boxes=boxes, scores=scores, anchors=anchors)
    mutate(a)
    kw = {k: v for k, v in a.items() if k not in ("boxes", "scores")}
    with pytest.raises(exc, match="detseg.multiclass_nms: " + match):
        detseg.ops.multiclass_nms(a["boxes"], a["scores"], backend=backend, **kw)


def test_bad_dtype_at_the_op():
    boxes, scores, anchors = _ok()
    with pytest.raises(TypeError, match=r"detseg.multiclass_nms: boxes must have the dtype of scores"):
        torch.ops.detseg.multiclass_nms(boxes.double(), scores, anchors, [1.0] * 4, 4.0, [], 0.0, [], -1, -1, 0.5,
                                        10, False, -1, "none")
    with pytest.raises(TypeError, match=r"detseg.multiclass_nms: scores must be float32 or float64"):
        torch.ops.detseg.multiclass_nms(boxes.half(), scores.half(), None, [1.0] * 4, 4.0, [], 0.0, [], -1, -1, 0.5,
                                        10, False, -1, "none")


# ---------------------------------------------------------------- registration contract

def _op_args():
    boxes, scores, anchors = _inputs(2, 30, 3, 9, torch.float32, "deltas")
    return (boxes, scores, anchors, [1.0, 1.0, 1.0, 1.0], RP_CLIP, [100, 120], 0.2, [20, 10], 8, 12, 0.5, 10, False,
            -1, "sigmoid")


def test_opcheck():
    torch.library.opcheck(torch.ops.detseg.multiclass_nms.default, _op_args())
    a = list(_op_args())
    a[2] = None
    a[0] = a[0] + 50
    torch.library.opcheck(torch.ops.detseg.multiclass_nms.default, tuple(a))


class _Head(torch.nn.Module):
    def forward(self, deltas, scores, anchors):
        r = detseg.ops.multiclass_nms(deltas, scores, anchors=anchors, image_size=(100, 120), score_threshold=0.2,
                                      level_sizes=(20, 10), level_top_k=8, max_detections=10,
                                      score_activation="sigmoid")
        return r.num_detections, r.boxes, r.scores, r.classes, r.indices


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_compile_fullgraph_trace_and_export():
    args = _op_args()[:3]
    want = _Head()(*args)
    compiled = torch.compile(_Head(), fullgraph=True, backend="eager")
    _same(compiled(*args), want)
    traced = torch.jit.trace(_Head(), args, check_trace=False)
    _same(traced(*args), want)
    ep = torch.export.export(_Head(), args)
    _same(ep.module()(*args), want)
    assert any("multiclass_nms" in str(n.target) for n in ep.graph.nodes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thr", [0.3, 0.05, 0.999, 0.0, -0.5, 1.0, 1e-30])
def test_sigmoid_screen_at_the_threshold_boundary(dtype, thr):
    # The kernel screens raw logits before evaluating the sigmoid: logits within a few hundred
    # ulps of the boundary must get the reference's decision.
    p = min(max(thr, 1e-6), 1 - 1e-6)
    x0 = torch.tensor(math.log(p) - math.log1p(-p), dtype=dtype)
    xs = [x0]
    up, down = x0.clone(), x0.clone()
    for _ in range(300):
        up = torch.nextafter(up, torch.tensor(math.inf, dtype=dtype))
        down = torch.nextafter(down, torch.tensor(-math.inf, dtype=dtype))
        xs += [up, down]
    xs += [torch.tensor(v, dtype=dtype) for v in (-100.0, 100.0, -math.inf, math.inf, math.nan)]
    scores = torch.stack(xs).reshape(1, -1, 1)
    boxes = torch.arange(scores.shape[1], dtype=dtype)[None, :, None] * 10 + torch.tensor([0, 0, 5, 5], dtype=dtype)
    kw = dict(score_threshold=thr, score_activation="sigmoid", max_detections=scores.shape[1])
    _same(_run("cpp", boxes, scores, None, **kw), _run("reference", boxes, scores, None, **kw))


def test_softmax_rows_with_nan_and_inf():
    scores = torch.randn(2, 6, 4, generator=D.gen(3))
    scores[0, 1, 2] = float("nan")  # the whole row becomes NaN: dropped
    scores[0, 3, 0] = float("inf")  # inf - inf = NaN: dropped as well
    scores[1, 2, :] = -math.inf
    boxes = torch.arange(6.0)[None, :, None].expand(2, 6, 1) * 10 + torch.tensor([0.0, 0, 5, 5])
    kw = dict(score_threshold=0.0, score_activation="softmax", max_detections=30)
    r = _run("cpp", boxes, scores, None, **kw)
    _same(r, _run("reference", boxes, scores, None, **kw))
    got = set(zip(r.indices[0, :int(r.num_detections[0])].tolist()))
    assert (1,) not in got and (3,) not in got and (0,) in got


@pytest.mark.parametrize("k", [1, 40, 600])
def test_prefix_rounds_reach_every_candidate(k):
    # Few boxes survive NMS among 5000 candidates: the kernel's NMS prefix must grow (1024 ->
    # 4096 -> 5000) and still give the composition's answer.
    n = 2500
    boxes = torch.stack([D.clustered_boxes(n, 30 + i, clusters=12, jitter=3) for i in range(2)]).float()
    scores = torch.rand(2, n, 2, generator=D.gen(4))
    kw = [[1.0] * 4, RP_CLIP, [], -math.inf, [], -1, -1, 0.3, k, False, -1, "none"]
    got = torch.ops.detseg.multiclass_nms(boxes, scores, None, *kw)
    want = RP.compose(boxes, scores, None, *kw, nms_fn=torch.ops.detseg.batched_nms)
    _same(got, want)
    assert int(got[0].min()) < 600  # the whole candidate list was needed


@pytest.mark.parametrize("act,thr", [("softmax", 0.2), ("softmax", 0.9), ("sigmoid", 0.9), ("softmax", 1.0)])
def test_screened_activation_many_classes(act, thr):
    # Most rows / scores are screened out before the activation is evaluated.
    boxes, scores, anchors = _inputs(2, 300, 40, 21, torch.float32, "deltas")
    scores = scores * 3
    kw = dict(score_threshold=thr, score_activation=act, max_detections=100, background_class=3)
    got = _run("cpp", boxes, scores, anchors, **kw)
    _same(got, _run("reference", boxes, scores, anchors, **kw))
    assert (int(got.num_detections.sum()) > 0) == (thr < 1.0)
