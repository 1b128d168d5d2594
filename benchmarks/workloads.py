"""The canonical seeded workloads and providers, as pytest parameters.

The definitions live in the package (detseg.cli.workloads / detseg.cli.providers) so that
`detseg bench` runs them from an installed wheel; the bench_*.py files here measure exactly
the same cases through pytest-benchmark.
"""

from __future__ import annotations

import warnings

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


def parametrize(metafunc, ops: tuple[str, ...]) -> None:
    """pytest_generate_tests body of a bench_<family>.py: (workload, provider) over `ops`."""
    if {"workload", "provider"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("workload", "provider"), cases(ops, metafunc.config.getoption("--bench-mode")))


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


def run_case(benchmark, workload, provider, threads) -> None:
    """Times one (workload, provider) case exactly as `detseg bench` does."""
    from detseg.cli.bench import short_reason

    available, why = probe(provider)
    if not available:
        pytest.skip(f"{provider.name}: {why}")
    try:
        prepared = provider.impls[workload.op](inputs_of(workload), Context(threads=threads), workload.op)
        out = prepared.run()  # warm-up, and the output for the agreement check
    except Exception as exc:  # e.g. a backend without a kernel yet: n/a, as in `detseg bench`
        pytest.skip(f"{provider.name} n/a: {short_reason(exc)}")
    benchmark.group = workload.name
    benchmark.extra_info.update(provider=provider.name, group=provider.group, threads=threads,
                                workload=workload.name, params=workload.params,
                                check=_check(workload, prepared, out))
    del out
    benchmark(prepared.run)


def bench_module(namespace: dict, *ops: str) -> None:
    """Makes the calling bench_<family>.py a benchmark of `ops`: installs OPS,
    pytest_generate_tests and test_bench into its module namespace (pass globals())."""

    def pytest_generate_tests(metafunc):
        parametrize(metafunc, ops)

    def test_bench(benchmark, workload, provider, bench_threads):
        run_case(benchmark, workload, provider, bench_threads)

    namespace.update(OPS=ops, pytest_generate_tests=pytest_generate_tests, test_bench=test_bench)
