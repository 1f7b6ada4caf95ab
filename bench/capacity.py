"""Phase `capacity`: the per-item Redis figures deploy/CAPACITY.md builds its plan on (`--only capacity`).

    .venv/bin/python bench/run.py --only capacity     this phase alone (~30 s)

Every figure is an INFO used_memory delta over many items (10,000 by default), divided by their number:

  events       Client.emit_many under a prefix of its own, no engine reading it: memory per event (stream
               entry + dedup key); then the dedup keys deleted: memory per dedup key, and the rest per
               stream entry.
  queued job   RQDispatcher.dispatch of the first task of bench_one runs (built by lifecycle.new_run, as the
               engine builds them) to a queue no worker reads: the RQ job hash + queue list entry.
  runs         with `orch engine` and the fast workers running (started by run.py), N bench_one events
               (one task each), every run finished and every stream entry read and acknowledged; then
               what they left in Redis is "peeled" one class at a time, the memory measured after each:
               the results stream entries, the event stream entries (the events and the run lifecycle
               events the engine emits), the decision records, the dedup keys, the attempt logs, RQ's
               finished job hashes and finished-registry entries, then the runs (their hashes and index entries). Each class has its own lifetime
               (settings), which is why they are told apart. What no class explains is reported as other.
  tasks        the same with R bench_fanout runs of K items (K + 2 tasks each): per task, per class,
               (per fan-out run - per one-task run) / (K + 1).

For the runs and the fan-out it also reports Redis commands (INFO commandstats, our polling excluded),
Redis server time (commandstats usec), Redis CPU (INFO used_cpu_sys + used_cpu_user) and the engine's and
workers' CPU (psutil), per run and per fan-out item.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from executors.dispatch import RQDispatcher
from orchestrator import Client, Settings
from orchestrator.project import Project
from orchestrator.state.keys import ENGINE_GROUP, Keys
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.runs import EventRef, RunStatus, derive_run_id

CAPACITY_PREFIX = "bench-capacity"  # the events measurement's keys; dropped after it
CAPACITY_QUEUE = "capacity"         # the queued-job measurement's queue: no worker reads it
SIZES = {"items": 10_000, "fanout_runs": 20, "fanout_items": 500}
SOURCE = "/bench"                   # run.py's event source
QUICK_SIZES = {"items": 2_000, "fanout_runs": 10, "fanout_items": 200}

Log = Callable[[str], None]


class CapacityError(RuntimeError):
    """The phase could not measure what it meant to; the message says why."""


def used_memory(client: redis.Redis) -> int:
    """INFO used_memory once nothing is left to free lazily (UNLINK, async flushes)."""
    for _ in range(200):
        info = client.info("memory")
        if int(info.get("lazyfree_pending_objects", 0)) == 0:
            return int(info["used_memory"])
        time.sleep(0.01)
    raise CapacityError("Redis kept objects pending lazy free for 2 s")


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _delete_matching(client: redis.Redis, pattern: str) -> int:
    """DEL (not UNLINK: freed now) every key matching `pattern`; how many."""
    found = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 1000:
            found += int(client.delete(*batch))
            batch = []
    if batch:
        found += int(client.delete(*batch))
    return found


# -- events and dedup keys ---------------------------------------------------------------------------------


def measure_events(url: str, n: int, source: str, event_type: str, log: Log) -> dict[str, Any]:
    """Memory per retained event, per dedup key and per stream entry (no engine reads this prefix)."""
    admin = redis.Redis.from_url(url)
    keys = Keys(CAPACITY_PREFIX)
    with Client(settings=Settings(redis_url=url, key_prefix=CAPACITY_PREFIX), source=source) as client:
        client.emit_many([{"type": event_type, "data": {"n": -1}}])  # loads the script, creates the stream
        m0 = used_memory(admin)
        log(f"capacity: {n:,} events via Client.emit_many, no engine reading them")
        for start in range(0, n, 5000):
            client.emit_many([{"type": event_type, "data": {"n": i}} for i in range(start, min(n, start + 5000))])
    m1 = used_memory(admin)
    dedup = _delete_matching(admin, keys.dedup("*"))
    m2 = used_memory(admin)
    _delete_matching(admin, f"{CAPACITY_PREFIX}:*")
    admin.close()
    if dedup < n:
        raise CapacityError(f"capacity: {dedup:,} dedup keys for {n:,} events")
    return {"events": n, "bytes_per_event": round((m1 - m0) / n, 1),
            "bytes_per_dedup_key": round((m1 - m2) / dedup, 1),
            "bytes_per_stream_entry": round((m2 - m0) / n, 1)}


# -- queued jobs -------------------------------------------------------------------------------------------


def measure_queued_jobs(url: str, project: Project, workflow: str, rule: str, n: int, log: Log) -> dict[str, Any]:
    """Memory per job waiting in its queue: RQ's job hash and the queue list entry, as the engine's
    RQDispatcher writes them for the first task of a `workflow` run."""
    admin = redis.Redis.from_url(url)
    settings = Settings(redis_url=url, key_prefix="orch")
    dispatcher = RQDispatcher(admin, settings)
    spec = project.workflows[workflow].spec
    now = datetime.now(UTC)
    queue_key = f"rq:queue:{Keys(settings.key_prefix).queue_name(CAPACITY_QUEUE)}"
    log(f"capacity: {n:,} jobs dispatched to a queue no worker reads")
    dispatches = []
    for i in range(n):
        event_id = uuid.uuid4().hex
        change = new_run(derive_run_id(rule, SOURCE, event_id), spec, rule, EventRef(event_id, SOURCE, "x"),
                         {"value": i}, now, {"n": i})
        dispatches += [dataclasses.replace(d, queue=CAPACITY_QUEUE) for d in change.dispatches]
    m0 = used_memory(admin)
    for start in range(0, len(dispatches), 1000):
        pipe = admin.pipeline(transaction=True)
        dispatcher.dispatch(pipe, dispatches[start:start + 1000])
        pipe.execute()
    m1 = used_memory(admin)
    queued = int(admin.llen(queue_key))
    for start in range(0, len(dispatches), 1000):
        admin.delete(*[f"rq:job:{d.job_id}" for d in dispatches[start:start + 1000]])
    admin.delete(queue_key)
    admin.close()
    if queued != len(dispatches):
        raise CapacityError(f"capacity: {queued:,} of {len(dispatches):,} jobs in {queue_key}")
    return {"jobs": queued, "bytes_per_queued_job": round((m1 - m0) / queued, 1)}


# -- runs and tasks, through the engine and the workers ----------------------------------------------------

# What finished runs leave behind, in the order it is peeled off: (class, how to remove it).
PEEL_CLASSES = ("results_entries", "event_entries", "decisions", "dedup_keys", "attempt_logs", "rq_jobs", "runs")


def _settled(admin: redis.Redis, keys: Keys) -> bool:
    """Every entry of both streams read and acknowledged by the engine's group."""
    for stream in (keys.events, keys.results):
        for group in admin.xinfo_groups(stream):
            if group["name"] in (ENGINE_GROUP, ENGINE_GROUP.encode()) and (group["pending"] or group.get("lag")):
                return False
    return True


