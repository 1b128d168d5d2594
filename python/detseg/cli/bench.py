"""`detseg bench`: the canonical workloads of every implemented op, on detseg's backends and on
every installed peer library, side by side.

Each (thread count, workload) is measured in one go: every provider is prepared (outside the
timing), warmed up and checked against detseg.reference, then timed in interleaved passes so
that a change of load on a shared machine hits all providers alike. Cells show the median
time and its ratio to the fastest peer (a non-detseg provider) of the same row.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from typing import Any

HELP = "time detseg against peer libraries on canonical seeded workloads"
HEADLINE = "detseg-cpp"  # the provider of the last column: its speed-up over the best peer


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smaller matrices and fewer rounds (< 30 s); the default run takes a few minutes")
    p.add_argument("--threads", default=None, metavar="N[,M...]",
                   help="torch/OpenVINO/onnxruntime/OpenCV thread counts to run, e.g. 1,2 "
                        "(default: torch's current count)")
    p.add_argument("--filter", default=None, metavar="SUBSTR[,SUBSTR...]",
                   help="only workloads whose name contains one of these (e.g. nms, box_iou/5000); "
                        "a leading ^ anchors at the start (^box_iou excludes generalized_box_iou)")
    p.add_argument("--providers", default=None, metavar="SUBSTR[,SUBSTR...]",
                   help="only providers whose name contains one of these (e.g. detseg,openvino)")
    p.add_argument("--json", default=None, metavar="PATH", help="write every raw number to PATH")
    p.add_argument("--plot", default=None, metavar="PATH.png", help="write a bar chart (matplotlib) to PATH")
    p.add_argument("--list", action="store_true", help="list workloads and providers, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ------------------------------------------------------------------ helpers

def _split(arg: str | None) -> list[str]:
    return [s.strip() for s in arg.split(",") if s.strip()] if arg else []


def parse_threads(arg: str | None, default: int) -> list[int]:
    if not arg:
        return [default]
    out = []
    for s in _split(arg):
        if not s.isdigit() or int(s) < 1:
            raise SystemExit(f"detseg bench: --threads must be positive integers separated by commas, got {arg!r}")
        if int(s) not in out:
            out.append(int(s))
    return out


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_ratio(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def short_reason(exc: BaseException) -> str:
    """First sentence of an exception, capped: torch's NotImplementedError runs to a page."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = msg.split(". ")[0]
    if len(msg) > 110:
        msg = msg[:107] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def machine_info() -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY",
                                           "THP_MEM_ALLOC_ENABLE", "TRITON_INTERPRET") if k in os.environ},
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            info["transparent_hugepage"] = f.read().strip()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def detseg_info() -> dict[str, Any]:
    try:
        import detseg

        return {"version": detseg.__version__, "build_info": detseg.build_info()}
    except Exception as exc:  # the bench still runs the peers
        return {"version": None, "error": short_reason(exc)}


# ------------------------------------------------------------------ the run

