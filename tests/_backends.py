"""Which (backend, device) targets the suite runs on, decided once at collection time.

Imported by conftest.py and the test modules; it sets TRITON_INTERPRET before detseg (and so
detseg.triton) is first imported, because the Triton interpreter is chosen at kernel
definition time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import detseg  # noqa: E402
from detseg import _backend  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
TRITON_ON_CPU = HAS_TRITON and os.environ.get("TRITON_INTERPRET") == "1"

# "cpp" and "reference" always: a missing compiled library must fail the cpp tests, not skip them.
CPU_BACKENDS = ["cpp", "reference"] + (["triton"] if TRITON_ON_CPU else [])
CUDA_BACKENDS = ["cpp", "reference"] + (["triton"] if HAS_TRITON else [])

# The Triton interpreter costs per program instance and per op: keep its problems small.
SIZES = {"cpp": [0, 1, 7, 33, 257, 600], "reference": [0, 1, 7, 33, 257], "triton": [0, 1, 7, 33, 130]}
# NMS inputs, where the cost is quadratic in Python for the reference oracle as well.
# Interpreted Triton NMS costs ~1 s per call whatever the size (n = 200: ~5 s).
NMS_SIZES = {"cpp": [0, 1, 7, 33, 257, 1500], "reference": [0, 1, 7, 33, 257], "triton": [0, 1, 33, 64]}


def interpreted(backend: str, device: str) -> bool:
    """Triton under TRITON_INTERPRET on the CPU: every call is costly, so tests thin it out."""
    return backend == "triton" and device == "cpu"


def targets(backends: list[str] | None = None) -> list:
    """pytest params of (backend, device); CUDA ones carry the `cuda` mark (auto-skipped)."""
    out = []
    for b in CPU_BACKENDS:
        if backends is None or b in backends:
            out.append(pytest.param((b, "cpu"), id=f"{b}-cpu"))
    # CUDA targets exist only with a GPU (a skipped copy of every CPU test would double the
    # report); tests that need a GPU by nature carry @pytest.mark.cuda themselves.
    for b in CUDA_BACKENDS if HAS_CUDA else []:
        if backends is None or b in backends:
            out.append(pytest.param((b, "cuda"), id=f"{b}-cuda", marks=pytest.mark.cuda))
    return out


def target_sizes(sizes: dict[str, list[int]] = SIZES, backends: list[str] | None = None) -> list:
    """pytest params of ((backend, device), n): the size axis depends on the backend's cost."""
    out = []
    for p in targets(backends):
        backend, device = p.values[0]
        for n in sizes[backend]:
            out.append(pytest.param((backend, device), n, id=f"{backend}-{device}-n{n}", marks=p.marks))
    return out


def require(backend: str) -> None:
    """The cpp backend is part of the build: its absence is a failure, never a skip."""
    if backend == "cpp" and detseg._C is None:
        pytest.fail(f"detseg._C is missing (run `make dev`): {detseg._LIB_ERROR}")


def at_threads(n: int, fn):
    """fn() with torch's intra-op thread count set to n, restored afterwards (thread-count
    determinism tests)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def opcheck(op: str, args) -> None:
    """torch.library.opcheck of torch.ops.detseg.<op> (the schema lives in the compiled library)."""
    require("cpp")
    torch.library.opcheck(getattr(torch.ops.detseg, op).default, args)


@contextlib.contextmanager
def fresh_dynamo():
    """torch.compile tests (use as a decorator): compile from an empty dynamo cache and leave it
    empty, so recompile limits and cached graphs do not leak between tests."""
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.reset()


def internal(op: str, backend: str):
    """The internal op `op` (csrc/ops.cpp names) of one backend, bypassing the public API."""
    require(backend)
    if backend == "cpp":
        return getattr(torch.ops.detseg, op)
    if backend == "triton":
        mod = _backend._triton_module()
        assert mod is not None, "triton backend listed but detseg.triton failed to import"
        return getattr(mod, op)
    return getattr(detseg.reference, op)


def matrix(dtypes, layouts, sizes: dict[str, list[int]] = SIZES, backends: list[str] | None = None) -> list:
    """pytest params ((backend, device), n, dtype, layout) covering, per backend, every
    (size, dtype) pair in the contiguous layout, every (dtype, layout) pair at a prime size and
    every (size, layout) pair in float32: each factor meets each other factor, without the cost
    of the full triple product on a 2-core machine. The Triton interpreter (slow per call) gets
    two layouts. Empty inputs are contiguous only."""
    out = []
    for p in targets(backends):
        backend, device = p.values[0]
        lays = [lay for lay in layouts if not (backend == "triton" and device == "cpu")
                or lay in ("contiguous", "colslice")]
        mid = 33 if 33 in sizes[backend] else sizes[backend][len(sizes[backend]) // 2]
        combos = [(n, dt, "contiguous") for n in sizes[backend] for dt in dtypes]
        combos += [(mid, dt, lay) for dt in dtypes for lay in lays if lay != "contiguous"]
        f32 = torch.float32 if torch.float32 in dtypes else dtypes[0]
        combos += [(n, f32, lay) for n in sizes[backend] for lay in lays if lay != "contiguous" and n not in (0, mid)]
        for n, dt, lay in combos:
            name = str(dt).replace("torch.", "")
            out.append(pytest.param((backend, device), n, dt, lay,
                                    id=f"{backend}-{device}-n{n}-{name}-{lay}", marks=p.marks))
    return out


def subprocess_env(**extra) -> dict:
    """Environment for a child Python that must import the same detseg as this process (the
    source tree with a dev build, or the installed wheel)."""
    import os
    from pathlib import Path

    import detseg

    pkg_parent = str(Path(detseg.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def run_at_isa(isa: str, code: str, *args: str, timeout: float = 120) -> str:
    """Runs `python -c code *args` in a child with ATEN_CPU_CAPABILITY=isa (the capability is
    read once per process); asserts it succeeded and returns its stdout."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code, *args], env=subprocess_env(ATEN_CPU_CAPABILITY=isa),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def isas_here() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run, lowest first."""
    cap = torch.backends.cpu.get_cpu_capability()
    return ["default"] + (["avx2"] if cap in ("AVX2", "AVX512") else []) + (["avx512"] if cap == "AVX512" else [])


def outputs_at_isas(code: str, tmp_path, name: str, isas=("avx2", "avx512")) -> list:
    """What `code` torch.saves to sys.argv[1] when run under each ISA in `isas`, in that order."""
    outs = []
    for isa in isas:
        path = str(tmp_path / f"{name}_{isa}.pt")
        run_at_isa(isa, code, path)
        outs.append(torch.load(path))
    return outs
