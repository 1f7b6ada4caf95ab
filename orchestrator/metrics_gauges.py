"""The gauges `orch api` reads live at each scrape: streams, runs in progress, queues, workers, engines.

    gauge                                     labels           read from
    orch_build_info                           version, ...     INFO server
    orch_stream_length                        stream           XLEN
    orch_stream_pending_entries, _lag         stream, group    XINFO GROUPS
    orch_workflow_runs_in_progress                             ZCARD of the running runs' index
    orch_queue_jobs                           queue, state     the queue list, RQ's started/failed registries
    orch_queue_oldest_job_age_seconds         queue            enqueued_at of the job at the queue's head
    orch_queue_capacity                       queue            live, not stopping workers listening on it
    orch_queue_load                           queue            (started + queued) / max(capacity, 1)
    orch_workers                              state            live workers (heartbeat key present), by state
    orch_worker_busy_ratio                                     busy / live workers (0 with none)
    orch_worker_last_seen_timestamp_seconds                    newest worker heartbeat (0: never)
    orch_engine_last_seen_timestamp_seconds                    newest engine heartbeat (0: never)
    orch_flow_holds_pending                                    ZCARD of the due holds of hold-back controls
    orch_slots_held, _waiting, _limit, _keys  kind, name      the slot pools in use (state/slots.py), per rule
                                                               (or workflow): slots held, runs waiting, the
                                                               limit per key, keys in use

A worker process runs one task at a time, so a queue's capacity is the number of live workers listening
on it (`orch worker --concurrency 4` is four). With no worker the load is the number of jobs there
(as if one worker were there): 0 when there is nothing to do, growing with the backlog, so an
autoscaler on `orch_queue_load` scales up from zero and back down; `orch_queue_capacity == 0` says
there is no worker.

Cost: a fixed number of round trips per scrape. The commands grow with the number of queues and of
workers (at most MAX_WORKERS, the most recently seen), never with the keyspace: no SCAN or KEYS.
The queue and worker readings come from the execution backend through `QueueInspector` (executors/).
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from prometheus_client.core import GaugeMetricFamily

from .state.keys import Keys
from .state.slots import per_name, read_pools

__all__ = ["MAX_WORKERS", "WORKER_STATES", "Fleet", "QueueInspector", "QueueStats", "WorkerBeat", "Workers",
           "live_gauges", "queue_load", "summarize"]

MAX_WORKERS = 5000  # workers read per scrape, most recently seen first
WORKER_STATES = ("idle", "busy", "stopping")  # any other value read back from Redis counts as "other"


@dataclass(frozen=True)
class QueueStats:
    """One queue as the execution backend sees it."""

    queue: str
    queued: int
    started: int
    failed: int
    oldest_enqueued_at_s: float | None = None  # epoch seconds; None when nothing waits


@dataclass(frozen=True)
class WorkerBeat:
    """What a live worker's heartbeat says: its state, whether it runs a task, the queues it listens on."""

    state: str
    busy: bool
    queues: tuple[str, ...]


@dataclass(frozen=True)
class Workers:
    """The live workers (at most MAX_WORKERS) and the newest heartbeat of any worker, live or not."""

    live: list[WorkerBeat] = field(default_factory=list)
    last_seen_s: float = 0.0


class QueueInspector(Protocol):
    """Reads queues and worker heartbeats from the execution backend (implemented in executors/)."""

    def queue_stats(self) -> list[QueueStats]:
        """Every orch queue."""
        ...

    def live_workers(self, limit: int) -> Workers:
        """The live workers, the `limit` most recently seen at most."""
        ...


@dataclass(frozen=True)
class Fleet:
    """Live workers summed up: how many in each state, busy ratio, and capacity per queue."""

    by_state: dict[str, int]
    busy_ratio: float
    capacity: dict[str, int]


def summarize(workers: Iterable[WorkerBeat]) -> Fleet:
    """Pure: counts by state (unknown states as "other"), busy / live (0 with none), and per queue the
    workers that may take its next job (live and not stopping)."""
    by_state: Counter[str] = Counter({state: 0 for state in WORKER_STATES})
    capacity: Counter[str] = Counter()
    live = busy = 0
    for worker in workers:
        live += 1
        busy += worker.busy
        by_state[worker.state if worker.state in WORKER_STATES else "other"] += 1
        if worker.state != "stopping":
            capacity.update(set(worker.queues))
    return Fleet(dict(by_state), busy / live if live else 0.0, dict(capacity))


def queue_load(queued: int, running: int, capacity: int) -> float:
    """Pure: work on a queue per worker that can take it; with no worker, the work itself."""
    return (queued + running) / max(capacity, 1)


def live_gauges(client: redis.Redis, keys: Keys, queues: QueueInspector | None, version: str,
                clock: Callable[[], float] = time.time) -> Iterator[Any]:
    """Every live gauge; raises redis.RedisError when Redis cannot be read."""
    yield _build_info(client, version)
    yield from _stream_gauges(client, keys)
    running = GaugeMetricFamily("orch_workflow_runs_in_progress", "Workflow runs not finished yet.")
    running.add_metric([], client.zcard(keys.runs_by_status("running")))
    yield running
    holds = GaugeMetricFamily("orch_flow_holds_pending", "Holds of debounce, batch and throttle rules waiting to "
                              "start their run.")
    holds.add_metric([], client.zcard(keys.flow_due))
    yield holds
    yield from _slot_gauges(client, keys)
    yield _last_seen("orch_engine_last_seen_timestamp_seconds",
                     "When an engine last said it was alive (Unix time; 0: no engine ever did).",
                     _newest_score_s(client, keys.engines))
    if queues is not None:
        workers = queues.live_workers(MAX_WORKERS)
        fleet = summarize(workers.live)
        yield from _queue_gauges(queues.queue_stats(), fleet, clock())
        yield from _worker_gauges(fleet, workers.last_seen_s)