def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures the selected workloads x providers x thread counts; returns the JSON report."""
    import torch

    from . import providers as P
    from . import timing
    from . import workloads as W

    mode = "quick" if args.quick else "full"
    budget = timing.QUICK if args.quick else timing.FULL
    passes = 1 if args.quick else 3
    threads_list = parse_threads(args.threads, torch.get_num_threads())
    workloads = W.select(mode, _split(args.filter))
    pfilter = _split(args.providers)
    providers = [p for p in P.PROVIDERS.values() if not pfilter or any(f in p.name for f in pfilter)]
    status = {p.name: P.probe(p) for p in providers}
    if not workloads:
        raise SystemExit(f"detseg bench: no workload matches --filter {args.filter!r} (see --list)")

    started = time.time()
    cpu_started = time.process_time()
    report: dict[str, Any] = {
        "schema": 1,
        "command": ["detseg", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode, "threads": threads_list, "budget": vars(budget) | {"passes": passes},
        "machine": machine_info(), "detseg": detseg_info(),
        "loadavg_start": os.getloadavg(),
        "providers": {p.name: {"group": p.group, "available": status[p.name][0],
                               ("version" if status[p.name][0] else "reason"): status[p.name][1],
                               "timed_region": p.note, "ops": sorted(p.impls)} for p in providers},
        "workloads": {w.name: {"op": w.op, "params": w.params, "seed": w.seed, "description": w.description}
                      for w in workloads},
        "results": [],
    }

    runnable = {w.name: [p for p in providers if w.op in p.impls and status[p.name][0]] for w in workloads}
    total = sum(len(v) for v in runnable.values()) * len(threads_list) * passes
    bar = _progress(total, args.no_progress)
    oracles: dict[str, Any] = {}
    default_threads = torch.get_num_threads()
    try:
        # Thread counts innermost: a workload's 1- and 2-thread figures are taken close in time.
        for w in workloads:
            inputs = W.inputs_of(w)
            for threads in threads_list:
                bar.set_description(f"{w.name} @{threads}t")
                torch.set_num_threads(threads)
                report["results"].extend(_measure_workload(
                    w, inputs, oracles, runnable[w.name], P.Context(threads=threads), budget, passes, bar))
                gc.collect()
    finally:
        bar.close()
        torch.set_num_threads(default_threads)
    report["loadavg_end"] = os.getloadavg()
    report["wall_s"] = time.time() - started
    report["cpu_s"] = time.process_time() - cpu_started
    return report


def _progress(total: int, disabled: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="case", disable=disabled or None, leave=False, file=sys.stderr,
                    dynamic_ncols=True)
    except ImportError:  # progress is a nicety
        class _Null:
            def update(self, n=1): pass
            def set_description(self, s): pass
            def close(self): pass
        return _Null()


def _oracle(w, inputs, oracles: dict) -> Any:
    """detseg.reference's canonical result, computed at most once per workload."""
    from . import providers as P

    if w.name not in oracles:
        try:
            oracles[w.name] = P.oracle(w.op, inputs)
        except Exception:  # the reference itself is reported as n/a in its own row
            oracles[w.name] = None
    return oracles[w.name]


def _measure_workload(w, inputs, oracles, provs, ctx, budget, passes, bar) -> list[dict]:
    """One (workload, thread count): prepare, warm up and check every provider, then time them in
    `passes` interleaved passes. Returns one result row per provider."""
    from . import providers as P
    from . import timing

    rows: dict[str, dict[str, Any]] = {}
    live: dict[str, Any] = {}
    first_call: dict[str, float] = {}
    # The reference goes first so that its warm-up output doubles as the oracle (it is slow).
    for p in sorted(provs, key=lambda p: p.name != "detseg-reference"):
        row = rows[p.name] = {"workload": w.name, "op": w.op, "threads": ctx.threads, "provider": p.name,
                              "group": p.group, "status": "ok"}
        try:
            prep = p.impls[w.op](inputs, ctx, w.op)
            out, first_call[p.name] = timing.warmup(prep.run, budget)
            if prep.result is not None:
                res = prep.result(out)
                if p.name == "detseg-reference" and w.name not in oracles:
                    oracles[w.name] = res
                row["agrees"], row["check"] = P.agrees(res, _oracle(w, inputs, oracles), w.op)
            del out
            live[p.name] = prep
        except Exception as exc:
            row.update(status="n/a", reason=short_reason(exc))
            bar.update(passes)
    times: dict[str, list[float]] = {name: [] for name in live}
    for i in range(passes):
        for name in list(live):
            slow = timing.is_slow(first_call[name], budget)
            try:
                # Interleaving guards close contests against drifts of load; calls of seconds are far
                # from any contest and are timed in one go, under the whole budget and its cap.
                if not slow:
                    times[name] += timing.measure(live[name].run, budget.split(passes, i), first_call[name])
                elif i == 0:
                    times[name] += timing.measure(live[name].run, budget, first_call[name])
            except Exception as exc:
                rows[name].update(status="n/a", reason=short_reason(exc))
                del live[name]
            bar.update(1)
    for name, ts in times.items():
        if name in live and ts:
            rows[name].update(timing.summary(ts), times_s=ts)
    live.clear()
    return [rows[p.name] for p in provs]


# ------------------------------------------------------------------ output

