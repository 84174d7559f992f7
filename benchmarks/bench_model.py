"""Benchmark: wall time, peak memory and event rate of a whole-model simulation.

The point (issue 4's speed target): GPT-3 175B, prefill of 2048 tokens, batch 1, TP=8,
all 96 layers with embeddings and LM head, on ``dgx-a100``, ``graph`` runtime, fused
attention, once per architecture (standard, parallel, kraken). Targets: <= 20 s and
<= 1 GB per architecture on the project's 2-core machine.

Every run is one fresh Python subprocess (this script re-invoked with ``--child``) that
imports des, builds and memory-checks the point (:func:`des.study.prepare_point`),
simulates and summarises it (:func:`des.study.simulate_point`, tracing as ``des run``
does) and reports, as one JSON line: the point's wall time (prepare + simulate, the
figure the target is about), its parts (graph build, engine run, mapper searches,
metrics), the process's own wall time from interpreter start, its peak resident memory
(``ru_maxrss``: the honest whole-process figure, interpreter and imports included),
``RunResult.events`` (SimPy events scheduled) and the simulated TTFT.

The mapper's schedules are cached in memory (per process, so each subprocess starts
cold) and on disk under ``$DES_CACHE_DIR``. So results never depend on earlier runs
or on the user's cache, every repeat gets a fresh empty temporary ``DES_CACHE_DIR``:
the *cold* run searches every schedule; a second subprocess on the same directory is
the *warm* run (disk cache filled, memory cache empty), as a user's second ``des run``
would be. The target is checked against the cold median.

In this process, the script also times a minimal bare-SimPy model scheduling about as
many events as the des run (processes that each loop requesting one of a few shared
``simpy.Resource`` s, holding it for a timeout, releasing it and waiting another
timeout) and prints des's event rate against bare SimPy's.

Run from the repository root: ``python benchmarks/bench_model.py`` (see
benchmarks/README.md for options).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PROCESS_START = time.perf_counter()

# The repository root, so the script runs from a checkout without installing des.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCHS = ("standard", "parallel", "kraken")
TARGET_WALL_S = 20.0
TARGET_PEAK_BYTES = 1e9
#: Bare-SimPy model: processes, shared resources and their capacity.
BARE_PROCESSES = 64
BARE_RESOURCES = 8
BARE_CAPACITY = 2


# --------------------------------------------------------------------------- child


def run_child(spec_json: str, tracemalloc_on: bool, profile_top: int) -> None:
    """Run one point in this (fresh) process and print one JSON line of measurements."""
    if tracemalloc_on:
        import tracemalloc

        tracemalloc.start()
    import resource

    import des.engine
    import des.mapper
    import des.metrics
    from des.study import PointSpec, prepare_point, simulate_point

    # Wrap (in this process only) the pieces whose time we want to split out.
    timers = {"engine_s": 0.0, "mapper_search_s": 0.0, "metrics_s": 0.0, "mapper_searches": 0}

    def timed(function, slot, count=None):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timers[slot] += time.perf_counter() - start
                if count:
                    timers[count] += 1

        return wrapper

    des.mapper.search_schedule = timed(
        des.mapper.search_schedule, "mapper_search_s", "mapper_searches"
    )
    des.engine.Engine.run = timed(des.engine.Engine.run, "engine_s")
    des.metrics.summarize = timed(des.metrics.summarize, "metrics_s")

    spec = PointSpec(**json.loads(spec_json))
    imported = time.perf_counter()
    profiler = None
    if profile_top:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    prepared = prepare_point(spec)
    point = simulate_point(prepared)
    finished = time.perf_counter()
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(profile_top)
            print(f"--- cProfile, {spec.arch}, top {profile_top} by {order} ---", file=sys.stderr)
            print(text.getvalue(), file=sys.stderr)
    out = {
        "arch": spec.arch,
        "point_s": finished - imported,
        "prepare_s": prepared.prepare_s,
        "process_s": finished - _PROCESS_START,
        "import_s": imported - _PROCESS_START,
        "events": point.record["events"],
        "tasks": point.record["tasks"],
        "latency_s": point.record["latency_s"],
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **timers,
    }
    if tracemalloc_on:
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    print(json.dumps(out))


def spawn(
    spec: dict, cache_dir: str, *, tracemalloc_on: bool = False, profile_top: int = 0
) -> dict:
    """Run one point in a fresh subprocess with ``DES_CACHE_DIR=cache_dir``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    if tracemalloc_on:
        command.append("--tracemalloc")
    if profile_top:
        command += ["--profile", str(profile_top)]
    env = dict(os.environ, DES_CACHE_DIR=cache_dir)
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if profile_top:
        sys.stdout.write(done.stderr)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise SystemExit(
            f"{spec['arch']}: child failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- bare SimPy


def run_bare(iterations: int) -> tuple[int, float]:
    """Minimal SimPy loop; return (events scheduled, wall seconds)."""
    import simpy

    start = time.perf_counter()
    env = simpy.Environment()
    resources = [simpy.Resource(env, capacity=BARE_CAPACITY) for _ in range(BARE_RESOURCES)]

    def worker(index: int):
        resource = resources[index % BARE_RESOURCES]
        hold = 1e-6 * (1 + index % 7)
        for _ in range(iterations):
            with resource.request() as request:
                yield request
                yield env.timeout(hold)
            yield env.timeout(2e-7)

    for index in range(BARE_PROCESSES):
        env.process(worker(index))
    env.run()
    took = time.perf_counter() - start
    # The same count des reports: SimPy's event-id counter (see des.engine).
    return next(env._eid), took


def bench_bare(target_events: int, repeats: int) -> tuple[int, float, list[float]]:
    """Bare-SimPy rate at about ``target_events`` events: (events, median rate, rates)."""
    pilot_events, _ = run_bare(100)
    per_iteration = pilot_events / (100 * BARE_PROCESSES)
    iterations = max(1, round(target_events / (per_iteration * BARE_PROCESSES)))
    rates, events = [], 0
    for _ in range(repeats):
        events, took = run_bare(iterations)
        rates.append(events / took)
    return events, statistics.median(rates), rates


# --------------------------------------------------------------------------- parent


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _list(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeats", type=int, default=3, help="cold (and warm) runs per architecture (default 3)"
    )
    parser.add_argument(
        "--archs", default=",".join(ARCHS), help="comma-separated architectures (default all three)"
    )
    parser.add_argument("--model", default="gpt3-175b")
    parser.add_argument("--system", default="dgx-a100")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument(
        "--layers", type=int, help="only K layers, no embeddings or LM head (smoke runs)"
    )
    parser.add_argument(
        "--no-warm", action="store_true", help="skip the warm (disk cache filled) runs"
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="one extra run per architecture under tracemalloc (slower) for the Python heap peak",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="one extra cold run per architecture under cProfile; print the top N functions",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    args = parser.parse_args(argv)
    if args.child is not None:
        run_child(args.child, args.tracemalloc, args.profile)
        return

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    base = {
        "system": args.system,
        "model": args.model,
        "tp": args.tp,
        "batch": args.batch,
        "seq": args.seq,
        "phase": "prefill",
        "attention": "fused",
        "runtime": "graph",
        "layers": args.layers,
    }
    what = (
        f"{args.layers} layers, no embeddings/LM head"
        if args.layers
        else "all layers, embeddings and LM head"
    )
    say = (lambda *a, **k: None) if args.json else print
    say(
        f"{args.model} prefill seq {args.seq}, batch {args.batch}, TP={args.tp}, {what}, on {args.system}, "
        f"graph runtime, fused attention"
    )
    say(
        f"each run a fresh subprocess; cold = fresh empty DES_CACHE_DIR, warm = second process on that dir; "
        f"{args.repeats} repeat(s); cpus: {os.cpu_count()}"
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_model_") as scratch:
        for arch in archs:
            spec = dict(base, arch=arch)
            cold, warm = [], []
            for repeat in range(args.repeats):
                cache = str(Path(scratch) / f"{arch}-{repeat}")
                cold.append(spawn(spec, cache))
                if not args.no_warm:
                    warm.append(spawn(spec, cache))
            extra = {}
            if args.tracemalloc:
                extra["tracemalloc"] = spawn(
                    spec, str(Path(scratch) / f"{arch}-tm"), tracemalloc_on=True
                )
            if args.profile:
                spawn(spec, str(Path(scratch) / f"{arch}-prof"), profile_top=args.profile)
            results[arch] = {"cold": cold, "warm": warm, **extra}

    target_events = int(statistics.median(r["cold"][0]["events"] for r in results.values()))
    bare_events, bare_rate, bare_rates = bench_bare(target_events, max(1, args.repeats))

    summary = {
        "config": base,
        "repeats": args.repeats,
        "bare": {"events": bare_events, "events_per_s": bare_rate, "runs": bare_rates},
        "archs": {},
    }
    for arch, result in results.items():
        cold, warm = result["cold"], result["warm"]
        point_s = _median(cold, "point_s")
        entry = {
            "wall_s_cold": point_s,
            "wall_s_cold_runs": [r["point_s"] for r in cold],
            "wall_s_warm": _median(warm, "point_s") if warm else None,
            "process_s_cold": _median(cold, "process_s"),
            "import_s": _median(cold, "import_s"),
            "prepare_s": _median(cold, "prepare_s"),
            "engine_s": _median(cold, "engine_s"),
            "metrics_s": _median(cold, "metrics_s"),
            "mapper_search_s_cold": _median(cold, "mapper_search_s"),
            "mapper_searches_cold": cold[0]["mapper_searches"],
            "mapper_searches_warm": warm[0]["mapper_searches"] if warm else None,
            "peak_rss_bytes": max(r["maxrss_bytes"] for r in cold + warm),
            "events": cold[0]["events"],
            "tasks": cold[0]["tasks"],
            "ttft_s": cold[0]["latency_s"],
        }
        entry["events_per_s"] = entry["events"] / point_s
        entry["engine_events_per_s"] = entry["events"] / entry["engine_s"]
        entry["ratio_to_bare"] = entry["events_per_s"] / bare_rate
        if "tracemalloc" in result:
            entry["tracemalloc_peak_bytes"] = result["tracemalloc"]["tracemalloc_peak_bytes"]
        summary["archs"][arch] = entry

    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return

    print()
    header = (
        f"{'arch':<9} {'wall cold':>9} {'warm':>7} {'process':>8} {'peak RSS':>9} {'events':>10} "
        f"{'events/s':>9} {'engine ev/s':>11} {'TTFT':>9}"
    )
    print(header)
    for arch, e in summary["archs"].items():
        warm_text = f"{e['wall_s_warm']:.2f} s" if e["wall_s_warm"] is not None else "-"
        print(
            f"{arch:<9} {e['wall_s_cold']:>7.2f} s {warm_text:>7} {e['process_s_cold']:>6.2f} s "
            f"{e['peak_rss_bytes'] / 2**20:>6.0f} MB {e['events']:>10,} {e['events_per_s']:>9,.0f} "
            f"{e['engine_events_per_s']:>11,.0f} {e['ttft_s'] * 1e3:>6.1f} ms"
        )
    print()
    print(
        "where the cold wall time goes (medians; the rest of 'wall' is Trace/record work in simulate_point):"
    )
    for arch, e in summary["archs"].items():
        print(
            f"  {arch:<9} import {e['import_s']:.2f} s (before 'wall'), build+check {e['prepare_s']:.2f} s, "
            f"engine {e['engine_s']:.2f} s (of which mapper search {e['mapper_search_s_cold']:.2f} s, "
            f"{e['mapper_searches_cold']} searches; warm: {'-' if e['mapper_searches_warm'] is None else e['mapper_searches_warm']}), metrics {e['metrics_s']:.2f} s; "
            f"{e['tasks']:,} tasks; cold runs: {_list(e['wall_s_cold_runs'])} s"
        )
        if "tracemalloc_peak_bytes" in e:
            print(
                f"  {'':<9} tracemalloc peak (Python heap, separate run): {e['tracemalloc_peak_bytes'] / 2**20:.0f} MB"
            )
    print()
    print(
        f"bare SimPy ({BARE_PROCESSES} processes, {BARE_RESOURCES} shared Resources of capacity {BARE_CAPACITY}, "
        f"{bare_events:,} events), median of {len(bare_rates)}: {bare_rate:,.0f} events/s (runs: "
        + ", ".join(f"{r:,.0f}" for r in bare_rates)
        + ")"
    )
    for arch, e in summary["archs"].items():
        print(
            f"  {arch:<9} des {e['events_per_s']:,.0f} events/s (engine only {e['engine_events_per_s']:,.0f}) "
            f"/ bare {bare_rate:,.0f} = {e['ratio_to_bare']:.2f} (engine only {e['engine_events_per_s'] / bare_rate:.2f})"
        )
    print()
    for arch, e in summary["archs"].items():
        wall_ok = e["wall_s_cold"] <= TARGET_WALL_S
        mem_ok = e["peak_rss_bytes"] <= TARGET_PEAK_BYTES
        print(
            f"target {arch:<9} wall {e['wall_s_cold']:.2f} s <= {TARGET_WALL_S:g} s: {'met' if wall_ok else 'NOT met'}; "
            f"peak {e['peak_rss_bytes'] / 1e9:.2f} GB <= 1 GB: {'met' if mem_ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
