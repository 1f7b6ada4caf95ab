"""Phase `curves`: costs that must stay flat as the work grows, each measured at three sizes (`--only curves`).

    .venv/bin/python bench/run.py --only curves                      1k / 100k / 1M runs, 1 / 2 / 3 engines (~2 min)
    .venv/bin/python bench/run.py --only curves --curves-runs 1000,10000,30000 --curves-engines 1,2

  retained runs  finished bench_one runs written straight into Redis as the engine leaves them (the hash with
                 its TTL, the run indexes: bench/retained_runs.py replays what RunStore.write_change queues). The
                 sizes are cumulative (1k, then 99k more, then 900k more), and at each size it measures:
                   - `GET /runs` (first page, the default limit) against one `orch api` process, over one
                     keep-alive connection, with a runs:read token: latency p50 / p99 of --curves-requests calls;
                   - `orch runs list --json` as a subprocess: wall time of --curves-cli-calls calls (mostly the
                     interpreter starting: the command's own read is the RunStore.list row);
                   - RunStore.list (the CLI's read, 20 runs) in this process: p50 / p99;
                   - Redis used_memory per retained run: (used_memory - used_memory when empty) / runs.
  engines        sustained one-task runs/s (run.py's sustained phase: --n events emitted at once, the time until
                 the last run succeeded) with 1, 2 and 3 `orch engine` processes and the same --workers fast
                 workers, on a flushed Redis each; the median of CURVE_REPEATS measurements after one warm-up.

Each curve gets a verdict: flat when the largest value is at most FLAT_RATIO times the smallest.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.retained_runs import SOURCE, ReplayError, RunWriter, check_written, run_template
from orchestrator import Client, Settings
from orchestrator.project import Project
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.tokens import TokenStore

RUNS = (1_000, 100_000, 1_000_000)
QUICK_RUNS = (1_000, 10_000, 100_000)
ENGINES = (1, 2, 3)
FLAT_RATIO = 1.5
CURVE_REPEATS = 3         # sustained measurements per engine count (median)
FLUSH_TIMEOUT_S = 300       # redis-py waits 5 s by default; dropping a million retained runs takes longer
ORCH = Path(sys.executable).parent / "orch"


class CurveError(RuntimeError):
    """The phase could not measure what it meant to; the message says why."""


@dataclass(frozen=True)
class Deps:
    """What bench/orchphases.py lends this phase (importing it from here would be a cycle: it imports this
    module)."""

    stack: Any                                   # stack.Stack: url, tmp, start_orch, stop_orch, check_alive
    start_orch: Callable[..., str]               # probe.start_orch(stack, engine, args, probe, client)
    probe: Callable[[str], Any]                  # probe.Probe(url)
    sustained: Callable[..., dict[str, Any]]     # orchphases.phase_sustained(stack, probe, client, admin, n, label)
    pct: Callable[[list[float], float], float]
    log: Callable[[str], None]
    project: Project
    project_dir: Path
    prefix: str


def verdict(values: Sequence[float]) -> dict[str, Any]:
    """Largest / smallest of a curve's values and whether that stays within FLAT_RATIO."""
    low, high = min(values), max(values)
    ratio = high / low if low > 0 else float("inf")
    return {"ratio": round(ratio, 2), "flat": ratio <= FLAT_RATIO}


def parse_sizes(text: str) -> list[int]:
    """"1000,100000,1e6" -> [1000, 100000, 1000000], ascending, each positive."""
    sizes = sorted(int(float(part)) for part in text.split(",") if part.strip())
    if not sizes or sizes[0] <= 0:
        raise ValueError(f"sizes must be positive numbers, comma-separated, not {text!r}")
    return sizes


# -- reading them: GET /runs, orch runs list, RunStore.list -------------------------------------------------


def _orch_env(deps: Deps) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DEV_PARENT_PID"}
    env.update(ORCH_REDIS_URL=deps.stack.url, ORCH_PROJECT=str(deps.project_dir), ORCH_KEY_PREFIX=deps.prefix)
    return env


