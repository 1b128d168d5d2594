"""The canonical seeded workloads and providers, as pytest parameters.

The definitions live in the package (detseg.cli.workloads / detseg.cli.providers) so that
`detseg bench` runs them from an installed wheel; the bench_*.py files here measure exactly
the same cases through pytest-benchmark.
"""

from __future__ import annotations

import pytest

from detseg.cli.providers import PROVIDERS, Context, Prepared, Unavailable, agrees, oracle, probe  # noqa: F401
from detseg.cli.workloads import REGISTRY, Workload, inputs_of, register, select  # noqa: F401


def cases(ops: tuple[str, ...], mode: str) -> list:
    """pytest.param(workload, provider) for every workload of `ops` in `mode` x every provider
    implementing its op; ids read "<workload>-<provider>"."""
    out = []
    for w in select(mode):
        if w.op not in ops:
            continue
        for p in PROVIDERS.values():
            if w.op in p.impls:
                out.append(pytest.param(w, p, id=f"{w.name}-{p.name}"))
    return out