def _peel(admin: redis.Redis, keys: Keys, run_ids: list[str], m_start: int) -> dict[str, int]:
    """Remove what the runs left, one class at a time; the memory each removal freed (and `other`)."""
    freed: dict[str, int] = {}
    before = used_memory(admin)
    for name in PEEL_CLASSES:
        if name == "results_entries":
            admin.xtrim(keys.results, maxlen=0, approximate=False)
        elif name == "event_entries":
            admin.xtrim(keys.events, maxlen=0, approximate=False)
        elif name == "decisions":
            _delete_matching(admin, keys.decisions("*"))
        elif name == "dedup_keys":
            _delete_matching(admin, keys.dedup("*"))
        elif name == "attempt_logs":
            _delete_matching(admin, f"{keys.prefix}:log:*")
        elif name == "rq_jobs":  # finished jobs' hashes and their finished-registry entries: job_result_ttl_s
            _delete_matching(admin, "rq:job:*")
            _delete_matching(admin, "rq:finished:*")
        else:
            _delete_runs(admin, keys, run_ids)
        after = used_memory(admin)
        freed[name] = before - after
        before = after
    freed["other"] = before - m_start
    return freed


def _delete_runs(admin: redis.Redis, keys: Keys, run_ids: list[str]) -> None:
    """The runs' hashes and their entries in every run index (the indexes themselves stay)."""
    indexes = [k for k in admin.scan_iter(match=f"{keys.runs}*", count=1000) if admin.type(k) == b"zset"]
    for start in range(0, len(run_ids), 1000):
        chunk = run_ids[start:start + 1000]
        pipe = admin.pipeline(transaction=False)
        pipe.delete(*[keys.run(r) for r in chunk])
        pipe.delete(*[f"{keys.prefix}:cancel:{r}" for r in chunk])
        for index in indexes:
            pipe.zrem(index, *chunk)
        pipe.execute()


def _usec_total(snapshot: dict[str, Any], skip: set[str]) -> int:
    return sum(v for k, v in snapshot["usec_by_command"].items() if k not in skip)


