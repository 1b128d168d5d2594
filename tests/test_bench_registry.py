"""The `detseg bench` registry: every canonical workload (box and RoI families, and the
op families' suites under detseg/cli/suites/) reaches detseg's C++ provider,
and the command lists them. Timing itself is never asserted."""

from __future__ import annotations

import pytest

from detseg.cli import main as cli
from detseg.cli import providers as P
from detseg.cli import workloads as W



def test_every_workload_reaches_detseg():
    assert W.REGISTRY
    for w in W.REGISTRY.values():
        if w.name.startswith("floor/"):  # machine floors (a fill, a matrix product), not detseg ops
            continue
        # detseg-reference is left out where it takes minutes (the pure-Python COCO protocol)
        assert w.op in P.PROVIDERS["detseg-cpp"].impls, f"{w.name}: detseg-cpp has no implementation of {w.op!r}"


@pytest.mark.parametrize("name", sorted(W.REGISTRY))
def test_workload_names_are_unique_and_well_formed(name):
    w = W.REGISTRY[name]
    assert w.name == name and "/" in name and set(w.modes) <= {"quick", "full"} and w.modes


def test_bench_list(capsys):
    cli.main(["bench", "--list"])
    out = capsys.readouterr().out
    for name in W.REGISTRY:
        assert name in out
