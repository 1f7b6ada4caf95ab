"""Workers and queues as `orch workers`, GET /workers and the UI show them: read-only, bounded, untrusted.

    workers_view(client, keys, now)   every registered worker: its heartbeat (host, pid, queues, state),
                                      the task it runs and for how long, jobs done, jobs it holds
    queues_view(client, keys, now)    every orch queue: jobs waiting, running and failed, the age of the
                                      job at its head, tasks finished per minute lately

Nothing here scans the keyspace: workers come from the `<p>:workers` zset, queues from RQ's `rq:queues`
set, and each costs a fixed number of commands in two pipelined round trips at most. Heartbeat hashes
and job hashes are read as untrusted: a field that does not parse is shown as missing.

Throughput: workers count each finished task (succeeded or failed) in `<p>:throughput:<queue>:<hour>`,
a hash of epoch minute -> count (`FinishedCounter`): one HINCRBY per task, sent in the worker's existing
finish pipeline, plus an EXPIRE the first time a worker counts in a given hour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis

from ..state.keys import Keys
from ..state.rq_keys import QUEUES, job_key, queue_key, registry_key

__all__ = ["RATE_MINUTES", "RECENT_MINUTES", "THROUGHPUT_TTL_S", "FinishedCounter", "queue_names", "queues_view",
           "workers_view"]

THROUGHPUT_TTL_S = 7200  # an hour's hash outlives its hour by at least one more
RECENT_MINUTES = 10      # minutes of `finished_per_minute`, the current (partial) one last
RATE_MINUTES = 5         # minutes `throughput_per_min` averages over, the current one so far included


class FinishedCounter:
    """The commands that count one finished task of an RQ queue, for a worker to send with its own."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._prefix = keys.queue_name("")
        self._hour = -1
        self._expiring: set[str] = set()  # keys of the current hour this worker has set a TTL on

    def commands(self, rq_queue: str, now_s: float) -> list[tuple[Any, ...]]:
        minute = int(now_s // 60)
        hour = minute // 60
        if hour != self._hour:
            self._hour, self._expiring = hour, set()
        key = self._keys.throughput(rq_queue.removeprefix(self._prefix), hour)
        out: list[tuple[Any, ...]] = [("HINCRBY", key, minute, 1)]
        if key not in self._expiring:
            out.append(("EXPIRE", key, THROUGHPUT_TTL_S))
            self._expiring.add(key)
        return out


def workers_view(client: redis.Redis, keys: Keys, now: datetime) -> list[dict[str, Any]]:
    """Every registered worker, by name. A worker whose heartbeat expired stays listed (`alive` false,
    `state` "lost") until the engine has handed back what it held.

    Each: {name, alive, host, pid, queues, engine, pool, state (idle, busy, stopping, lost), started_at,
    heartbeat_at, heartbeat_age_s, jobs_done, jobs_failed, claimed (jobs held, not finished), current:
    None or {job, run, node, task, attempt, started_at, running_s, timeout_s}}; times are ISO 8601 UTC.
    A worker process runs one task at a time; `orch worker --concurrency N` shows as N workers sharing `pool`."""
    entries = client.zrange(keys.workers, 0, -1, withscores=True)
    pipe = client.pipeline(transaction=False)
    for raw, _ in entries:
        name = _text(raw)
        pipe.hgetall(keys.worker(name))
        pipe.llen(keys.worker_claimed(name))
    replies = pipe.execute()
    now_s = now.timestamp()
    rows = []
    for i, (raw, score) in enumerate(entries):
        fields = {_text(k): _text(v) for k, v in replies[2 * i].items()}
        rows.append(_worker_row(_text(raw), fields, float(score) / 1000, int(replies[2 * i + 1]), now_s))
    return sorted(rows, key=lambda row: row["name"])


def queue_names(client: redis.Redis, keys: Keys) -> list[str]:
    """RQ's names of orch's queues (`<prefix>.<queue>`), from RQ's set of queues."""
    prefix = queue_key(keys.queue_name(""))
    return sorted(key.removeprefix(queue_key("")) for key in map(_text, client.smembers(QUEUES))
                  if key.startswith(prefix))


def queues_view(client: redis.Redis, keys: Keys, now: datetime) -> list[dict[str, Any]]:
    """Every orch queue that has had a job: {queue, queued, started (running now), failed, oldest_enqueued_at,
    oldest_age_s (of the job at the head, the next to run; None when empty), finished_per_minute
    ([{minute, count}] for the last RECENT_MINUTES minutes, the current one last and partial),
    throughput_per_min (tasks finished per minute over the last RATE_MINUTES minutes, up to `now`)}."""
    names = queue_names(client, keys)
    minute = int(now.timestamp() // 60)
    minutes = list(range(minute - RECENT_MINUTES + 1, minute + 1))
    hours = sorted({m // 60 for m in minutes})
    prefix = keys.queue_name("")
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(queue_key(name))
        pipe.lindex(queue_key(name), 0)
        pipe.zcard(registry_key("started", name))
        pipe.zcard(registry_key("failed", name))
        for hour in hours:
            pipe.hmget(keys.throughput(name.removeprefix(prefix), hour), [m for m in minutes if m // 60 == hour])
    width = 4 + len(hours)
    replies = pipe.execute()
    window_min = RATE_MINUTES - 1 + (now.timestamp() % 60) / 60  # whole minutes before, and this one so far
    rows = [_queue_row(name.removeprefix(prefix), replies[i * width:(i + 1) * width], minutes, window_min)
            for i, name in enumerate(names)]
    _add_oldest(client, rows, now)
    return rows


def _queue_row(queue: str, replies: Sequence[Any], minutes: list[int], window_min: float) -> dict[str, Any]:
    depth, head, started, failed, *buckets = replies
    counts = [_int(c) or 0 for bucket in buckets for c in bucket]
    return {"queue": queue, "queued": int(depth), "started": int(started), "failed": int(failed),
            "oldest_enqueued_at": None, "oldest_age_s": None, "_head": _text(head) if head else None,
            "finished_per_minute": [{"minute": _iso(m * 60.0), "count": c} for m, c in zip(minutes, counts, strict=True)],
            "throughput_per_min": round(sum(counts[-RATE_MINUTES:]) / window_min, 3)}


def _add_oldest(client: redis.Redis, rows: list[dict[str, Any]], now: datetime) -> None:
    """Each queue's head job's enqueue time (RQ's `enqueued_at`) and age; one round trip for all."""
    heads = [row for row in rows if row["_head"]]
    pipe = client.pipeline(transaction=False)
    for row in heads:
        pipe.hget(job_key(row["_head"]), "enqueued_at")
    for row, raw in zip(heads, pipe.execute() if heads else [], strict=True):
        enqueued = _rq_time(raw)
        if enqueued is not None:
            row["oldest_enqueued_at"] = _iso(enqueued.timestamp())
            row["oldest_age_s"] = round(max(0.0, (now - enqueued).total_seconds()), 3)
    for row in rows:
        del row["_head"]


def _worker_row(name: str, fields: dict[str, str], last_beat_s: float, claimed: int, now_s: float) -> dict[str, Any]:
    heartbeat_s = _float(fields.get("heartbeat_at")) or last_beat_s
    row: dict[str, Any] = {
        "name": name, "alive": bool(fields), "host": fields.get("host", ""), "pid": _int(fields.get("pid")),
        "queues": [q for q in fields.get("queues", "").split(",") if q], "engine": fields.get("engine", ""),
        "pool": fields.get("pool") or None, "state": fields.get("state", "idle") if fields else "lost",
        "started_at": _iso(_float(fields.get("started_at"))), "heartbeat_at": _iso(heartbeat_s),
        "heartbeat_age_s": round(max(0.0, now_s - heartbeat_s), 3),
        "jobs_done": _int(fields.get("jobs_done")) or 0, "jobs_failed": _int(fields.get("jobs_failed")) or 0,
        "claimed": claimed, "current": None}
    job = fields.get("job")
    if job:
        began = _float(fields.get("job_started_at"))
        row["current"] = {"job": job, "run": fields.get("run") or None, "node": fields.get("node") or None,
                          "task": fields.get("task") or None, "attempt": _int(fields.get("attempt")),
                          "started_at": _iso(began),
                          "running_s": round(max(0.0, now_s - began), 3) if began is not None else None,
                          "timeout_s": _float(fields.get("job_timeout_s")) or None}
    return row


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    """A finite number from a Redis field, else None (the field is missing, empty or not a number)."""
    if value is None:
        return None
    try:
        number = float(_text(value))
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    try:
        return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def _rq_time(raw: Any) -> datetime | None:
    """RQ's timestamp (`2026-01-02T03:04:05.678901Z`, UTC) as an aware datetime, or None."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(_text(raw))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
