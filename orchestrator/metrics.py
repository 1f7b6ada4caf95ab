"""Every Prometheus metric orch exports, and how it is recorded.

Counters and histograms that several processes contribute to (publishers, engines, workers) live in
Redis hashes, one per metric (`<prefix>:metrics:<name>`), updated in the same transaction as the state
change they count; `RedisCollector` reads them at scrape time, so one scrape of any `orch api` sees the
whole fleet and nothing is lost when a process restarts. Gauges (streams, queues, workers, engines) are
read live at scrape time (metrics_gauges.py); `orch_redis_up` says whether that scrape could read Redis,
and when it could not, the scrape still answers with it alone. Names follow Prometheus conventions:
`orch_` prefix, base units, `_total` on counters only, no unbounded labels.
Nothing here touches Redis or a registry at import time.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .metrics_gauges import QueueInspector, live_gauges
from .state.keys import Keys
from .state.ruleset import active_version, read_views

__all__ = [
    "ALL_METRICS",
    "CHAINS_CUT",
    "PROJECT_RELOADS",
    "EVENTS_DEAD_LETTERED",
    "EVENTS_RECEIVED",
    "EVENT_TO_RUN",
    "FLOW_EVENTS",
    "FLOW_RELEASES",
    "REDIS_ERRORS",
    "RULE_EVALUATIONS",
    "RULE_MISSES",
    "RUNS_FINISHED",
    "RUNS_STARTED",
    "RUN_DURATION",
    "SCHEDULE_OVERLAPS",
    "SCHEDULE_TICKS",
    "SLOT_EVENTS",
    "TASKS_FINISHED",
    "TASK_DURATION",
    "TASK_WAIT",
    "WEBHOOK_REQUESTS",
    "CounterDef",
    "HistogramDef",
    "MetricsBatch",
    "QueueInspector",
    "RedisCollector",
    "miss_reason",
]

log = logging.getLogger(__name__)

LABEL_SEP = "\x1f"
BUCKET_SEP = "\x1e"
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class CounterDef:
    name: str
    help: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class HistogramDef:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = DURATION_BUCKETS_S


EVENTS_RECEIVED = CounterDef(
    "orch_events_received_total", "Events offered to orch, by trigger and result (accepted, duplicate, rejected).",
    ("trigger", "result"))
EVENTS_DEAD_LETTERED = CounterDef(
    "orch_events_dead_lettered_total", "Stream entries moved to the dead-letter stream.", ("stream",))
RULE_EVALUATIONS = CounterDef(
    "orch_rule_evaluations_total", "Rules evaluated against an event of a type they listen to, by result "
    "(not_matched: of the events in the ORCH_EXPLAIN_SAMPLE sample, and of those only the rules explained: "
    "at most 50 per event, near misses first).",
    ("rule", "result"))
RUNS_STARTED = CounterDef("orch_workflow_runs_started_total", "Workflow runs created.", ("workflow",))
RUNS_FINISHED = CounterDef("orch_workflow_runs_finished_total", "Workflow runs finished, by status.",
                           ("workflow", "status"))
RUN_DURATION = HistogramDef("orch_workflow_run_duration_seconds", "Time from run creation to its end.",
                            ("workflow", "status"))
TASKS_FINISHED = CounterDef("orch_tasks_finished_total", "Task executions finished, by status.",
                            ("workflow", "task", "status"))
TASK_DURATION = HistogramDef("orch_task_duration_seconds", "Execution time of one task attempt.",
                             ("workflow", "task", "status"))
TASK_WAIT = HistogramDef("orch_task_wait_seconds", "Time from a task's dispatch to its start on a worker.",
                         ("queue",))
EVENT_TO_RUN = HistogramDef("orch_event_to_run_seconds", "Time from an event's arrival in the stream (its entry id) "
                            "to the creation of the run it started.", ("workflow",))
SCHEDULE_TICKS = CounterDef(
    "orch_schedule_ticks_total", "Cron ticks decided, by result: fired on time, caught_up after downtime, missed.",
    ("schedule", "result"))
SCHEDULE_OVERLAPS = CounterDef(
    "orch_schedule_overlaps_total", "Ticks that found the schedule's previous run still running, by action taken "
    "(skipped, queued, released).", ("schedule", "action"))

CHAINS_CUT = CounterDef(
    "orch_chains_cut_total", "Runs not started because their event's chain was deeper than ORCH_CHAIN_MAX_DEPTH "
    "(each recorded as a failed run), by rule.", ("rule",))

WEBHOOK_REQUESTS = CounterDef(
    "orch_webhook_requests_total", "Webhook requests, by endpoint and outcome (accepted, duplicate, challenge, "
    "unauthorized, invalid, too_large, unknown_hook, unavailable).", ("hook", "result"))

REDIS_ERRORS = CounterDef(
    "orch_redis_errors_total", "Redis errors a long-running process rode out (it backed off and carried on), by "
    "role and error (connection, timeout, oom, readonly, busy, loading, noperm, noreplicas, misconf, auth, contention, other).",
    ("role", "error"))

MISS_REASONS = ("disabled", "source", "match", "if", "other")
RULE_MISSES = CounterDef(
    "orch_rule_misses_total", "Rules that listen to an event's type but did not match it, by what stopped them "
    "(disabled, source, match, if, other); of the events in the ORCH_EXPLAIN_SAMPLE sample only, and of those "
    "only the rules explained: at most 50 per event, near misses first.",
    ("rule", "reason"))


def miss_reason(stopped_by: str | None) -> str:
    """The bounded `reason` label of a rule's miss: what stopped it (MatchResult.stopped_by), else other."""
    return stopped_by if stopped_by in MISS_REASONS else "other"

