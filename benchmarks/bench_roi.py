"""pytest-benchmark over the RoI family's canonical workloads x providers (roi_align box and
mask heads, roi_pool). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_roi.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

import warnings

import pytest

from detseg.cli.bench import short_reason
from workloads import Context, agrees, cases, inputs_of, oracle, probe

OPS = ("roi_align", "roi_pool")


def pytest_generate_tests(metafunc):
    if {"workload", "provider"} <= set(metafunc.fixturenames):
        params = cases(OPS, metafunc.config.getoption("--bench-mode"))
        metafunc.parametrize(("workload", "provider"), params)


_oracles: dict[str, object] = {}


def _check(workload, prepared, out) -> str:
    """Agreement with detseg.reference, recorded (not asserted: a peer may legitimately differ)."""
    if prepared.result is None:
        return "n/a"
    if workload.name not in _oracles:
        _oracles[workload.name] = oracle(workload.op, inputs_of(workload))
    ok, account = agrees(prepared.result(out), _oracles[workload.name], workload.op)
    if ok is False:
        warnings.warn(f"{workload.name}: {account}", stacklevel=1)
    return account


def test_bench(benchmark, workload, provider, bench_threads):
    available, why = probe(provider)
    if not available:
        pytest.skip(f"{provider.name}: {why}")
    try:
        prepared = provider.impls[workload.op](inputs_of(workload), Context(threads=bench_threads), workload.op)
        out = prepared.run()  # warm-up, and the output for the agreement check
    except Exception as exc:  # e.g. a backend without a kernel yet: n/a, as in `detseg bench`
        pytest.skip(f"{provider.name} n/a: {short_reason(exc)}")
    benchmark.group = workload.name
    benchmark.extra_info.update(provider=provider.name, group=provider.group, threads=bench_threads,
                                workload=workload.name, params=workload.params,
                                check=_check(workload, prepared, out))
    del out
    benchmark(prepared.run)
