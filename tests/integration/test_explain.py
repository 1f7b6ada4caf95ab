"""③ Why a rule fired or not, as a real engine records it on a real Redis: the failed path with the value seen
and expected, render errors, the per-rule metrics of matches and misses by reason, ORCH_EXPLAIN_SAMPLE, and a
record's lifetime following the events'."""

from __future__ import annotations

from pathlib import Path

import redis

from orchestrator.cli.wiring import load_project
from orchestrator.events.decisions import decisions_of, sampled
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.workflows.runs import derive_run_id

from ..inproc import Stack
from ..projects import make_project

RULES = """
    rules:
      - {name: eu-orders, type: order.created, match: {data.region: eu}, workflow: note, params: {n: "{{ data.n }}"}}
      - {name: gold, type: order.created, match: {data.customer.tier: [gold, platinum]}, workflow: note}
      - {name: paused, type: order.created, enabled: false, workflow: note}
      - {name: shop-only, type: order.created, source: /shop, workflow: note}
      - {name: typo, type: order.created, workflow: note, params: {n: "{{ data.quantity.value }}"}}
"""
FLOWS = {"explained": """
    from orchestrator import task, workflow

    @task
    def noted(n: int = 0) -> int:
        return n

    @workflow
    def note(n: int = 0):
        noted(n)
"""}
KEYS = Keys()
DAY_S = 86400.0


def stack_with(r: redis.Redis, redis_url: str, tmp_path: Path, **settings: float) -> Stack:
    project = load_project(make_project(tmp_path, rules=RULES, workflows=FLOWS))
    return Stack(r, Settings(redis_url=redis_url, project=tmp_path, **settings), project)


def entry_of(r: redis.Redis, event_id: str) -> str:
    return next(entry.decode() for entry, fields in r.xrange(KEYS.events) if loads(fields[b"e"])["id"] == event_id)


def metric(r: redis.Redis, name: str) -> dict[str, int]:
    return {k.decode().replace("\x1f", "|"): int(v) for k, v in r.hgetall(KEYS.metric(name)).items()}


def test_an_event_records_each_rules_outcome_with_the_failed_path_and_counts_misses_by_reason(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    stack = stack_with(r, redis_url, tmp_path, events_retention_s=2 * DAY_S, run_retention_s=30 * DAY_S)
    stack.emit("order.created", {"region": "us", "n": 3, "customer": {"name": "Ada"}}, source="/mobile", id="o-1")
    stack.emit("order.created", {"region": "eu", "n": 4, "customer": {"tier": "gold"}, "quantity": {"value": 1}},
               source="/shop", id="o-2")
    stack.drain()
    first, second = entry_of(r, "o-1"), entry_of(r, "o-2")

    records = decisions_of(r, KEYS, [first, second])

    typo = derive_run_id("typo", "/mobile", "o-1")
    assert records[first]["rules"] == [  # type: ignore[index]
        {"rule": "eu-orders", "outcome": "not_matched", "reason": "data.region is 'us' (expected 'eu')",
         "stopped_by": "match", "path": "data.region", "seen": "us", "expected": "eu"},
        {"rule": "gold", "outcome": "not_matched", "stopped_by": "match",
         "reason": "data.customer.tier is missing (expected one of 'gold', 'platinum')",
         "path": "data.customer.tier", "missing": True, "expected": ["gold", "platinum"]},
        {"rule": "paused", "outcome": "not_matched", "reason": "the rule is disabled", "stopped_by": "disabled"},
        {"rule": "typo", "outcome": "error", "run": typo,
         "reason": "rule typo: params.n: 'dict object' has no attribute 'quantity'"},
    ], "shop-only, stopped by its source glob, is left out of the record (and counted as a miss)"
    assert [(d["rule"], d["outcome"]) for d in records[second]["rules"]] == [  # type: ignore[index]
        ("eu-orders", "matched"), ("gold", "matched"), ("paused", "not_matched"), ("shop-only", "matched"),
        ("typo", "matched")]
    assert str(stack.engine.store.get(typo).status) == "failed"  # type: ignore[union-attr]

    assert metric(r, "orch_rule_evaluations_total") == {
        "eu-orders|not_matched": 1, "gold|not_matched": 1, "paused|not_matched": 2, "shop-only|not_matched": 1,
        "typo|error": 1, "eu-orders|matched": 1, "gold|matched": 1, "shop-only|matched": 1, "typo|matched": 1}
    assert metric(r, "orch_rule_misses_total") == {
        "eu-orders|match": 1, "gold|match": 1, "paused|disabled": 2, "shop-only|source": 1}
    ttl_s = r.ttl(KEYS.decisions(first))
    assert DAY_S < ttl_s <= 2 * DAY_S, "a record expires with the events (ORCH_EVENTS_RETENTION_S), not the runs"


def test_outside_the_sample_an_event_records_and_counts_only_what_matched(r: redis.Redis, redis_url: str,
                                                                         tmp_path: Path) -> None:
    stack = stack_with(r, redis_url, tmp_path, explain_sample=0.5)
    ids = [f"o-{n}" for n in range(40)]
    chosen = {i for i in ids if sampled("/mobile", i, 0.5)}
    assert 0 < len(chosen) < len(ids)
    for event_id in ids:
        stack.emit("order.created", {"region": "eu", "n": 1}, source="/mobile", id=event_id)
    stack.drain()

    records = decisions_of(r, KEYS, [entry_of(r, i) for i in ids])

    for event_id, record in zip(ids, records.values(), strict=True):
        assert record is not None
        outcomes = [(d["rule"], d["outcome"]) for d in record["rules"]]
        explained = [("gold", "not_matched"), ("paused", "not_matched")] if event_id in chosen else []
        assert outcomes == [("eu-orders", "matched"), *explained, ("typo", "error")], event_id
    misses = len(chosen)
    assert metric(r, "orch_rule_misses_total") == {"gold|match": misses, "paused|disabled": misses,
                                                   "shop-only|source": misses}
    assert metric(r, "orch_rule_evaluations_total") == {
        "eu-orders|matched": 40, "typo|error": 40, "gold|not_matched": misses, "paused|not_matched": misses,
        "shop-only|not_matched": misses}


def test_with_no_sample_an_event_without_a_match_has_no_record(r: redis.Redis, redis_url: str,
                                                               tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules="""
        rules:
          - {name: eu-orders, type: order.created, match: {data.region: eu}, workflow: note}
        """, workflows=FLOWS))
    stack = Stack(r, Settings(redis_url=redis_url, project=tmp_path, explain_sample=0.0), project)
    stack.emit("order.created", {"region": "us"}, source="/mobile", id="o-1")
    stack.drain()

    assert decisions_of(r, KEYS, [entry_of(r, "o-1")]) == {entry_of(r, "o-1"): None}
    assert metric(r, "orch_rule_misses_total") == {} and metric(r, "orch_rule_evaluations_total") == {}