FLOW_EVENTS = CounterDef(
    "orch_flow_events_total", "Events a rule's hold-back control decided on, by rule, control (debounce, batch, "
    "throttle, rate_limit) and action: passed (started at once), delayed (throttled), merged (into a debounce or "
    "batch hold), dropped (rate-limited).", ("rule", "control", "action"))
FLOW_RELEASES = CounterDef(
    "orch_flow_holds_released_total", "Holds of hold-back controls released to start their run, by rule, control and "
    "reason (quiet, max_wait, timeout, full, bound, throttle).", ("rule", "control", "reason"))
SLOT_EVENTS = CounterDef(
    "orch_slot_events_total", "What slot pools did to runs, by pool kind (rule, singleton, workflow), rule or "
    "workflow name and action: waited (created queued for a slot), skipped (singleton skip: no run), replaced "
    "(singleton cancel_previous), expired (a lease ran out).", ("kind", "name", "action"))
PROJECT_RELOADS = CounterDef(
    "orch_project_reloads_total", "Rule-set versions engines and `orch reload` tried to take up, by result: ok "
    "(switched to it or published it), refused (the project is invalid: the old version keeps running), behind "
    "(an engine cannot load the active version with its copy of the workflows).", ("result",))

ALL_METRICS: tuple[CounterDef | HistogramDef, ...] = (
    EVENTS_RECEIVED, EVENTS_DEAD_LETTERED, RULE_EVALUATIONS, RUNS_STARTED, RUNS_FINISHED, RUN_DURATION,
    TASKS_FINISHED, TASK_DURATION, TASK_WAIT, EVENT_TO_RUN, SCHEDULE_TICKS, SCHEDULE_OVERLAPS, WEBHOOK_REQUESTS, REDIS_ERRORS,
    CHAINS_CUT,
    RULE_MISSES,
    FLOW_EVENTS, FLOW_RELEASES,
    SLOT_EVENTS,
    PROJECT_RELOADS,
)


def counter_field(*labels: str) -> str:
    """The hash field of one label combination."""
    return LABEL_SEP.join(labels)


@functools.lru_cache(maxsize=4096)
def _histogram_keys(name: str, buckets: int, labels: tuple[str, ...]) -> tuple[list[tuple[str, str]], tuple[str, str],
                                                                          tuple[str, str]]:
    """The (name, field) keys of one label combination of histogram `name`: per bucket (and past the last),
    its count and its sum."""
    base = counter_field(*labels)
    return ([(name, f"{base}{BUCKET_SEP}{i}") for i in range(buckets + 1)], (name, f"{base}{BUCKET_SEP}count"),
            (name, f"{base}{BUCKET_SEP}sum"))


