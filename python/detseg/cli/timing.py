"""Adaptive wall-clock timing: warm up, then repeat until a time budget and a minimum number of
rounds are both reached; report the median (robust to the other tenants of a shared machine)."""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Budget:
    seconds: float       # keep repeating until at least this much time has been spent ...
    min_rounds: int      # ... and at least this many rounds were timed
    slow_rounds: int     # ... or only this many when one call alone exceeds `slow_call` seconds
    slow_call: float
    cap: float = 60.0    # ... but stop once this much time is spent, with at least one round
    max_rounds: int = 10_000
    warmup_seconds: float = 0.05

    def split(self, parts: int, index: int) -> "Budget":
        """Pass `index` of `parts` passes over the providers (interleaved passes even out drifts
        of load); the passes' round counts add up to this budget's."""
        def share(n: int) -> int:
            return max(1, n // parts + (index < n % parts))
        return dataclasses.replace(
            self, seconds=self.seconds / parts, min_rounds=share(self.min_rounds),
            slow_rounds=share(self.slow_rounds), max_rounds=share(self.max_rounds), cap=self.cap / parts)


# Slow calls (the pure-Python / numpy / reference rows on 5000x5000 matrices take seconds on a
# busy 2-core machine) get few rounds: they are far from the contest and dominate the run time.
QUICK = Budget(seconds=0.25, min_rounds=5, slow_rounds=2, slow_call=0.1, cap=1.0)
FULL = Budget(seconds=0.6, min_rounds=10, slow_rounds=3, slow_call=0.25, cap=8.0)


def warmup(fn: Callable[[], Any], budget: Budget) -> tuple[Any, float]:
    """Calls `fn` at least once (first-call costs: lazy init, JIT, page faults of caches) and
    until `budget.warmup_seconds` have passed; returns the first output and the last call's time."""
    t0 = time.perf_counter()
    first = fn()
    last = time.perf_counter() - t0
    spent = last
    while spent < budget.warmup_seconds and last < budget.slow_call:
        t = time.perf_counter()
        fn()
        last = time.perf_counter() - t
        spent = time.perf_counter() - t0
    return first, last


def is_slow(call_time: float, budget: Budget) -> bool:
    return call_time > budget.slow_call


def measure(fn: Callable[[], Any], budget: Budget, call_time: float | None = None) -> list[float]:
    """Per-call times in seconds. The output of each call is dropped before the next one, so a
    call that allocates its result pays for fresh memory every round (as in real use)."""
    need = budget.slow_rounds if is_slow(call_time or 0.0, budget) else budget.min_rounds
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < budget.max_rounds:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            spent = time.perf_counter() - start
            if (len(times) >= need and spent >= budget.seconds) or spent >= budget.cap:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summary(times: list[float]) -> dict[str, float]:
    ts = sorted(times)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return {"median": statistics.median(ts), "min": ts[0], "q1": q[0], "q3": q[2], "rounds": len(ts)}
