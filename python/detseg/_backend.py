"""Backend choice: keyword ``backend=`` > ``use_backend(...)`` > "auto".

"auto" -> the compiled op for the tensor's device (``torch.ops.detseg``), else Triton on CUDA,
else the reference. "cpp" -> ``torch.ops.detseg.<op>`` (the dispatcher routes to the CPU or
CUDA kernel). "triton" -> ``detseg.triton.<op>``. "reference" -> ``detseg.reference.<op>``.
The three layers expose the same internal op names with the same signatures.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import torch

BACKENDS = ("auto", "cpp", "triton", "reference")

# A plain list rather than a ContextVar: torch.compile traces reads of module globals.
_stack: list[str] = ["auto"]


def _check_name(name: str, op: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"detseg.{op}: backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run detseg ops inside the block on backend `name`."""
    _stack.append(_check_name(name, "use_backend"))
    try:
        yield
    finally:
        _stack.pop()


def get_backend() -> str:
    return _stack[-1]


_cpp_state: dict[str, bool] = {}


def _cpp_available(device: torch.device) -> bool:
    if not _cpp_state:
        from . import _C

        _cpp_state["cpu"] = _C is not None
        _cpp_state["cuda"] = _C is not None and bool(_C.build_info()["cuda"])
    return _cpp_state.get(device.type, False)


# Filled at import (detseg._C is already bound by then): dynamo cannot trace the pybind11
# build_info() call, so a first detseg call inside torch.compile(fullgraph=True) would break.
_cpp_available(torch.device("cpu"))

_triton_state: dict[str, object] = {}


def _triton_module():
    if "mod" not in _triton_state:
        try:
            _triton_state["mod"] = importlib.import_module("detseg.triton")
        except ImportError as exc:  # triton not installed
            _triton_state["mod"] = None
            _triton_state["err"] = exc
    return _triton_state["mod"]


def _triton_available(device: torch.device) -> bool:
    if device.type == "cuda":
        return _triton_module() is not None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return _triton_module() is not None
    return False


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    device = torch.device(device)
    out = []
    if _cpp_available(device):
        out.append("cpp")
    if _triton_available(device):
        out.append("triton")
    out.append("reference")
    return out


_kernel_state: dict[tuple[str, str], bool] = {}


def _cpp_has_kernel(op: str, device: torch.device) -> bool:
    """Whether the compiled op has a kernel for a CUDA device (an op family may have CPU kernels
    before its CUDA ones). CPU is assumed: every schema ships with its CPU kernel."""
    if device.type == "cpu":
        return True
    key = (op, device.type)
    if key not in _kernel_state:
        _kernel_state[key] = torch._C._dispatch_has_kernel_for_dispatch_key(f"detseg::{op}", device.type.upper())
    return _kernel_state[key]


def resolve(op: str, backend: str | None, device: torch.device) -> str:
    name = _check_name(backend if backend not in (None, "auto") else _stack[-1], op)
    if name == "auto":
        if _cpp_available(device) and _cpp_has_kernel(op, device):
            return "cpp"
        if device.type == "cuda" and _triton_available(device):
            return "triton"
        return "reference"
    if name == "cpp" and not _cpp_available(device):
        raise RuntimeError(
            f"detseg.{op}: backend 'cpp' is not available for device {device.type!r} "
            f"(available: {', '.join(available_backends(device))})")
    if name == "triton" and not _triton_available(device):
        why = "set TRITON_INTERPRET=1 before importing detseg to run Triton on the CPU" \
            if device.type == "cpu" else "triton is not installed"
        raise RuntimeError(f"detseg.{op}: backend 'triton' is not available for device {device.type!r}: {why}")
    return name


def dispatch(op: str, backend: str | None, device: torch.device, *args):
    """Runs internal op `op` (a name shared by torch.ops.detseg, detseg.triton, detseg.reference)."""
    name = resolve(op, backend, device)
    if name == "cpp":
        return getattr(torch.ops.detseg, op)(*args)
    if name == "triton":
        fn = getattr(_triton_module(), op, None)
        if fn is None:
            # An op family whose Triton kernels are not written yet: "auto" falls back to the
            # reference, an explicit request says so instead of an AttributeError.
            if (backend in (None, "auto")) and _stack[-1] == "auto":
                from . import reference

                return getattr(reference, op)(*args)
            raise NotImplementedError(f"detseg.{op}: not implemented for the triton backend yet "
                                      f"(use backend='cpp' or 'reference')")
        return fn(*args)
    from . import reference

    return getattr(reference, op)(*args)