def _tabulate(rows: list[list], headers: list[str]) -> str:
    try:
        from tabulate import tabulate

        return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    except ImportError:  # tabulate is in the bench extra; plain columns otherwise
        cols = [headers, *[[str(c) for c in r] for r in rows]]
        width = [max(len(r[i]) for r in cols) for i in range(len(headers))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in cols]
        lines.insert(1, "  ".join("-" * w for w in width))
        return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    """The side-by-side table plus footnotes, as printed."""
    results = report["results"]
    providers = report["providers"]
    used = [n for n in providers if any(r["provider"] == n for r in results)]
    notes: dict[str, int] = {}
    mismatch: list[str] = []
    noisy = few = False

    def mark(reason: str) -> str:
        notes.setdefault(reason, len(notes) + 1)
        return f"n/a[{notes[reason]}]"

    rows = []
    for wname in report["workloads"]:
        for threads in report["threads"]:
            rs = {r["provider"]: r for r in results if r["workload"] == wname and r["threads"] == threads}
            if not rs:
                continue
            peers = [r for r in rs.values() if r["group"] == "peer" and r["status"] == "ok"]
            if not peers:  # an op no peer library has (e.g. a backward): compare with detseg's reference
                peers = [r for n, r in rs.items() if n == "detseg-reference" and r["status"] == "ok"]
            best = min(peers, key=lambda r: r["median"]) if peers else None
            row = [wname, threads]
            for name in used:
                r = rs.get(name)
                if r is None:
                    row.append("")
                elif r["status"] != "ok":
                    row.append(mark(r["reason"]))
                else:
                    cell = fmt_time(r["median"])
                    if best is not None:
                        cell += f" ({fmt_ratio(r['median'] / best['median'])})"
                    if r["rounds"] < 3:
                        cell += " °"
                        few = True
                    if r["rounds"] >= 4 and (r["q3"] - r["q1"]) > 0.25 * r["median"]:
                        cell += " ~"
                        noisy = True
                    if r.get("agrees") is False:
                        cell += " !"
                        mismatch.append(f"{name} on {wname} @{threads}t: {r['check']}")
                    row.append(cell)
            row.append(best["provider"] if best else "")
            cpp = rs.get(HEADLINE)
            if best is not None and cpp is not None and cpp["status"] == "ok":
                x = best["median"] / cpp["median"]
                row.append(f"{fmt_ratio(x)} faster" if x >= 1 else f"{fmt_ratio(1 / x)} slower")
            else:
                row.append("")
            rows.append(row)
    out = [_tabulate(rows, ["workload", "thr", *used, "best peer", f"{HEADLINE} vs best peer"])]
    out.append("")
    b = report["budget"]
    out.append("Cells: median time (ratio to the best peer of the row: < 1 is faster than every peer; rows no "
               "peer library implements compare with detseg-reference). "
               f"{report['mode']} mode: after warm-up, >= {b['min_rounds']} rounds and >= {b['seconds']} s "
               f"in {b['passes']} interleaved pass(es); calls over {b['slow_call']} s get {b['slow_rounds']} "
               f"rounds in one go, fewer once {b['cap']} s are spent.")
    if few:
        out.append("° fewer than 3 rounds (a slow call, timed under the cap): a rough figure.")
    out.append("Inputs are generated once per workload from a fixed seed and are identical for every provider; "
               "outputs are freed between calls, so each call pays for its fresh output memory.")
    if noisy:
        out.append("~ noisy: the interquartile range exceeds 25% of the median (a busy machine); compare ratios, "
                   "or rerun.")
    for reason, i in notes.items():
        out.append(f"[{i}] {reason}")
    if mismatch:
        out.append("! result differs from detseg.reference:")
        out.extend(f"    {m}" for m in mismatch)
    out.extend(_floor_lines(report))
    busy = report["loadavg_start"][0]
    cpus = report["machine"]["cpus_usable"] or 1
    if busy + max(report["threads"]) > cpus + 0.5:
        out.append(f"Machine busy: load average {busy:.1f} before the run on {cpus} usable CPUs, so "
                   f"{max(report['threads'])} threads oversubscribe it; multi-threaded timings then include "
                   "waits for descheduled threads (multiples of the scheduler tick), which penalise the "
                   "multi-threaded providers: prefer --threads 1, or rerun on an idle machine.")
    out.append("Timed region per provider (setup, model build/compile, session creation and input "
               "conversion are outside it):")
    for name in used:
        out.append(f"  {name}: {providers[name]['timed_region']}")
    if any(name in used for name in ("openvino", "onnxruntime")):
        out.append("  openvino/onnxruntime batched_nms: scores [1, 80, N] with each box's score in its own class row "
                   "and -1 elsewhere, score_threshold 0: every box is a candidate in exactly one class and "
                   "NonMaxSuppression runs per class, which is class-aware NMS (the dense layout is a "
                   "detector head's native output).")
    skipped = {n: v["reason"] for n, v in providers.items() if not v["available"]}
    if skipped:
        out.append("Skipped providers:")
        out.extend(f"  {n}: {why}" for n, why in skipped.items())
    m = report["machine"]
    d = report["detseg"]
    bi = {k: v for k, v in (d.get("build_info") or {}).items()
          if k not in ("backends", "version") and "\n" not in str(v) and len(str(v)) < 60}
    out.append(f"Machine: {m.get('cpu', '?')}, {m['cpus_usable']} usable CPUs, ATen {m['aten_cpu_capability']}; "
               f"torch {m['torch']}; detseg {d.get('version')} "
               f"({', '.join(f'{k}={v}' for k, v in bi.items()) or d.get('error', '')}); "
               f"load average {report['loadavg_start'][0]:.1f} -> {report['loadavg_end'][0]:.1f}; "
               f"wall {report['wall_s']:.0f} s (CPU {report.get('cpu_s', 0):.0f} s).")
    return "\n".join(out)


