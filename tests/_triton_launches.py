"""Records every Triton kernel launch of the test session, for tests/test_zz_triton_sm90.py.

Without a GPU the suite runs Triton in the interpreter, which executes a kernel as Python and
accepts code that compiled Triton rejects (types that do not unify across branches, non-constexpr
shapes, dtype mixes). So the session notes each distinct launch configuration (kernel, argument
types, constexpr values, compile options), and the last test compiles every one of them for sm_90,
the way a GPU would on its first call, with no GPU needed.
"""

from __future__ import annotations

import inspect
import sys

import torch

_TORCH_TO_TRITON = {
    torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
    torch.bool: "i1",
}

# (module, kernel name) -> {frozen spec, ...}
LAUNCHES: dict[tuple[str, str], set] = {}


def _constexpr_value(v):
    """A JSON-able stand-in for a constexpr argument (tl.dtype by name)."""
    import triton.language as tl

    if isinstance(v, tl.dtype):
        return ("dtype", v.name)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    raise TypeError(f"unrecorded constexpr type {type(v)}")


def _runtime_type(v) -> str:
    if isinstance(v, torch.Tensor):
        return "*" + _TORCH_TO_TRITON[v.dtype]
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -(2 ** 31) <= v < 2 ** 31 else "i64"
    if isinstance(v, float):
        return "fp32"
    raise TypeError(f"unrecorded argument type {type(v)}")


def _record(kernel, args, kwargs):
    fn = kernel.fn
    params = inspect.signature(fn).parameters
    names = list(params)
    bound = dict(zip(names, args))
    options = {}
    for k, v in kwargs.items():
        (bound if k in params else options)[k] = v
    sig, consts = [], []
    for name in names:
        if name not in bound:  # a defaulted parameter
            bound[name] = params[name].default
        v = bound[name]
        if "constexpr" in str(params[name].annotation):
            sig.append((name, "constexpr"))
            consts.append((name, _constexpr_value(v)))
        else:
            sig.append((name, _runtime_type(v)))
    spec = (tuple(sig), tuple(consts), tuple(sorted((k, _constexpr_value(v)) for k, v in options.items())))
    LAUNCHES.setdefault((fn.__module__, fn.__name__), set()).add(spec)


def install() -> None:
    """Wraps the one launch helper (detseg.triton._utils.launch) in every loaded module that
    imported it, so each launch is noted before it runs."""
    try:
        import detseg.triton  # noqa: F401  -- loads every kernel module, so all are wrapped
        from detseg.triton import _utils
    except ImportError:  # no triton: nothing launches
        return
    original = _utils.launch
    if getattr(original, "_records", False):
        return

    def launch(kernel, grid, *args, **kwargs):
        _record(kernel, args, kwargs)
        return original(kernel, grid, *args, **kwargs)

    launch._records = True
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("detseg.triton") and getattr(mod, "launch", None) is original:
            mod.launch = launch


def defined_kernels() -> set[tuple[str, str]]:
    """Every module-level Triton kernel (a jitted function whose name ends in 'kernel') that
    detseg.triton loads."""
    import detseg.triton  # noqa: F401

    out = set()
    for name, mod in list(sys.modules.items()):
        if not name.startswith("detseg.triton"):
            continue
        for attr, obj in vars(mod).items():
            fn = getattr(obj, "fn", None)
            if attr.endswith("kernel") and callable(fn) and getattr(fn, "__module__", None) == name:
                out.add((name, attr))
    return out
