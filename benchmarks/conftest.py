"""pytest-benchmark setup for benchmarks/bench_*.py.

    pytest benchmarks/bench_boxes.py --benchmark-enable [--bench-mode full] [--bench-threads 1]

(pyproject's addopts disable benchmarking, so without --benchmark-enable each case runs once:
a smoke test of every provider.) `detseg bench` is the side-by-side table over the same cases.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    group = parser.getgroup("detseg-bench")
    group.addoption("--bench-mode", choices=("quick", "full"), default="quick",
                    help="which canonical workloads to run (the sets of `detseg bench [--quick]`)")
    group.addoption("--bench-threads", type=int, default=None,
                    help="torch / OpenVINO / onnxruntime / OpenCV threads (default: torch's current count)")


def pytest_collect_file(file_path, parent):
    # bench_*.py do not match pytest's default python_files; collect them when a directory is given.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "detseg_bench: a canonical detseg benchmark case")


@pytest.fixture(scope="session")
def bench_threads(request) -> int:
    n = request.config.getoption("--bench-threads") or torch.get_num_threads()
    torch.set_num_threads(n)
    return n

