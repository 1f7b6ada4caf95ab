"""orch benchmarks, side by side with peers measured in the same run (`make bench`).

    .venv/bin/python bench/run.py                 full run (about 5 minutes on 2 cores, peers and curves included)
    .venv/bin/python bench/run.py --quick         short smoke run (~40 s; peers: RQ SimpleWorker only)
    .venv/bin/python bench/run.py --json          JSON on stdout (the table goes to stderr)
    .venv/bin/python bench/run.py --skip-peers    orch only
    .venv/bin/python bench/run.py --peers rq-simple   one peer (default: all = RQ simple and fork, Celery, Dramatiq)
    .venv/bin/python bench/run.py --engines fast  orch's fast worker path only (default: fast,rq)
    .venv/bin/python bench/run.py --profile       engine and workers under cProfile (slower; for where time goes)
    .venv/bin/python bench/run.py --only ingest   the ingest phase alone (~10 s)
    .venv/bin/python bench/run.py --only webhook  the webhook phase alone (~10 s)
    .venv/bin/python bench/run.py --only orch     the engine and worker phases, no ingest or webhook
    .venv/bin/python bench/run.py --only fanout --engines fast --fanout 10000 --profile   the fan-out alone
    .venv/bin/python bench/run.py --only maintenance   the engine's maintenance pass alone (~1 minute)
    .venv/bin/python bench/run.py --only matching      rule matching alone: indexed vs naive, 10/1k/10k rules (~1 min)
    .venv/bin/python bench/run.py --only capacity      Redis memory per event, dedup key, run, task, queued job (~30 s)
    .venv/bin/python bench/run.py --only curves        flat costs at 3 sizes: GET /runs, memory per run, engines (~2 min)

Everything runs against a redis-server started here on a free loopback port, in a temporary
directory, without persistence (like the peers), and stopped at the end: no other Redis is touched.
Phases, in order:

  1. ingest      `Client.emit_many` in calls of --chunk events, no engine running: events/s, Redis
                 memory per retained event (INFO used_memory delta: stream entry + dedup key), Redis
                 commands per event, CPU per event of the client and of redis-server; then the same
                 from --ingest-processes processes at once (bench/ingest_procs.py), as applications emit.
  1b. webhook    `orch api --role hooks` alone (--api-role), one `verify: github` endpoint: --hook-requests signed requests
                 (distinct bodies) over --hook-connections keep-alive connections from a
                 minimal asyncio client; requests/s answered 202 (each event in the stream), latency
                 p50/p99, API CPU per request. Its keys use their own prefix and are dropped after.
  Then, once per worker engine (--engines; Redis flushed between them): `orch engine` + --workers
  worker processes on bench/project, `orch worker` (the fast path; --pool: one `orch worker
  --concurrency N`) or `orch worker --engine rq` (RQ's SimpleWorker):
  2. idle        one bench_one event at a time, each run finished before the next: emit -> task
                 started p50/p99 (the task's started_at from its run), emit -> run succeeded, and
                 where the time goes between the two.
  2b. hop        --hops bench_chain runs (a -> b, no-op tasks) one at a time: task a's finished_at
                 (its worker's record) -> task b's started_at, p50/p99, split at b's queued_at.
  3. sustained   N bench_one events emitted at once; one-task workflows/s from the first emit until
                 the last run succeeded (ZCARD of the succeeded index, polled every 2 ms); Redis
                 commands per run; CPU of each process.
  3b. fan-out    one bench_fanout run, items -> work.map(items) -> fan_in over --fanout no-op items
                 (--fanout-rq with --engine rq): item task runs/s from the first item queued to the
                 fan-in started, the run's duration, Redis commands and CPU per item, engine commits
                 (one WATCH each) and a 2 s timeline of engine progress and CPU. A run not done
                 within --fanout-limit seconds is reported as skipped.
  Then, every orch process stopped:
  3c. maintenance  `Engine.maintain(force=True)` in this process (the whole pass: sweep with its stall
                 scan, dead letters and reclaiming, trimming), on a flushed Redis holding 1,000 dedup
                 keys and 1,000 retained finished runs, then --maintenance-dedup dedup keys (1,000,000)
                 and --maintenance-runs finished runs (100,000), written as publish.lua and the engine
                 write them; 200 running runs at both sizes. Median time per pass, Redis memory
                 (INFO used_memory), commands and round trips per pass, and the ratio large / small,
                 which must stay close to 1: maintenance follows the work in flight, not the keyspace.
  3d. matching   in this process, no Redis: RuleIndex.matching against the naive loop (match() on every
                 rule) with 10, 1,000 and 10,000 rules of a realistic mix, on CloudEvents with nested data
                 and arrays: events/s (CPU and wall clock), the ratio, and the cost per event at each size
                 (flatness). See bench/matching.py.
  3e. capacity   Redis memory per event, dedup key, queued job, run (by what it leaves: stream entries,
                 decisions, dedup keys, logs, the run's hash and indexes) and task, as INFO used_memory deltas
                 over 10,000 items through `orch engine` and 2 fast workers; Redis commands, Redis CPU and the
                 engine's and workers' CPU per run and per fan-out item. See bench/capacity.py; the figures
                 deploy/CAPACITY.md plans with (bench/capacity_model.py).
  3f. curves     costs that must stay flat as the work grows, at three sizes each, with a verdict (largest /
                 smallest <= 1.5x): `GET /runs` (one `orch api`), `orch runs list --json` and Redis memory per
                 retained run with 1k / 100k / 1M finished runs (--curves-runs; written by replaying what
                 RunStore.write_change queues), and sustained one-task runs/s with 1 / 2 / 3 `orch engine`
                 processes and the same workers (--curves-engines). See bench/curves.py.
  4. peers       ../shared/peers/run.sh (ORCH_BENCH_PEERS to use another script), same N, for the
                 ratios: all four by default, RQ SimpleWorker only with --quick.

Redis commands are counted from INFO commandstats, commands run inside Lua scripts included, this
script's own polling excluded. CPU is psutil's user + system time of each process; "other
processes" is the rest of the machine's busy time meanwhile (other users: noise). Percentiles use
the peers' definition (sorted[int(n * q)]). Results are printed as Markdown tables and saved to
bench/results/<timestamp>.json. ORCH_* variables in the environment reach the engine and workers
(handy for tuning), except those this script sets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable however this is started
from bench import curves  # noqa: E402
from bench.common import ENGINES, RESULTS, ROOT, BenchError, log  # noqa: E402
from bench.ingest import phase_ingest, phase_webhook  # noqa: E402
from bench.maintenance import phase_maintenance  # noqa: E402
from bench.matching import phase_matching  # noqa: E402
from bench.orchphases import phase_capacity, phase_curves, phase_orch  # noqa: E402
from bench.peers import ALL_PEERS, run_peers  # noqa: E402
from bench.report import table  # noqa: E402
from bench.stack import Stack  # noqa: E402

FULL = {"events": 100_000, "samples": 200, "hops": 200, "n": 2000, "fanout": 10_000, "fanout_rq": 10_000,
        "hook_requests": 20_000, "maintenance_dedup": 1_000_000, "maintenance_runs": 100_000}
QUICK = {"events": 10_000, "samples": 30, "hops": 30, "n": 300, "fanout": 1000, "fanout_rq": 1000,
         "hook_requests": 3000, "maintenance_dedup": 100_000, "maintenance_runs": 10_000}


def meta(args: argparse.Namespace, redis_version: str) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "redis": redis_version, "args": vars(args), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "orch_env": {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}}


# -- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (10,000 events, 30 samples, N=300)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (table on stderr)")
    ap.add_argument("--skip-peers", action="store_true", help="do not measure the peers")
    ap.add_argument("--peers", default=None,
                    help=f"peers to measure: all (= {ALL_PEERS}; the default), rq-simple (the default with "
                         "--quick) or a comma-separated list")
    ap.add_argument("--events", type=int, help="ingest: events to emit (default 100,000; quick 10,000)")
    ap.add_argument("--chunk", type=int, default=5000, help="ingest: events per emit_many call (default 5,000)")
    ap.add_argument("--ingest-processes", type=_at_least_one, default=2,
                    help="ingest: processes emitting at once after the one-process run (default 2: both cores)")
    ap.add_argument("--hook-requests", type=int,
                    help="webhook: signed requests to POST /hooks/github (default 20,000; quick 3,000)")
    ap.add_argument("--hook-connections", type=int, default=16,
                    help="webhook: concurrent keep-alive connections (default 16)")
    ap.add_argument("--api-workers", type=int, default=2,
                    help="webhook: `orch api --workers N`, API processes sharing the port (default 2: both cores)")
    ap.add_argument("--api-role", choices=["hooks", "all"], default="hooks",
                    help="webhook: `orch api --role R` (default hooks: the listener deploy/ exposes, without the "
                         "operator routes and the UI)")
    ap.add_argument("--only", choices=["ingest", "webhook", "orch", "fanout", "maintenance", "matching", "capacity",
                                           "curves"], default=None,
                    help="run some phases only: ingest (Client.emit_many alone, events/s), webhook (orch api alone, signed requests/s), orch (the engine "
                         "and worker phases, no ingest or webhook), fanout (the fan-out phase alone), "
                         "maintenance (one engine maintenance pass, few vs many dedup keys and finished runs), "
                         "matching (rule matching, indexed vs naive, in this process), capacity (Redis memory, "
                         "commands and CPU per event, run, task and queued job: deploy/CAPACITY.md), curves "
                         "(flat costs at three sizes: bench/curves.py)")
    curves.add_args(ap)
    ap.add_argument("--maintenance-dedup", type=int,
                    help="maintenance: dedup keys of the large size (default 1,000,000; quick 100,000)")
    ap.add_argument("--maintenance-runs", type=int,
                    help="maintenance: finished runs of the large size (default 100,000; quick 10,000)")
    ap.add_argument("--samples", type=int, help="idle latency samples (default 200; quick 30)")
    ap.add_argument("--hops", type=int, help="hop latency: two-task chain runs (default 200; quick 30)")
    ap.add_argument("--n", type=int, help="sustained: events emitted at once, also the peers' N (default 2,000)")
    ap.add_argument("--fanout", type=int, help="fan-out: items of the one mapped run (default 10,000; quick 1,000)")
    ap.add_argument("--fanout-rq", type=int,
                    help="fan-out items with --engine rq workers (default: as --fanout; 0 skips it)")
    ap.add_argument("--fanout-limit", type=float, default=240.0,
                    help="fan-out: seconds after which an unfinished run is reported as skipped (default 240)")
    ap.add_argument("--engines", default="fast,rq",
                    help="worker engines to measure: fast (orch worker), rq (orch worker --engine rq); default both")
    ap.add_argument("--workers", type=int, default=2, help="orch worker processes (default 2, like the peers)")
    ap.add_argument("--pool", action="store_true",
                    help="fast path as one `orch worker --concurrency N` pool instead of N `orch worker` processes")
    ap.add_argument("--log-level", default=None, help="ORCH_LOG_LEVEL of the engine and workers (default: orch's)")
    ap.add_argument("--profile", action="store_true",
                    help="run the engine and workers under cProfile; .prof files in bench/results/profile-<time>/")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with the process logs")
    return ap.parse_args(argv)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def show_profile(path: Path, top: int = 25) -> None:
    """The engine's hottest functions (whole lifetime, all phases), to stderr."""
    import io
    import pstats

    if not path.exists():
        log(f"profile: {path} was not written")
        return
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats(key).print_stats(top)
        log(f"profile of the engine by {key} ({path}):\n{text.getvalue()}")