class MetricsBatch:
    """Increments gathered while a batch is planned, written with the batch's transaction."""

    def __init__(self) -> None:
        self._ints: Counter[tuple[str, str]] = Counter()
        self._floats: defaultdict[tuple[str, str], float] = defaultdict(float)

    def inc(self, counter: CounterDef, *labels: str, n: int = 1) -> None:
        self._ints[(counter.name, counter_field(*labels))] += n

    def observe(self, histogram: HistogramDef, value_s: float, *labels: str) -> None:
        buckets, count, total = _histogram_keys(histogram.name, len(histogram.buckets), labels)
        bounds = histogram.buckets  # the first bound >= value_s (none: the last, +Inf, field), as a scan would
        index = bisect.bisect_left(bounds, value_s) if value_s == value_s else len(bounds)  # NaN: in none
        self._ints[buckets[index]] += 1
        self._ints[count] += 1
        self._floats[total] += max(value_s, 0.0)

    def flush(self, pipe: Any, keys: Keys) -> None:
        """Queue the increments on `pipe` (a pipeline or transaction)."""
        for (name, field), n in self._ints.items():
            pipe.hincrby(keys.metric(name), field, n)
        for (name, field), value in self._floats.items():
            pipe.hincrbyfloat(keys.metric(name), field, value)

    def merge(self, other: MetricsBatch) -> None:
        """Add `other`'s increments to this batch."""
        self._ints.update(other._ints)
        for key, value in other._floats.items():
            self._floats[key] += value

    def __bool__(self) -> bool:
        return bool(self._ints or self._floats)


class RedisCollector(Collector):
    """Exports the Redis-held counters and histograms plus live gauges, at scrape time."""

    def __init__(self, client: redis.Redis, keys: Keys, queues: QueueInspector | None = None,
                 version: str = "0") -> None:
        self._redis = client
        self._keys = keys
        self._queues = queues
        self._version = version
        self._up = True  # whether the last scrape could read Redis (a warning on each change, not each scrape)

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("orch_redis_up", "1 when this scrape could read orch's state from Redis; 0 when it "
                               "could not (the other orch_ metrics are then missing from the scrape).")
        try:
            families = [*self._stored(), *live_gauges(self._redis, self._keys, self._queues, self._version),
                        ruleset_info(self._redis, self._keys)]
        except redis.RedisError as exc:
            if self._up:
                log.warning("metrics: cannot read Redis (%s: %s); /metrics reports orch_redis_up 0 until it can",
                            type(exc).__name__, exc)
            self._up = False
            up.add_metric([], 0)
            yield up
            return
        if not self._up:
            log.info("metrics: Redis can be read again")
        self._up = True
        up.add_metric([], 1)
        yield up
        yield from families

    def _stored(self) -> Iterator[Any]:
        """The counters and histograms kept in Redis."""
        pipe = self._redis.pipeline(transaction=False)
        for metric in ALL_METRICS:
            pipe.hgetall(self._keys.metric(metric.name))
        hashes = pipe.execute()
        for metric, raw in zip(ALL_METRICS, hashes, strict=True):
            values = {k.decode(): v.decode() for k, v in raw.items()}
            if isinstance(metric, CounterDef):
                yield _counter_family(metric, values)
            else:
                yield _histogram_family(metric, values)


def _labels(field: str, width: int) -> list[str]:
    parts = field.split(LABEL_SEP) if width else []
    return parts if len(parts) == width else (parts + [""] * width)[:width]


def _counter_family(metric: CounterDef, values: dict[str, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(metric.name.removesuffix("_total"), metric.help, labels=list(metric.labels))
    for field, value in sorted(values.items()):
        family.add_metric(_labels(field, len(metric.labels)), float(value))
    return family


def _histogram_family(metric: HistogramDef, values: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    series: dict[str, dict[str, str]] = {}
    for field, value in values.items():
        base, _, part = field.rpartition(BUCKET_SEP)
        series.setdefault(base, {})[part] = value
    for base, parts in sorted(series.items()):
        family.add_metric(_labels(base, len(metric.labels)), _cumulative(metric.buckets, parts),
                          float(parts.get("sum", 0)))
    return family


def _cumulative(bounds: Sequence[float], parts: dict[str, str]) -> list[tuple[str, float]]:
    total = 0.0
    buckets = []
    for index, bound in enumerate([*bounds, float("inf")]):
        total += float(parts.get(str(index), 0))
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
    return buckets


def ruleset_info(client: redis.Redis, keys: Keys) -> GaugeMetricFamily:
    """`orch_ruleset_info`: 1 per engine (seen in the last day), labelled with the rule-set version it runs,
    the active one and its state (ok, behind); the active version alone under engine "" when no engine
    reported yet."""
    info = GaugeMetricFamily("orch_ruleset_info", "The rule-set version each engine runs (engine/reload.py) and the "
                             "active one; state behind: the engine cannot load the active version and commits "
                             "nothing.", labels=["engine", "version", "active", "state"])
    active = active_version(client, keys) or ""
    views = read_views(client, keys)
    for view in views.values():
        info.add_metric([view.engine, view.version, active, view.state], 1)
    if not views and active:
        info.add_metric(["", active, active, "ok"], 1)
    return info