def _slot_gauges(client: redis.Redis, keys: Keys) -> Iterator[GaugeMetricFamily]:
    labels = ["kind", "name"]
    families = {
        "held": GaugeMetricFamily("orch_slots_held", "Slots held by running runs, summed over the keys of a rule's "
                                  "concurrency or singleton (kind rule, singleton) or a workflow's limit.", labels=labels),
        "waiting": GaugeMetricFamily("orch_slots_waiting", "Runs waiting (queued) for a slot.", labels=labels),
        "limit": GaugeMetricFamily("orch_slots_limit", "Slots per key (the concurrency limit).", labels=labels),
        "keys": GaugeMetricFamily("orch_slots_keys", "Keys with a slot held or a run waiting.", labels=labels),
    }
    for row in per_name(read_pools(client, keys, detail=False)):
        for name, family in families.items():
            family.add_metric([row["kind"], row["name"]], row[name])
    yield from families.values()


def _build_info(client: redis.Redis, version: str) -> GaugeMetricFamily:
    info = GaugeMetricFamily("orch_build_info", "orch build and environment.",
                             labels=["version", "python", "redis_version"])
    server = client.info("server")
    info.add_metric([version, platform.python_version(), str(server.get("redis_version", ""))], 1)
    return info


def _stream_gauges(client: redis.Redis, keys: Keys) -> Iterator[GaugeMetricFamily]:
    length = GaugeMetricFamily("orch_stream_length", "Entries held in each stream.", labels=["stream"])
    pending = GaugeMetricFamily("orch_stream_pending_entries", "Entries delivered to a consumer but not acknowledged.",
                                labels=["stream", "group"])
    lag = GaugeMetricFamily("orch_stream_lag", "Entries not yet delivered to the group (Redis >= 7.0).",
                            labels=["stream", "group"])
    for name, stream in (("events", keys.events), ("results", keys.results), ("dead_letters", keys.dead_letters)):
        length.add_metric([name], client.xlen(stream))
        for group in _groups(client, stream):
            raw = group.get("name")
            group_name = raw.decode() if isinstance(raw, bytes) else str(raw)
            pending.add_metric([name, group_name], int(group.get("pending", 0)))
            if group.get("lag") is not None:
                lag.add_metric([name, group_name], int(group["lag"]))
    yield length
    yield pending
    yield lag


def _groups(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    try:
        return list(client.xinfo_groups(stream))
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():  # no stream yet
            return []
        raise


def _newest_score_s(client: redis.Redis, key: str) -> float:
    newest = client.zrevrange(key, 0, 0, withscores=True)
    return float(newest[0][1]) / 1000 if newest else 0.0


def _last_seen(name: str, help: str, value_s: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help)
    family.add_metric([], value_s)
    return family


def _queue_gauges(stats: list[QueueStats], fleet: Fleet, now_s: float) -> Iterator[GaugeMetricFamily]:
    jobs = GaugeMetricFamily("orch_queue_jobs", "Jobs in each orch queue, by state: queued (the queue's depth), "
                             "started (running), failed.", labels=["queue", "state"])
    age = GaugeMetricFamily("orch_queue_oldest_job_age_seconds", "How long the job at the head of the queue (the "
                            "next one a worker takes) has waited; 0 when the queue is empty.", labels=["queue"])
    capacity = GaugeMetricFamily("orch_queue_capacity", "Live workers listening on the queue and not stopping: "
                                 "the jobs it can run at once.", labels=["queue"])
    load = GaugeMetricFamily("orch_queue_load", "(started + queued jobs) / max(capacity, 1): above 1, work waits "
                             "for a worker. For autoscaling on load.", labels=["queue"])
    for row in stats:
        for state in ("queued", "started", "failed"):
            jobs.add_metric([row.queue, state], getattr(row, state))
        waited = 0.0 if row.oldest_enqueued_at_s is None or not row.queued else now_s - row.oldest_enqueued_at_s
        age.add_metric([row.queue], max(0.0, waited))
        workers = fleet.capacity.get(row.queue, 0)
        capacity.add_metric([row.queue], workers)
        load.add_metric([row.queue], queue_load(row.queued, row.started, workers))
    yield from (jobs, age, capacity, load)


def _worker_gauges(fleet: Fleet, last_seen_s: float) -> Iterator[GaugeMetricFamily]:
    by_state = GaugeMetricFamily("orch_workers", "Live workers (heartbeat not expired), by state.", labels=["state"])
    for state, count in sorted(fleet.by_state.items()):
        by_state.add_metric([state], count)
    yield by_state
    ratio = GaugeMetricFamily("orch_worker_busy_ratio", "Live workers running a task / live workers (0 with none).")
    ratio.add_metric([], fleet.busy_ratio)
    yield ratio
    yield _last_seen("orch_worker_last_seen_timestamp_seconds",
                     "When a worker last sent a heartbeat (Unix time; 0: no worker registered).", last_seen_s)