def run_phases(stack: Stack, args: argparse.Namespace, sizes: dict[str, int], engines: list[str]) -> dict[str, Any]:
    """The phases `--only` asks for (every one by default), in order; their results by phase."""
    if args.only == "webhook":
        return {"webhook": phase_webhook(stack, sizes["hook_requests"], args.hook_connections, args.api_workers,
                                         args.api_role)}
    if args.only == "ingest":
        return {"ingest": phase_ingest(stack, sizes["events"], args.chunk, args.ingest_processes)}
    if args.only == "maintenance":
        return {"maintenance": phase_maintenance(stack, sizes)}
    if args.only == "capacity":
        return {"capacity": phase_capacity(stack, args)}
    if args.only == "curves":
        return {"curves": phase_curves(stack, args)}
    out: dict[str, Any] = {}
    if args.only is None:
        out["ingest"] = phase_ingest(stack, sizes["events"], args.chunk, args.ingest_processes)
        out["webhook"] = phase_webhook(stack, sizes["hook_requests"], args.hook_connections, args.api_workers,
                                       args.api_role)
    for engine in engines:
        stack.tag = f"{engine}-"
        out[engine] = phase_orch(stack, args, sizes, engine)
    stack.stop_orch()
    if args.only is None:
        out["maintenance"] = phase_maintenance(stack, sizes)
        out["matching"] = phase_matching(log)
        out["capacity"] = phase_capacity(stack, args)
        out["curves"] = phase_curves(stack, args)
    return out


