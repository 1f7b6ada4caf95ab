"""Slot pools, pure (workflows/pools.py, effects.py, rules/controls.py): places in line, priorities, leases,
claims from rules, and what a batch takes, waits for, skips and cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from orchestrator.events.decisions import Decision
from orchestrator.events.summary import ITEMS_MAX, STR_MAX_CHARS
from orchestrator.rules.controls import RunControls
from orchestrator.rules.expr import ExpressionError
from orchestrator.rules.model import RuleConfig
from orchestrator.workflows.effects import Effects, Resources
from orchestrator.workflows.pools import (
    PRIORITY_MAX_S,
    PRIORITY_MIN_S,
    Claim,
    clamp_priority,
    lease_expired,
    lease_until_ms,
    pool_id,
    wait_score,
    workflow_claim,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
T0 = int(NOW.timestamp() * 1000)


def _line(*entries: tuple[str, int, int, int]) -> list[str]:
    """The order runs start in: (name, arrival ms, sequence, priority) sorted by place in line."""
    return [name for name, *_ in sorted(entries, key=lambda e: wait_score(e[1], e[2], e[3]))]


def test_a_higher_priority_goes_ahead_of_runs_that_arrived_up_to_that_many_seconds_before() -> None:
    assert _line(("old", T0, 0, 0), ("urgent", T0 + 59_000, 0, 60)) == ["urgent", "old"]
    assert _line(("older", T0, 0, 0), ("urgent", T0 + 61_000, 0, 60)) == ["older", "urgent"], "no starvation"
    assert _line(("low", T0, 0, -10), ("later", T0 + 5_000, 0, 0)) == ["later", "low"]


def test_equal_priorities_start_in_arrival_order_within_one_millisecond_too() -> None:
    assert _line(("c", T0, 2, 5), ("a", T0, 0, 5), ("b", T0, 1, 5), ("d", T0 + 1, 0, 5)) == ["a", "b", "c", "d"]


def test_priorities_are_whole_seconds_clamped_and_must_be_numbers() -> None:
    assert clamp_priority(10_000) == PRIORITY_MAX_S == 600 and clamp_priority(-10_000) == PRIORITY_MIN_S == -600
    assert clamp_priority(12.9) == 12
    for bad in (True, "5", None, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            clamp_priority(bad)


def test_a_lease_runs_out_lease_s_after_it_was_taken_or_renewed() -> None:
    until = lease_until_ms(NOW, 30)
    assert until == T0 + 30_000
    assert not lease_expired(until, NOW + timedelta(seconds=29.999))
    assert lease_expired(until, NOW + timedelta(seconds=30))


def test_a_claim_read_back_from_redis_is_checked() -> None:
    claim = Claim(pool_id("rule", "r", "acme"), 2, "rule", "r", "acme", 30, "wait")
    assert Claim.from_record(claim.record()) == claim
    for junk in (None, [], {"pool": 1}, {**claim.record(), "limit": 0}, {**claim.record(), "limit": True},
                 {**claim.record(), "mode": "explode"}, {**claim.record(), "priority": "high"}):
        assert Claim.from_record(junk) is None
    assert Claim.from_record({**claim.record(), "priority": 10_000}).priority == 600  # type: ignore[union-attr]


def test_pool_ids_hash_the_key_so_any_value_makes_a_short_id() -> None:
    assert pool_id("rule", "r", "a") != pool_id("rule", "r", "b") != pool_id("singleton", "r", "b")
    assert len(pool_id("rule", "r", "x" * 10_000)) < 40 and ":" not in pool_id("rule", "r", "a:b")


# -- claims from a rule's controls ---------------------------------------------------------------------------


def _controls(**fields: object) -> RunControls:
    config = RuleConfig.model_validate({"name": "r", "type": "t", "workflow": "w", **fields})
    controls = RunControls.from_config(config.concurrency, config.singleton, config.priority)
    assert controls is not None
    return controls


def _activation(data: object) -> dict[str, object]:
    return {"event": {"type": "t", "data": data}, "data": data}


def test_a_concurrency_key_names_the_pool_and_the_priority_its_place() -> None:
    controls = _controls(concurrency={"key": "data.customer", "limit": 3}, priority="data.tier == 'gold' ? 120 : 0")
    claim, note = controls.claim("r", "w", None, _activation({"customer": "acme", "tier": "gold"}))
    assert claim == Claim(pool_id("rule", "r", "acme"), 3, "rule", "r", "acme", 120, "wait") and note is None
    numeric, _ = controls.claim("r", "w", None, _activation({"customer": 42, "tier": "x"}))
    assert numeric is not None and numeric.key == "42" and numeric.priority == 0
    whole, _ = _controls(concurrency={"limit": 1}).claim("r", "w", None, _activation({}))
    assert whole is not None and whole.key == "" and whole.pool == pool_id("rule", "r", "")


def test_a_key_that_cannot_be_evaluated_is_an_error_and_a_priority_that_cannot_counts_as_zero() -> None:
    controls = _controls(singleton={"key": "event.data.customer", "mode": "skip"}, priority="data.rank")
    with pytest.raises(ExpressionError, match="singleton key cannot be evaluated.*no such key"):
        controls.claim("r", "w", None, _activation({"rank": 1}))
    claim, note = controls.claim("r", "w", None, _activation({"customer": "c", "rank": "high"}))
    assert claim is not None and claim.priority == 0 and claim.mode == "skip" and "counted as 0" in (note or "")


def test_a_priority_alone_orders_the_line_of_the_workflows_limit() -> None:
    claim, _ = _controls(priority=50).claim("r", "w", 4, _activation(None))
    assert claim == Claim("workflow/w", 4, "workflow", "w", priority=50)
    assert _controls(priority=50).claim("r", "w", None, _activation(None)) == (None, None)


@pytest.mark.parametrize("fields, error", [
    ({"concurrency": {"key": "data.a", "limit": 1}, "singleton": {"key": "data.a", "mode": "skip"}}, "not both"),
    ({"concurrency": {"key": "data.a ==", "limit": 1}}, "not a valid CEL expression"),
    ({"concurrency": {"key": "data.a", "limit": 0}}, "greater than or equal to 1"),
    ({"concurrency": {"key": "data.a", "limit": 2, "keys": 1}}, "Extra inputs"),
    ({"singleton": {"key": "data.a", "mode": "latest"}}, "skip"),
    ({"priority": True}, "valid integer"),
    ({"priority": "data.(("}, "not a valid CEL expression"),
])
def test_bad_controls_are_refused(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RuleConfig.model_validate({"name": "r", "type": "t", "workflow": "w", **fields})


# -- what a batch takes ---------------------------------------------------------------------------------------


def test_a_full_pool_puts_runs_in_line_and_cancel_previous_cancels_holders_and_waiters_once() -> None:
    claim = Claim(pool_id("singleton", "r", "k"), 1, "singleton", "r", "k", mode="cancel_previous")
    resources, effects = Resources(free={claim.pool: 1}), Effects()

    assert resources.take_slot(claim, "run1", (T0, 0), effects)
    assert not resources.take_slot(claim, "run2", (T0, 1), effects)
    assert not resources.take_slot(claim, "run3", (T0, 2), effects)

    assert effects.cancel == {"run1": "singleton r", "run2": "singleton r"}
    assert [(run, outcome, detail["cancelled"]) for run, (outcome, _, detail) in effects.slotted.items()] == [
        ("run2", "replaced", ["run1"]), ("run3", "replaced", ["run2"])]
    assert [run for _, run, _ in effects.wait] == ["run2", "run3"] and effects.occupy == [(claim, "run1")]


def test_a_run_with_no_claim_always_runs_and_a_workflow_without_a_limit_has_none() -> None:
    assert Resources().take_slot(None, "r", (T0, 0), Effects())
    assert workflow_claim("w", None) is None


def test_a_decisions_detail_is_kept_bounded_and_flat() -> None:
    detail = {"key": "k" * 1000, "cancelled": [f"r{i}" for i in range(50)], "limit": 2,
              **{f"x{i}": i for i in range(20)}}
    out = Decision("r", "waiting", "run", "why", detail).to_dict()["detail"]
    assert len(out) == ITEMS_MAX + 1 and len(out["key"]) == STR_MAX_CHARS and out["limit"] == 2
    assert out["cancelled"] == [f"r{i}" for i in range(ITEMS_MAX)] + ["… 45 more"]
    assert Decision.from_dict({"rule": "r", "outcome": "singleton_skipped", "detail": {"key": "a"}}) == Decision(
        "r", "singleton_skipped", detail={"key": "a"})
