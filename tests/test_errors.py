"""Invalid arguments raise ValueError (shapes, values) or TypeError (dtypes) with a message
"detseg.<op>: <arg> must be ..., got ..." -- from the public API and from each backend's
internal op (the C++ checks in csrc/checks.h, the Python twins in ops/_checks/). dtypes are spelled by each side's own printer (C++ "Float",
Python "torch.float32"); the words around them are the same."""

from __future__ import annotations

import math

import pytest
import torch

import _backends as B
import _data as D
import detseg

BOXES = D.random_boxes(5, 0).float()
SCORES = D.distinct_scores(5, 0).float()


# ---------------------------------------------------------------- public API

PUBLIC_CASES = [
    # (callable, exception, match)
    (lambda: detseg.box_area(torch.rand(3, 5)), ValueError, r"detseg\.box_area: boxes must be a Tensor\[\.\.\., 4\], got shape \[3, 5\]"),
    (lambda: detseg.box_area([0, 0, 1, 1]), TypeError, r"detseg\.box_area: boxes must be a Tensor, got list"),
    (lambda: detseg.box_area(torch.tensor(1.0)), ValueError, r"detseg\.box_area: boxes must be a Tensor\[\.\.\., 4\]"),
    (lambda: detseg.box_convert(BOXES, "xyzw", "xyxy"), ValueError, r"detseg\.box_convert: in_fmt must be one of 'xyxy', 'xywh', 'cxcywh', got 'xyzw'"),
    (lambda: detseg.box_convert(BOXES, "xyxy", "xyxyxyxy"), ValueError, r"detseg\.box_convert: out_fmt must be one of .*got 'xyxyxyxy'"),
    (lambda: detseg.box_convert(BOXES, None, "xyxy"), ValueError, r"detseg\.box_convert: in_fmt must be one of"),
    (lambda: detseg.box_convert(torch.rand(2, 3), "xyxy", "xywh"), ValueError, r"detseg\.box_convert: boxes must be a Tensor\[\.\.\., 4\]"),
    (lambda: detseg.clip_boxes_to_image(BOXES, (10,)), ValueError, r"detseg\.clip_boxes_to_image: size must be \(height, width\), got \(10,\)"),
    (lambda: detseg.clip_boxes_to_image(torch.rand(4, 2), (10, 10)), ValueError, r"detseg\.clip_boxes_to_image: boxes must be a Tensor\[\.\.\., 4\]"),
    (lambda: detseg.remove_small_boxes(BOXES[None], 1.0), ValueError, r"detseg\.remove_small_boxes: boxes must be a Tensor\[N, 4\], got shape \[1, 5, 4\]"),
    (lambda: detseg.box_iou(torch.rand(3, 5), BOXES), ValueError, r"detseg\.box_iou: boxes1 must be a Tensor\[\.\.\., N, 4\], got shape \[3, 5\]"),
    (lambda: detseg.box_iou(BOXES, torch.rand(4)), ValueError, r"detseg\.box_iou: boxes2 must be a Tensor\[\.\.\., M, 4\], got shape \[4\]"),
    (lambda: detseg.generalized_box_iou(BOXES, "boxes"), TypeError, r"detseg\.generalized_box_iou: boxes2 must be a Tensor, got str"),
    (lambda: detseg.distance_box_iou(torch.rand(2, 3, 4), torch.rand(3, 3, 4)), ValueError, r"detseg\.distance_box_iou: batch dimensions of boxes1 \[2\] and boxes2 \[3\] do not broadcast"),
    (lambda: detseg.complete_box_iou(BOXES, BOXES, fmt="yxyx"), ValueError, r"detseg\.complete_box_iou: fmt must be one of .*got 'yxyx'"),
    (lambda: detseg.box_iou(BOXES, BOXES, fmt=4), ValueError, r"detseg\.box_iou: fmt must be one of"),
    (lambda: detseg.distance_box_iou(BOXES, BOXES, eps=-1e-7), ValueError, r"detseg\.distance_box_iou: eps must be a finite number >= 0, got -1e-07"),
    (lambda: detseg.complete_box_iou(BOXES, BOXES, eps=math.nan), ValueError, r"detseg\.complete_box_iou: eps must be a finite number >= 0, got nan"),
    (lambda: detseg.generalized_box_iou_loss(BOXES, BOXES, reduction="avg"), ValueError, r"detseg\.generalized_box_iou_loss: reduction must be one of 'none', 'mean', 'sum', got 'avg'"),
    (lambda: detseg.distance_box_iou_loss(BOXES, BOXES, reduction=None), ValueError, r"detseg\.distance_box_iou_loss: reduction must be one of"),
    (lambda: detseg.complete_box_iou_loss(BOXES, BOXES[:3]), ValueError, r"detseg\.complete_box_iou_loss: boxes1 \[5, 4\] and boxes2 \[3, 4\] do not broadcast"),
    (lambda: detseg.complete_box_iou_loss(BOXES, torch.rand(5, 3)), ValueError, r"detseg\.complete_box_iou_loss: boxes2 must be a Tensor\[\.\.\., 4\]"),
    (lambda: detseg.distance_box_iou_loss(BOXES, BOXES, eps=math.inf), ValueError, r"detseg\.distance_box_iou_loss: eps must be a finite number >= 0"),
    (lambda: detseg.nms(torch.rand(5, 5), SCORES, 0.5), ValueError, r"detseg\.nms: boxes must be a Tensor\[N, 4\], got shape \[5, 5\]"),
    (lambda: detseg.nms(BOXES[None], SCORES, 0.5), ValueError, r"detseg\.nms: boxes must be a Tensor\[N, 4\], got shape \[1, 5, 4\]"),
    (lambda: detseg.nms(BOXES, SCORES[:4], 0.5), ValueError, r"detseg\.nms: scores must be a Tensor\[N\] with N = 5 as boxes, got shape \[4\]"),
    (lambda: detseg.nms(BOXES, SCORES[None], 0.5), ValueError, r"detseg\.nms: scores must be a Tensor\[N\] with N = 5 as boxes, got shape \[1, 5\]"),
    (lambda: detseg.nms(BOXES, SCORES, math.nan), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got nan"),
    (lambda: detseg.nms(BOXES, SCORES, -0.1), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got -0\.1"),
    (lambda: detseg.nms(BOXES, SCORES, 1.5), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got 1\.5"),
    (lambda: detseg.nms(BOXES, SCORES, "0.5x"), TypeError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got '0\.5x'"),
    (lambda: detseg.nms(BOXES, SCORES, None), TypeError, r"detseg\.nms: iou_threshold must be a number"),
    (lambda: detseg.nms(BOXES, [0.1] * 5, 0.5), TypeError, r"detseg\.nms: scores must be a Tensor, got list"),
    (lambda: detseg.batched_nms(BOXES, SCORES, torch.zeros(5), 0.5), TypeError, r"detseg\.batched_nms: idxs must be an integer tensor, got (torch\.float32|Float)"),
    (lambda: detseg.batched_nms(BOXES, SCORES, torch.zeros(5, dtype=torch.bool), 0.5), TypeError, r"detseg\.batched_nms: idxs must be an integer tensor, got (torch\.bool|Bool)"),
    (lambda: detseg.batched_nms(BOXES, SCORES, torch.zeros(4, dtype=torch.int64), 0.5), ValueError, r"detseg\.batched_nms: idxs must be a Tensor\[N\] with N = 5 as boxes, got shape \[4\]"),
    (lambda: detseg.batched_nms(BOXES, SCORES[:2], torch.zeros(5, dtype=torch.int64), 0.5), ValueError, r"detseg\.batched_nms: scores must be a Tensor\[N\] with N = 5"),
    (lambda: detseg.batched_nms(BOXES, SCORES, torch.zeros(5, dtype=torch.int64), -1.0), ValueError, r"detseg\.batched_nms: iou_threshold must be a number in \[0, 1\], got -1\.0"),
    (lambda: detseg.batched_nms(torch.rand(5, 3), SCORES, torch.zeros(5, dtype=torch.int64), 0.5), ValueError, r"detseg\.batched_nms: boxes must be a Tensor\[N, 4\]"),
]


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
@pytest.mark.parametrize("case", range(len(PUBLIC_CASES)))
def test_public_api_errors(backend, case):
    fn, exc, match = PUBLIC_CASES[case]
    with detseg.use_backend(backend):
        with pytest.raises(exc, match=match):
            fn()


@pytest.mark.parametrize("op,call", [
    ("box_area", lambda b: detseg.box_area(BOXES, backend=b)),
    ("box_iou_matrix", lambda b: detseg.box_iou(BOXES, BOXES, backend=b)),
    ("box_iou_loss", lambda b: detseg.generalized_box_iou_loss(BOXES, BOXES, backend=b)),
    ("nms", lambda b: detseg.nms(BOXES, SCORES, 0.5, backend=b)),
    ("batched_nms", lambda b: detseg.batched_nms(BOXES, SCORES, torch.zeros(5, dtype=torch.int64), 0.5, backend=b)),
])
@pytest.mark.parametrize("name", ["CPP", "torch", "", "triton "])
def test_bad_backend_name(op, call, name):
    with pytest.raises(ValueError, match=rf"detseg\.{op}: backend must be one of 'auto', 'cpp', 'triton', 'reference', got {name!r}"):
        call(name)


def test_use_backend_bad_name_and_nesting():
    with pytest.raises(ValueError, match=r"detseg\.use_backend: backend must be one of .*got 'cuda'"):
        with detseg.use_backend("cuda"):
            pass
    assert detseg.get_backend() == "auto"


def test_triton_unavailable(monkeypatch):
    # on the CPU the Triton backend exists only under TRITON_INTERPRET=1 (read at call time)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"detseg\.nms: backend 'triton' is not available for device 'cpu'"):
        detseg.nms(BOXES, SCORES, 0.5, backend="triton")
    with pytest.raises(RuntimeError, match=r"detseg\.box_iou_matrix: backend 'triton' is not available"):
        detseg.box_iou(BOXES, BOXES, backend="triton")
    assert "triton" not in detseg.available_backends("cpu")


# ---------------------------------------------------------------- internal ops, per backend

I64 = torch.zeros(5, dtype=torch.int64)
INTERNAL_CASES = [
    ("box_iou_matrix", (BOXES, BOXES.double(), "iou", 0.0), TypeError, r"detseg\.box_iou_matrix: boxes2 must have the dtype of boxes1 \(.*[Ff]loat.*\), got .*[Dd]ouble|detseg\.box_iou_matrix: boxes2 must have the dtype of boxes1"),
    ("box_iou_matrix", (BOXES.long(), BOXES.long(), "iou", 0.0), TypeError, r"detseg\.box_iou_matrix: boxes1 must be a floating-point tensor"),
    ("box_iou_matrix", (BOXES, BOXES, "diou2", 0.0), ValueError, r"detseg\.box_iou_matrix: kind must be one of 'iou', 'giou', 'diou', 'ciou', got 'diou2'"),
    ("box_iou_matrix", (BOXES[None, None], BOXES[None, None], "iou", 0.0), ValueError, r"detseg\.box_iou_matrix: boxes1 must be a Tensor\[N, 4\] or Tensor\[B, N, 4\]"),
    ("box_iou_matrix", (BOXES[None], BOXES, "iou", 0.0), ValueError, r"detseg\.box_iou_matrix: boxes2 must be a Tensor\[B, M, 4\] matching boxes1"),
    ("box_iou_matrix", (BOXES[None].expand(2, 5, 4), BOXES[None].expand(3, 5, 4), "giou", 0.0), ValueError, r"detseg\.box_iou_matrix: boxes2 must be a Tensor\[B, M, 4\]"),
    ("box_iou_loss", (BOXES, BOXES[:4], "giou", 1e-7), ValueError, r"detseg\.box_iou_loss: boxes2 must be a Tensor\[N, 4\] with N = 5 as boxes1, got shape \[4, 4\]"),
    ("box_iou_loss", (BOXES.half(), BOXES, "giou", 1e-7), TypeError, r"detseg\.box_iou_loss: boxes2 must have the dtype of boxes1"),
    ("box_iou_loss", (BOXES, BOXES, "iouu", 1e-7), ValueError, r"detseg\.box_iou_loss: kind must be one of"),
    ("box_iou_loss", (BOXES.int(), BOXES.int(), "ciou", 1e-7), TypeError, r"detseg\.box_iou_loss: boxes1 must be a floating-point tensor"),
    ("nms", (BOXES, SCORES.long(), 0.5), TypeError, r"detseg\.nms: scores must be a floating-point tensor \(float64, float32, float16 or bfloat16\), got"),
    ("nms", (BOXES.int(), SCORES, 0.5), TypeError, r"detseg\.nms: boxes must be a floating-point tensor"),
    ("nms", (BOXES, SCORES, math.nan), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got nan"),
    ("nms", (BOXES, SCORES, -0.1), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got -0\.1"),
    ("nms", (BOXES, SCORES, 1.5), ValueError, r"detseg\.nms: iou_threshold must be a number in \[0, 1\], got 1\.5"),
    ("nms", (BOXES[:, :3], SCORES, 0.5), ValueError, r"detseg\.nms: boxes must be a Tensor\[N, 4\], got shape \[5, 3\]"),
    ("nms", (BOXES, SCORES[1:], 0.5), ValueError, r"detseg\.nms: scores must be a Tensor\[N\] with N = 5 as boxes, got shape \[4\]"),
    ("batched_nms", (BOXES, SCORES, I64.float(), 0.5), TypeError, r"detseg\.batched_nms: idxs must be an integer tensor"),
    ("batched_nms", (BOXES, SCORES, I64[:3], 0.5), ValueError, r"detseg\.batched_nms: idxs must be a Tensor\[N\] with N = 5 as boxes, got shape \[3\]"),
    ("batched_nms", (BOXES, SCORES.int(), I64, 0.5), TypeError, r"detseg\.batched_nms: scores must be a floating-point tensor"),
    ("batched_nms", (BOXES, SCORES, I64, math.nan), ValueError, r"detseg\.batched_nms: iou_threshold must be a number in \[0, 1\], got nan"),
    ("batched_nms", (BOXES, SCORES, I64, 1.0000001), ValueError, r"detseg\.batched_nms: iou_threshold must be a number in \[0, 1\]"),
    ("box_area", (torch.rand(4, 3),), ValueError, r"detseg\.box_area: boxes must be a Tensor\[\.\.\., 4\], got shape \[4, 3\]"),
    ("box_convert", (BOXES, "xyxy", "ccwh"), ValueError, r"detseg\.box_convert: out_fmt must be one of"),
    ("clip_boxes_to_image", (torch.rand(2, 2), 5, 5), ValueError, r"detseg\.clip_boxes_to_image: boxes must be a Tensor\[\.\.\., 4\]"),
    ("remove_small_boxes", (torch.rand(2, 3, 4), 1.0), ValueError, r"detseg\.remove_small_boxes: boxes must be a Tensor\[N, 4\]"),
]


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
@pytest.mark.parametrize("case", range(len(INTERNAL_CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(INTERNAL_CASES)])
def test_internal_op_errors(backend, case):
    op, args, exc, match = INTERNAL_CASES[case]
    with pytest.raises(exc, match=match):
        B.internal(op, backend)(*args)


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_threshold_edges_are_valid(backend):
    # 0, 1 and -0.0 are inside [0, 1]
    for thr in (0.0, 1.0, -0.0):
        keep = B.internal("nms", backend)(BOXES, SCORES, thr)
        assert keep.dtype == torch.int64


@pytest.mark.cuda
@pytest.mark.parametrize("backend", B.CUDA_BACKENDS)
def test_device_mismatch(backend):
    cuda = BOXES.cuda()
    with pytest.raises(ValueError, match=r"detseg\.nms: scores must be on the same device as boxes"):
        B.internal("nms", backend)(cuda, SCORES, 0.5)
    with pytest.raises(ValueError, match=r"detseg\.box_iou_matrix: boxes2 must be on the same device as boxes"):
        B.internal("box_iou_matrix", backend)(cuda, BOXES, "iou", 0.0)
    with pytest.raises(ValueError, match=r"detseg\.batched_nms: idxs must be on the same device as boxes"):
        B.internal("batched_nms", backend)(cuda, SCORES.cuda(), I64, 0.5)
    with pytest.raises(ValueError, match=r"detseg\.box_iou: boxes2 must be on the same device as boxes"):
        detseg.box_iou(cuda, BOXES, backend=backend)
