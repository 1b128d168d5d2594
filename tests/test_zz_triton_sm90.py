"""Every Triton kernel configuration the suite launched compiles for sm_90, and every Triton
kernel detseg defines is launched by some test (named zz so that it runs after the other test
files; see tests/_triton_launches.py for why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _whole_suite(config, items) -> bool:
    """Whether this session runs every test file of tests/ unfiltered (no -k, -m, --deselect,
    --lf / --ff, node ids, or xdist worker share), so that a kernel no test launched means a
    coverage gap rather than a partial run."""
    opt = config.option
    if opt.keyword or opt.markexpr or getattr(opt, "deselect", None) or getattr(opt, "lf", False):
        return False
    if hasattr(config, "workerinput") or any("::" in str(a) for a in config.args):
        return False
    ran = {Path(str(item.path)).name for item in items}
    return {p.name for p in Path(__file__).parent.glob("test_*.py")} <= ran


def test_every_defined_triton_kernel_is_launched(request):
    # A Triton kernel that no test launches is neither run (interpreter) nor compiled for sm_90
    # above. Only a whole-suite session can tell; DETSEG_TRITON_COVERAGE=1 asks for the check
    # in a partial one that still reaches every kernel (e.g. `-k triton` over tests/). Checked
    # in interpreter sessions (the suite's Triton tests there pick every kernel); on a GPU,
    # launchers may pick other variants.
    if not _backends.TRITON_ON_CPU:
        pytest.skip("Triton does not run in the interpreter in this session")
    forced = os.environ.get("DETSEG_TRITON_COVERAGE") == "1"
    if not forced and not _whole_suite(request.config, request.session.items):
        pytest.skip("partial run: set DETSEG_TRITON_COVERAGE=1 to check kernel coverage anyway")
    missing = sorted(_triton_launches.defined_kernels() - set(_triton_launches.LAUNCHES))
    assert not missing, "Triton kernels no test launched: " + ", ".join(f"{m}.{k}" for m, k in missing)
