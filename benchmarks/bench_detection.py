"""pytest-benchmark over the detection post-processing family's canonical workloads x
providers: anchors and box decoding (detseg/cli/suites/anchors.py), multi-class NMS and
soft-NMS (registered by their own suite). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_detection.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import parametrize, run_case

OPS = ("grid_anchors", "decode_boxes", "multiclass_nms", "soft_nms")


def pytest_generate_tests(metafunc):
    parametrize(metafunc, OPS)


def test_bench(benchmark, workload, provider, bench_threads):
    run_case(benchmark, workload, provider, bench_threads)