def _floor_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for threads in report["threads"]:
        floor = next((r for r in report["results"] if r["op"] == "fill" and r["threads"] == threads
                      and r["status"] == "ok"), None)
        iou = {r["provider"]: r for r in report["results"] if r["workload"] == "box_iou/5000x5000"
               and r["threads"] == threads and r["status"] == "ok"}
        if floor is None or not iou:
            continue
        parts = [f"{name} {r['median'] / floor['median']:.2f}x" for name, r in iou.items()]
        out.append(f"Floor @{threads}t: a fresh 5000x5000 float32 tensor (torch.empty().fill_(1)) takes "
                   f"{fmt_time(floor['median'])}; box_iou/5000x5000 costs {', '.join(parts)} of it "
                   f"(target for detseg: <= 2x).")
    return out


def plot(report: dict[str, Any], path: str) -> None:
    """Horizontal bars, one panel per thread count: the median time of every provider on every
    workload (log scale), labelled with the time; only the providers that ran get a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["results"] if r["status"] == "ok"]
    names = [n for n in report["providers"] if any(r["provider"] == n for r in results)]
    colour = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    wl = [w for w in report["workloads"] if any(r["workload"] == w for r in results)]
    ths = report["threads"]
    per_panel = max(sum(len({r["provider"] for r in results if r["workload"] == w and r["threads"] == t})
                        for w in wl) for t in ths)
    fig, axes = plt.subplots(1, len(ths), figsize=(8 * len(ths), 0.22 * per_panel + 0.35 * len(wl) + 1.5),
                             squeeze=False)
    for ax, threads in zip(axes[0], ths):
        y, ticks, labels = 0.0, [], []
        for w in wl:
            rs = [r for n in names for r in results
                  if r["workload"] == w and r["provider"] == n and r["threads"] == threads]
            if not rs:
                continue
            ys = [y + i for i in range(len(rs))]
            ax.barh(ys, [r["median"] * 1e3 for r in rs], height=0.8, color=[colour[r["provider"]] for r in rs])
            for yy, r in zip(ys, rs):
                ax.text(r["median"] * 1e3 * 1.05, yy, fmt_time(r["median"]), va="center", fontsize=6)
            ticks.append(y + (len(rs) - 1) / 2)
            labels.append(w)
            y += len(rs) + 1.0
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        medians = [r["median"] * 1e3 for r in results if r["threads"] == threads]
        ax.set_xlim(min(medians) / 2, max(medians) * 4)
        ax.set_xlabel("median time per call (ms, log scale)")
        ax.set_title(f"{threads} thread{'s' if threads > 1 else ''}", fontsize=9)
        ax.grid(axis="x", which="major", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[n]) for n in names]
    height = fig.get_figheight()
    fig.suptitle(f"detseg bench ({report['mode']}): {report['machine'].get('cpu', '')}, "
                 f"{report['date_utc']}", fontsize=9, y=1 - 0.15 / height)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height),
               ncol=min(len(names), 5), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.0 / height))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def list_all() -> str:
    from . import providers as P
    from . import workloads as W

    wrows = [[w.name, ",".join(w.modes), w.description] for w in W.REGISTRY.values()]
    prows = []
    for p in P.PROVIDERS.values():
        ok, why = P.probe(p)
        prows.append([p.name, p.group, why if ok else "-", "" if ok else why, ", ".join(sorted(p.impls))])
    return (_tabulate(wrows, ["workload", "modes", "description"]) + "\n\n"
            + _tabulate(prows, ["provider", "group", "version", "unavailable because", "ops"]))


def main(args: argparse.Namespace) -> int:
    if args.list:
        print(list_all())
        return 0
    report = run(args)
    print(table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0
