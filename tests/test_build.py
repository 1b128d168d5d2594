"""Build metadata, the registered ops, and backend selection."""

from __future__ import annotations

import pytest
import torch

import _backends as B
import _data as D
import detseg

OPS = ["box_area", "box_convert", "clip_boxes_to_image", "remove_small_boxes", "box_iou_matrix",
       "_box_iou_matrix_backward", "box_iou_loss", "_box_iou_loss_backward", "nms", "batched_nms"]
PUBLIC = ["box_area", "box_convert", "clip_boxes_to_image", "remove_small_boxes", "box_iou", "generalized_box_iou",
          "distance_box_iou", "complete_box_iou", "generalized_box_iou_loss", "distance_box_iou_loss",
          "complete_box_iou_loss", "nms", "batched_nms"]


def test_compiled_library_is_present():
    assert detseg._C is not None, f"detseg._C failed to import: {detseg._LIB_ERROR}"


def test_build_info():
    info = detseg.build_info()
    assert info["compiled"] is True
    assert info["version"] == detseg.__version__
    assert info["cpu_isa"] in ("DEFAULT", "AVX2", "AVX512")
    assert tuple(info["cpu_isa_variants"]) == ("DEFAULT", "AVX2", "AVX512")
    assert info["openmp"] is True  # without -fopenmp at::parallel_for is silently serial
    assert info["cuda"] is bool(torch.cuda.is_available() and info["cuda"])
    assert info["cuda_mode"] in ("OFF", "ON", "AUTO", "CHECK")
    assert isinstance(info["torch_cxx_abi"], bool) and info["torch_cxx_abi"] == torch.compiled_with_cxx11_abi()
    assert "OpenMP" in info["parallel_backend"]
    assert info["backends"] == detseg.available_backends("cpu")
    assert info["backends"][0] == "cpp" and info["backends"][-1] == "reference"


@pytest.mark.parametrize("op", OPS)
def test_torch_ops_registered(op):
    packet = getattr(torch.ops.detseg, op)
    assert torch._C._dispatch_has_kernel_for_dispatch_key(packet.default.name(), "CPU"), f"no CPU kernel for {op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(packet.default.name(), "Meta"), f"no fake kernel for {op}"


@pytest.mark.parametrize("op,args", [("box_iou_matrix", ("iou", 0.0)), ("box_iou_loss", ("giou", 1e-7)),
                                     ("box_area", ()), ("box_convert", ("xyxy", "cxcywh")),
                                     ("clip_boxes_to_image", (5, 5))])
def test_autograd_registered(op, args):
    b = D.random_boxes(3).requires_grad_()
    inputs = (b, b.detach().flip(0)) if op.startswith("box_iou") else (b,)
    out = getattr(torch.ops.detseg, op)(*inputs, *args)
    assert out.grad_fn is not None and out.requires_grad


@pytest.mark.parametrize("name", PUBLIC)
def test_public_api(name):
    assert name in detseg.__all__ if hasattr(detseg, "__all__") else hasattr(detseg, name)
    assert getattr(detseg, name) is getattr(detseg.ops, name)


@pytest.mark.parametrize("op", ["box_area", "box_convert", "clip_boxes_to_image", "remove_small_boxes",
                                "box_iou_matrix", "box_iou_loss", "nms", "batched_nms"])
def test_triton_and_reference_expose_every_op(op):
    assert callable(getattr(detseg.reference, op))
    if "triton" in B.CPU_BACKENDS:
        assert callable(getattr(B._backend._triton_module(), op))


def _which(monkeypatch):
    """Records which backend the next dispatch resolves to."""
    seen = []
    real = B._backend.resolve

    def spy(op, backend, device):
        name = real(op, backend, device)
        seen.append(name)
        return name

    monkeypatch.setattr(B._backend, "resolve", spy)
    return seen


def test_use_backend_nesting_and_precedence(monkeypatch):
    seen = _which(monkeypatch)
    b = D.random_boxes(3).float()
    assert detseg.get_backend() == "auto"
    detseg.box_area(b)
    with detseg.use_backend("reference"):
        assert detseg.get_backend() == "reference"
        detseg.box_area(b)
        with detseg.use_backend("cpp"):
            assert detseg.get_backend() == "cpp"
            detseg.box_area(b)
            detseg.box_area(b, backend="reference")  # the keyword wins over the context
        assert detseg.get_backend() == "reference"
        detseg.box_area(b)
        detseg.box_area(b, backend="auto")  # "auto" as keyword defers to the context
    assert detseg.get_backend() == "auto"
    assert seen == ["cpp", "reference", "cpp", "reference", "reference", "reference"]


def test_use_backend_restores_after_error():
    with pytest.raises(RuntimeError, match="boom"):
        with detseg.use_backend("reference"):
            raise RuntimeError("boom")
    assert detseg.get_backend() == "auto"
    with pytest.raises(ValueError, match=r"detseg\.use_backend: backend must be one of"):
        with detseg.use_backend("reference"):
            with detseg.use_backend("gpu"):
                pass
    assert detseg.get_backend() == "auto"


def test_auto_prefers_cpp_on_cpu(monkeypatch):
    seen = _which(monkeypatch)
    detseg.nms(D.random_boxes(4).float(), D.distinct_scores(4).float(), 0.5)
    assert seen == ["cpp"]


def test_available_backends():
    cpu = detseg.available_backends("cpu")
    assert sorted(cpu) == sorted(B.CPU_BACKENDS)