class Runner:
    """Emits a batch of events, waits for their runs and measures them; given run.py's stack and probe."""

    def __init__(self, stack: Any, probe: Any, client: Client, admin: redis.Redis, stats: Callable[..., Any],
                 commands_between: Callable[..., dict[str, int]], log: Log) -> None:
        self.stack, self.probe, self.client, self.admin = stack, probe, client, admin
        self.stats, self.commands_between, self.log = stats, commands_between, log
        self.keys = Keys(probe.keys.prefix)

    def _wait(self, run_ids: list[str], what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(run_ids)
        while pending:
            self.stack.check_alive()
            if time.monotonic() > deadline:
                raise CapacityError(f"capacity: {len(pending):,} {what} runs unfinished after {timeout_s:.0f}s")
            pipe = self.probe.redis.pipeline(transaction=False)
            for run_id in pending[:2000]:
                pipe.zscore(self.keys.runs_by_status(RunStatus.SUCCEEDED), run_id)
            self.probe._count("zscore", min(2000, len(pending)))
            done = {r for r, score in zip(pending[:2000], pipe.execute(), strict=True) if score is not None}
            if not done:
                time.sleep(0.05)
            pending = [r for r in pending if r not in done]
        while not _settled(self.admin, self.keys):
            self.probe._count("xinfo|groups", 2)
            time.sleep(0.05)
        time.sleep(0.3)  # the engine's last acknowledgements and index writes

    def epoch(self, events: list[dict[str, Any]], rule: str, items: int, what: str) -> dict[str, Any]:
        """Emit `events`, wait for their runs, then peel what they left; figures per run and per item."""
        self.probe.own.clear()
        m0 = used_memory(self.admin)
        before, cpu0, rcpu0 = self.stats(self.admin), self.stack.cpu_seconds(), redis_cpu_s(self.admin)
        self.log(f"capacity: {len(events):,} {what} runs ({items:,} tasks or items), engine and workers running")
        t0 = time.perf_counter()
        run_ids = [derive_run_id(rule, SOURCE, e) for e in self.client.emit_many(events)]
        self._wait(run_ids, what)
        elapsed = time.perf_counter() - t0
        after, cpu1, rcpu1 = self.stats(self.admin), self.stack.cpu_seconds(), redis_cpu_s(self.admin)
        m1 = used_memory(self.admin)
        streams = {"results_entries": int(self.admin.xlen(self.keys.results)),
                   "event_entries": int(self.admin.xlen(self.keys.events))}
        delta = self.commands_between(before, after, {**self.probe.own, "info": 3, "xlen": 2})
        skip = {"info", "zscore", "zcard", "xinfo|groups", "xlen"}
        n = len(run_ids)
        freed = _peel(self.admin, self.keys, run_ids, m0)
        return {"runs": n, "items": items, "seconds": round(elapsed, 2),
                "bytes_total": m1 - m0, "bytes_by_class": freed,
                "stream_entries": streams,
                "commands": sum(delta.values()), "redis_usec": _usec_total(after, skip) - _usec_total(before, skip),
                "redis_cpu_s": round(rcpu1 - rcpu0, 3),
                "cpu_s": {role: round(cpu1.get(role, 0.0) - cpu0.get(role, 0.0), 3)
                          for role in ("engine", "worker", "redis")}}


def _per(epoch: dict[str, Any], n: int) -> dict[str, Any]:
    """An epoch's figures divided by `n` (runs or items)."""
    return {"bytes_total": round(epoch["bytes_total"] / n, 1),
            "bytes_by_class": {k: round(v / n, 1) for k, v in epoch["bytes_by_class"].items()},
            "stream_entries": {k: round(v / n, 3) for k, v in epoch["stream_entries"].items()},
            "commands": round(epoch["commands"] / n, 2), "redis_usec": round(epoch["redis_usec"] / n, 2),
            "redis_cpu_ms": round(epoch["redis_cpu_s"] * 1000 / n, 4),
            "engine_cpu_ms": round(epoch["cpu_s"]["engine"] * 1000 / n, 4),
            "worker_cpu_ms": round(epoch["cpu_s"]["worker"] * 1000 / n, 4)}


def per_task(one: dict[str, Any], fan: dict[str, Any], extra_tasks: int) -> dict[str, float]:
    """Memory per task, per class: (per fan-out run - per one-task run) / the fan-out run's extra tasks."""
    return {k: round((fan["bytes_by_class"][k] - one["bytes_by_class"].get(k, 0.0)) / extra_tasks, 1)
            for k in fan["bytes_by_class"]}


def measure_runs(runner: Runner, sizes: dict[str, int], one: tuple[str, str], fanout: tuple[str, str]) -> dict[str, Any]:
    """One-task runs, then fan-out runs, through the running engine and workers. `one`, `fanout`: (rule,
    event type) of bench_one and bench_fanout."""
    n, runs, k = sizes["items"], sizes["fanout_runs"], sizes["fanout_items"]
    one_epoch = runner.epoch([{"type": one[1], "data": {"n": i}} for i in range(n)], one[0], n, "one-task")
    fan_epoch = runner.epoch([{"type": fanout[1], "data": {"n": k}} for _ in range(runs)], fanout[0], runs * k,
                             "fan-out")
    per_run = _per(one_epoch, n)
    per_fan_run = _per(fan_epoch, runs)
    per_item = _per(fan_epoch, runs * k)
    return {"one_task": {"epoch": one_epoch, "per_run": per_run},
            "fanout": {"epoch": fan_epoch, "tasks_per_run": k + 2, "per_run": per_fan_run, "per_item": per_item},
            "bytes_per_task_by_class": per_task(per_run, per_fan_run, k + 1)}


def measure(runner: Runner, project: Project, sizes: dict[str, int], one: tuple[str, str],
            fanout: tuple[str, str], workflow_one: str) -> dict[str, Any]:
    """Every capacity figure; `figures` is what bench/capacity_model.py plans with."""
    n = sizes["items"]
    events = measure_events(runner.stack.url, n, SOURCE, one[1], runner.log)
    jobs = measure_queued_jobs(runner.stack.url, project, workflow_one, one[0], n, runner.log)
    runs = measure_runs(runner, sizes, one, fanout)
    run, item = runs["one_task"]["per_run"], runs["fanout"]["per_item"]
    figures = {
        "bytes_per_event_stream_entry": events["bytes_per_stream_entry"],
        "bytes_per_dedup_key": events["bytes_per_dedup_key"],
        "bytes_per_queued_job": jobs["bytes_per_queued_job"],
        "bytes_per_run_by_class": run["bytes_by_class"],
        "bytes_per_task_by_class": runs["bytes_per_task_by_class"],
        "stream_entries_per_run": run["stream_entries"],
        **{f"{name}_per_run": run[name] for name in ("commands", "redis_usec", "redis_cpu_ms", "engine_cpu_ms",
                                                     "worker_cpu_ms")},
        **{f"{name}_per_item": item[name] for name in ("commands", "redis_usec", "redis_cpu_ms", "engine_cpu_ms",
                                                       "worker_cpu_ms")},
    }
    return {"sizes": sizes, "events": events, "queued_jobs": jobs, "runs": runs, "figures": figures}


def capacity_table(data: dict[str, Any]) -> list[str]:
    """The figures as Markdown, for run.py's report."""
    f = data["figures"]
    run, task = f["bytes_per_run_by_class"], f["bytes_per_task_by_class"]
    lines = ["", "| capacity: Redis memory (INFO used_memory deltas) | bytes |", "|---|---:|",
             f"| per event, stream entry | {f['bytes_per_event_stream_entry']:,.0f} |",
             f"| per dedup key | {f['bytes_per_dedup_key']:,.0f} |",
             f"| per queued job (RQ job hash + queue entry) | {f['bytes_per_queued_job']:,.0f} |"]
    lines += [f"| per one-task run: {name.replace('_', ' ')} | {value:,.0f} |" for name, value in run.items()]
    lines += [f"| per extra task of a run: {name.replace('_', ' ')} | {value:,.0f} |" for name, value in task.items()]
    lines += ["", "| capacity: cost | per one-task run | per fan-out item |", "|---|---:|---:|"]
    for name, label in (("commands", "Redis commands"), ("redis_usec", "Redis server time, commandstats (us)"),
                        ("redis_cpu_ms", "Redis CPU, used_cpu_sys+user (ms)"), ("engine_cpu_ms", "engine CPU (ms)"),
                        ("worker_cpu_ms", "worker CPU (ms)")):
        lines.append(f"| {label} | {f[name + '_per_run']:g} | {f[name + '_per_item']:g} |")
    entries = f["stream_entries_per_run"]
    lines += ["", f"Capacity: {data['sizes']['items']:,} one-task runs, {data['sizes']['fanout_runs']} fan-out runs "
              f"of {data['sizes']['fanout_items']} items; stream entries per one-task run: events "
              f"{entries['event_entries']:g}, results {entries['results_entries']:g}. Each class of what a run "
              "leaves has its own lifetime (deploy/CAPACITY.md)."]
    return lines
