"""Every Triton kernel configuration the suite launched compiles for sm_90 (named zz so that it
runs after the other test files; see tests/_triton_launches.py for why)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import _backends
import _triton_launches

_SCRIPT = """
import importlib, json, sys
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, compile

def value(v):
    return tl.dtype(v[1]) if isinstance(v, list) and v and v[0] == "dtype" else v

failures, n = [], 0
for (module, name), specs in json.load(sys.stdin):
    fn = getattr(importlib.import_module(module), name)
    for sig, consts, options in specs:
        n += 1
        try:
            compile(ASTSource(fn=fn, signature=dict(sig), constexprs={k: value(v) for k, v in consts}),
                    target=GPUTarget("cuda", 90, 32), options={k: value(v) for k, v in options})
        except Exception as e:  # noqa: BLE001 -- every failure is reported below
            failures.append(f"{module}.{name} {dict(consts)}: {type(e).__name__}: {str(e)[-1500:]}")
print("compiled", n)
print("\\n\\n".join(failures), file=sys.stderr)
sys.exit(1 if failures else 0)
"""


def _is_block(name: str, v) -> bool:
    # Tile sizes: the interpreter runs with large ones, a GPU with small ones; the code path
    # and the typing do not depend on them, the compile time does.
    return type(v) is int and v >= 8 and v & (v - 1) == 0 and name.isupper()


def _covering(specs: set) -> list:
    """A few specs that between them cover every argument-type signature, every set of non-tile
    constexprs and every option set recorded (each with the smallest tiles seen): typing errors
    come from one of those, and compiling the full product would take minutes."""
    def key(spec):
        sig, consts, options = spec
        return (tuple((k, v) for k, v in consts if not _is_block(k, v)), sig, options)

    seen = [set(), set(), set()]
    out = []
    for spec in sorted(specs, key=lambda sp: (sum(v for k, v in sp[1] if _is_block(k, v)), repr(sp))):
        parts = key(spec)
        if any(p not in seen[i] for i, p in enumerate(parts)):
            out.append(spec)
            for i, p in enumerate(parts):
                seen[i].add(p)
    return out


def test_every_launched_triton_kernel_compiles_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    launches = _triton_launches.LAUNCHES
    if not launches:
        pytest.skip("no Triton kernel was launched in this session (run with the Triton tests)")
    work = [[list(k), _covering(v)] for k, v in sorted(launches.items())]
    payload = json.dumps(work)
    env = _backends.subprocess_env()
    env.pop("TRITON_INTERPRET", None)
    res = subprocess.run([sys.executable, "-c", _SCRIPT], input=payload, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-8000:]
    assert f"compiled {sum(len(v) for _, v in work)}" in res.stdout
    print(res.stdout.strip(), "of", sum(map(len, launches.values())), "recorded launch configurations")
