"""pytest-benchmark over the mask family's canonical workloads x providers (confusion matrix of
label maps, dense mask IoU, mask pasting). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_masks.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import parametrize, run_case

OPS = ("confusion_matrix", "mask_iou", "paste_masks_in_image")


def pytest_generate_tests(metafunc):
    parametrize(metafunc, OPS)


def test_bench(benchmark, workload, provider, bench_threads):
    run_case(benchmark, workload, provider, bench_threads)