def start_api(deps: Deps, client: redis.Redis) -> tuple[int, str]:
    """One `orch api` process on a free port and a runs:read token; (port, token)."""
    token, _ = TokenStore(client, Keys(deps.prefix)).create("bench-curves", ["runs:read"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    deps.stack.start_orch("api", env_overrides={"ORCH_API_PORT": str(port), "ORCH_API_WORKERS": "1"})
    deadline = time.monotonic() + 60
    while True:
        deps.stack.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return port, token
        except OSError:
            if time.monotonic() > deadline:
                raise CurveError(f"curves: orch api did not listen within 60 s (logs: {deps.stack.tmp})") from None
            time.sleep(0.05)


def api_latency(deps: Deps, port: int, token: str, requests: int, expect: int) -> dict[str, Any]:
    """GET /runs (first page, default limit) `requests` times over one keep-alive connection, after 5 untimed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    times_ms: list[float] = []
    try:
        for i in range(requests + 5):
            t0 = time.perf_counter()
            conn.request("GET", "/runs", headers=headers)
            response = conn.getresponse()
            body = response.read()
            if i >= 5:
                times_ms.append((time.perf_counter() - t0) * 1000)
            if response.status != 200 or len(json.loads(body)) != expect:
                raise CurveError(f"curves: GET /runs answered {response.status} with {body[:200]!r}")
    finally:
        conn.close()
    return {"p50_ms": round(deps.pct(times_ms, 0.5), 2), "p99_ms": round(deps.pct(times_ms, 0.99), 2),
            "requests": requests, "runs_per_page": expect}


def cli_latency(deps: Deps, calls: int) -> dict[str, Any]:
    """`orch runs list --json` as a subprocess, `calls` times after one untimed: wall time per call."""
    env, times_ms = _orch_env(deps), []
    for i in range(calls + 1):
        t0 = time.perf_counter()
        done = subprocess.run([str(ORCH), "runs", "list", "--json"], env=env, capture_output=True, timeout=120,
                              check=False)
        if i > 0:
            times_ms.append((time.perf_counter() - t0) * 1000)
        if done.returncode != 0 or not json.loads(done.stdout):
            raise CurveError(f"curves: orch runs list exited {done.returncode}: {done.stderr[-400:]!r}")
    return {"p50_ms": round(deps.pct(times_ms, 0.5), 1), "max_ms": round(max(times_ms), 1), "calls": calls}


def store_latency(deps: Deps, store: RunStore, calls: int) -> dict[str, Any]:
    """RunStore.list(limit=20), the CLI's read, in this process: what `orch runs list` costs past startup."""
    times_ms = []
    for _ in range(calls):
        t0 = time.perf_counter()
        store.list(limit=20)
        times_ms.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(deps.pct(times_ms, 0.5), 3), "p99_ms": round(deps.pct(times_ms, 0.99), 3)}


def measure_runs(deps: Deps, sizes: list[int], requests: int, cli_calls: int,
                 used_memory: Callable[[redis.Redis], int]) -> list[dict[str, Any]]:
    """Every retained-runs figure at each size, on a flushed Redis, the sizes written cumulatively."""
    client = redis.Redis.from_url(deps.stack.url, socket_timeout=FLUSH_TIMEOUT_S)  # FLUSHALL of 1M runs: > 5 s
    client.flushall()
    settings = Settings(redis_url=deps.stack.url, key_prefix=deps.prefix)
    store = RunStore(client, Keys(deps.prefix), retention_s=settings.run_retention_s)
    template = run_template(client, store, deps.project)
    writer = RunWriter(client, template, sizes[-1])
    port, token = start_api(deps, client)
    writer.load()
    empty = used_memory(client)
    out: list[dict[str, Any]] = []
    try:
        for size in sizes:
            write_s = writer.write_to(size, deps.log)
            try:
                check_written(store, writer, template)
            except ReplayError as exc:
                raise CurveError(str(exc)) from exc
            memory = used_memory(client)
            api = api_latency(deps, port, token, requests, min(50, size))
            cli = cli_latency(deps, cli_calls)
            out.append({"runs": size, "write_s": round(write_s, 2), "used_memory": memory,
                        "bytes_per_run": round((memory - empty) / size, 1), "api": api, "cli": cli,
                        "store": store_latency(deps, store, requests)})
            deps.log(f"curves: {size:,} runs: {(memory - empty) / size:,.0f} B/run, GET /runs p50 "
                     f"{api['p50_ms']} ms, orch runs list {cli['p50_ms']} ms")
    finally:
        deps.stack.stop_orch()
        client.flushall()
        client.close()
    return out


# -- engines -----------------------------------------------------------------------------------------------


def _wait_engines(deps: Deps, client: redis.Redis, count: int) -> None:
    """Until `count` engines have beaten (<p>:engines): every one has started its loop."""
    deadline = time.monotonic() + 60
    while int(client.zcard(Keys(deps.prefix).engines)) < count:
        deps.stack.check_alive()
        if time.monotonic() > deadline:
            raise CurveError(f"curves: {count} engines did not all beat within 60 s (logs: {deps.stack.tmp})")
        time.sleep(0.1)


def measure_engines(deps: Deps, args: Any, counts: list[int], n: int) -> list[dict[str, Any]]:
    """Sustained one-task runs/s with each number of engines and the same fast workers, on a flushed Redis."""
    out = []
    for count in counts:
        admin = redis.Redis.from_url(deps.stack.url)
        admin.flushall()
        probe = deps.probe(deps.stack.url)
        deps.stack.tag = f"curves-{count}e-"
        with Client(settings=Settings(redis_url=deps.stack.url, key_prefix=deps.prefix), source=SOURCE) as client:
            workers = deps.start_orch(deps.stack, "fast", args, probe, client)
            for _ in range(count - 1):
                deps.stack.start_orch("engine", log_level=args.log_level)
            _wait_engines(deps, admin, count)
            label = f"curves, {count} engine{'s' * (count > 1)}"
            deps.sustained(deps.stack, probe, client, admin, max(200, n // 10), label)  # warm-up, every engine
            runs = [deps.sustained(deps.stack, probe, client, admin, n, label) for _ in range(CURVE_REPEATS)]
        deps.stack.stop_orch()
        probe.redis.close()
        admin.close()
        rates = sorted(r["runs_per_s"] for r in runs)
        median = next(r for r in runs if r["runs_per_s"] == rates[len(rates) // 2])
        out.append({"engines": count, "workers": workers, "runs": n, "runs_per_s": median["runs_per_s"],
                    "runs_per_s_all": [r["runs_per_s"] for r in runs],
                    "cpu_cores_busy": median["cpu_cores_busy"],
                    "runs_per_engine_commit": median["runs_per_engine_commit"],
                    "commands_per_run": median["commands_per_run"]})
    return out


# -- the phase and its tables ------------------------------------------------------------------------------


def phase_curves(deps: Deps, args: Any, used_memory: Callable[[redis.Redis], int]) -> dict[str, Any]:
    """Both curves; each figure with its verdict."""
    sizes = parse_sizes(args.curves_runs) if args.curves_runs else list(QUICK_RUNS if args.quick else RUNS)
    counts = parse_sizes(args.curves_engines)
    runs = measure_runs(deps, sizes, args.curves_requests, args.curves_cli_calls, used_memory)
    engines = measure_engines(deps, args, counts, args.curves_events)
    return {"runs": runs, "engines": engines, "flat_ratio": FLAT_RATIO, "verdicts": {
        "api_p50": verdict([s["api"]["p50_ms"] for s in runs]),
        "api_p99": verdict([s["api"]["p99_ms"] for s in runs]),
        "cli_p50": verdict([s["cli"]["p50_ms"] for s in runs]),
        "store_p50": verdict([s["store"]["p50_ms"] for s in runs]),
        "bytes_per_run": verdict([s["bytes_per_run"] for s in runs]),
        "engine_runs_per_s": verdict([e["runs_per_s"] for e in engines])}}


def add_args(ap: Any) -> None:
    """run.py's command-line options of this phase."""
    ap.add_argument("--curves-runs", default=None,
                    help="curves: retained runs at each size, comma-separated (default 1000,100000,1000000; "
                         "quick 1000,10000,100000)")
    ap.add_argument("--curves-engines", default=",".join(map(str, ENGINES)),
                    help="curves: engine counts for the throughput curve (default 1,2,3)")
    ap.add_argument("--curves-events", type=int, default=2000,
                    help="curves: events emitted at once per throughput measurement (default 2,000)")
    ap.add_argument("--curves-requests", type=int, default=1000,
                    help="curves: timed GET /runs requests (and RunStore.list calls) per size (default 1,000: p99 "
                         "is then the tenth slowest; with 200 it was the second, and two scheduling hiccups at "
                         "one size made the curve look 2.4x 'not flat')")
    ap.add_argument("--curves-cli-calls", type=int, default=5,
                    help="curves: timed `orch runs list --json` subprocesses per size (default 5)")


def _flat(v: dict[str, Any]) -> str:
    return f"{'flat' if v['flat'] else '**not flat**'}, {v['ratio']:.2f}x"


def curves_table(data: dict[str, Any]) -> list[str]:
    """The curves as Markdown, for run.py's report."""
    runs, engines, v = data["runs"], data["engines"], data["verdicts"]
    head = " | ".join(f"{s['runs']:,} runs" for s in runs)
    lines = ["", f"| curve: retained finished runs | {head} | largest / smallest |",
             "|---|" + "---:|" * (len(runs) + 1)]

    def row(label: str, cells: list[str], key: str) -> None:
        lines.append(f"| {label} | {' | '.join(cells)} | {_flat(v[key])} |")

    row("`GET /runs`, first page of 50, p50 (ms)", [f"{s['api']['p50_ms']:.2f}" for s in runs], "api_p50")
    row("`GET /runs`, p99 (ms)", [f"{s['api']['p99_ms']:.2f}" for s in runs], "api_p99")
    row("`orch runs list --json`, wall time p50 (ms)", [f"{s['cli']['p50_ms']:.0f}" for s in runs], "cli_p50")
    row("RunStore.list(limit=20) in process, p50 (ms)", [f"{s['store']['p50_ms']:.3f}" for s in runs], "store_p50")
    row("Redis used_memory per retained run (B)", [f"{s['bytes_per_run']:,.0f}" for s in runs], "bytes_per_run")
    lines.append("| runs written in (s; Lua replay of RunStore.write_change) | "
                 + " | ".join(f"{s['write_s']:.1f}" for s in runs) + " | – |")
    lines += ["", f"| curve: sustained one-task runs/s, {engines[0]['workers']} | "
              + " | ".join(f"{e['engines']} engine{'s' * (e['engines'] > 1)}" for e in engines)
              + " | largest / smallest |", "|---|" + "---:|" * (len(engines) + 1)]
    row(f"runs/s, median of {CURVE_REPEATS} x {engines[0]['runs']:,} runs",
        [f"{e['runs_per_s']:,.0f}" for e in engines], "engine_runs_per_s")
    for label, cells in (("all measurements (runs/s)", [" / ".join(f"{r:,.0f}" for r in e["runs_per_s_all"])
                                                        for e in engines]),
                         ("runs per engine commit", [f"{e['runs_per_engine_commit']}" for e in engines]),
                         ("Redis commands per run", [f"{e['commands_per_run']}" for e in engines]),
                         *((f"CPU cores busy: {role}", [f"{e['cpu_cores_busy'].get(role, 0):.2f}" for e in engines])
                           for role in ("engine", "worker", "redis", "other"))):
        lines.append(f"| {label} | {' | '.join(cells)} | – |")
    lines += ["", f"Curves: flat when the largest value is at most {data['flat_ratio']}x the smallest. Retained "
              "runs are bench_one runs written cumulatively as the engine leaves them (hash with TTL, run "
              "indexes); `orch runs list` is mostly interpreter start-up (RunStore.list is its read). For the "
              "engines curve, flat means more engines add no throughput: on 2 cores the workers, Redis and the "
              "engines share the same CPUs; runs per engine commit counts the engines' WATCHes, one per commit "
              "attempt (a WATCH conflict between engines retries with another)."]
    return lines
