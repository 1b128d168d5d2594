"""pytest-benchmark over the box family's canonical workloads x providers (nms, batched_nms,
the IoU matrices, and the fresh-tensor floor). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_boxes.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import parametrize, run_case

OPS = ("nms", "batched_nms", "box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou", "fill")


def pytest_generate_tests(metafunc):
    parametrize(metafunc, OPS)


def test_bench(benchmark, workload, provider, bench_threads):
    run_case(benchmark, workload, provider, bench_threads)