def measure(args: argparse.Namespace, sizes: dict[str, int], results: dict[str, Any]) -> None:
    if args.only == "matching":  # pure: no Redis, no processes
        results["meta"] = meta(args, "")
        results["orch"] = {"matching": phase_matching(log)}
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        raise BenchError(f"--engines: choose among {', '.join(ENGINES)}, not {args.engines!r}")
    stack = Stack()
    if args.profile:
        stack.profile_dir = RESULTS / f"profile-{results['stamp']}"
        stack.profile_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        stack.start_redis()
        results["meta"] = meta(args, stack.redis_version)
        log(f"bench: redis-server {stack.redis_version} at {stack.url} (data in {stack.tmp})")
        results["orch"] = run_phases(stack, args, sizes, engines)
        if stack.profile_dir is not None:
            for path in sorted(stack.profile_dir.glob("*engine-*.prof")):
                show_profile(path)
    except BenchError:
        failed = True
        raise
    finally:
        stack.close(keep_logs=args.keep_logs or failed)
        if args.keep_logs or failed:
            log(f"bench: process logs kept in {stack.tmp}")
    if args.skip_peers or args.only in ("ingest", "webhook", "fanout", "maintenance", "capacity", "curves"):
        return
    peers = args.peers or ("rq-simple" if args.quick else "all")
    only = ALL_PEERS if peers == "all" else peers
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-peers-"))
    try:
        results["peers"] = run_peers(only, sizes["n"], tmp)
    except BenchError as exc:
        log(f"bench: {exc}")
        results["peers_error"] = str(exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    if args.fanout is not None and args.fanout_rq is None:
        args.fanout_rq = args.fanout
    sizes.update({k: v for k in sizes if (v := getattr(args, k)) is not None})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup
        signal.signal(signal.SIGHUP, _interrupt)
    t0 = time.monotonic()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {"stamp": stamp, "sizes": sizes, "peers": []}
    try:
        measure(args, sizes, results)
    except BenchError as exc:
        log(f"bench: error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted; every process it started has been stopped")
        return 130
    results["seconds"] = round(time.monotonic() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    load = results.get("meta", {}).get("loadavg_start")
    report = (f"{table(results)}\n\nWall time: {results['seconds']:.0f} s; load average at the start "
              f"{' / '.join(map(str, load or []))} (1 / 5 / 15 min). Saved {path.relative_to(ROOT)}.")
    if args.json:
        log(report)
        print(json.dumps(results, indent=2))
    else:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
