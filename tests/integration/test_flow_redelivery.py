"""Hold-back flow control when the same entries are processed again, or read back wrong: after a commit
(its EXEC reply lost, a reclaim race), across a reload that drops the control, with a memo or key that is
not what the engine wrote. Each event is still held, merged or counted once (promise 1), and a bad
answer fails its entry, never the engine loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from executors.dispatch import RQDispatcher
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.flow.decide import digest
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from tests.integration.test_flow_hold import RULES, WORKFLOWS, Pair, carried
from tests.projects import make_project


@pytest.fixture
def pair(r: redis.Redis, tmp_path: Path, redis_url: str) -> Pair:
    return Pair(r, tmp_path, redis_url)


def test_entries_processed_again_after_their_commit_are_merged_once(pair: Pair) -> None:
    pair.emit("cust.logged", "k1", "b1")
    pair.emit("cust.called", "x", "t1")
    engine = pair.engines[0]
    entries = engine.consumer.read(block=False)
    engine.process(entries)  # committed: b1 merged into a batch hold, t1 passed; both acknowledged
    engine.process(entries)  # what step() does with Engine._unfinished when the EXEC reply was lost
    assert pair.release_at(10) == 1
    assert [carried(run) for run in pair.by_rule("batched")] == [["b1"]]
    assert len(pair.by_rule("throttled")) == 1


def test_an_engine_that_stalled_past_a_reclaim_decides_as_the_one_that_committed(pair: Pair) -> None:
    pair.emit("cust.updated", "c1", "d1")
    stalled = Engine(pair.r, pair.settings, pair.project, RQDispatcher(pair.r, pair.settings), consumer="stalled",
                     clock=pair.clock)
    stalled.consumer.ensure_groups()
    entries = stalled.consumer.read(block=False)  # read, then stalled past engine_claim_idle_s ...
    survivor = pair.engines[0]
    survivor._settings = Settings(**{**pair.settings.model_dump(), "engine_claim_idle_s": 0.0001})
    survivor.maintain(force=True)  # ... so another engine reclaims the entry, decides and commits
    pair.settle()
    assert pair.r.xpending("orch:events", "engine")["pending"] == 0
    stalled.process(entries)  # the stalled engine wakes up and plans the entry it read
    assert pair.release_at(10) == 1
    assert [carried(run) for run in pair.by_rule("debounced")] == [["d1"]]


@pytest.mark.parametrize("memo", ["[1]", "not json", '{"a": "explode"}', '{"a": "merge"}'])
def test_a_memo_that_is_not_a_decision_fails_its_entry_not_the_engine(pair: Pair, memo: str) -> None:
    pair.r.set(Keys().flow_memo(digest("batched", "/crm", "b1")), memo)
    pair.emit("cust.logged", "k1", "b1")
    pair.emit("cust.updated", "k2", "good")  # another rule's event in the same batch
    pair.engines[0].step(block=False)
    error = pair.r.hget("orch:engine:errors", pair.entries["b1"])
    assert error is not None and error.decode().startswith("flow control of rule batched: ValueError")
    assert pair.r.xpending("orch:events", "engine")["pending"] == 1  # b1: retried, then dead-lettered
    assert pair.release_at(10) == 1
    assert [carried(run) for run in pair.by_rule("debounced")] == [["good"]]


def test_keys_alike_in_their_first_200_characters_have_their_own_holds(pair: Pair) -> None:
    stem = "c" * 250
    for event_id, customer in [("d1", stem + "-a"), ("d2", stem + "-b"), ("d3", stem + "-a")]:
        pair.emit("cust.updated", customer, event_id)
    pair.settle()
    assert pair.release_at(10) == 2
    assert sorted(carried(run) for run in pair.by_rule("debounced")) == [["d1", "d3"], ["d2"]]


def test_an_event_that_started_its_run_before_a_reload_added_the_control_is_not_held_again(
        pair: Pair, tmp_path: Path) -> None:
    without = RULES.replace("        debounce: {key: data.customer, period_s: 10, max_wait_s: 30}\n", "")
    assert without != RULES
    root = make_project(tmp_path / "without", rules=without, workflows=WORKFLOWS)
    before = Engine(pair.r, pair.settings, load_project(root), RQDispatcher(pair.r, pair.settings), consumer="before",
                    clock=pair.clock)
    pair.emit("cust.updated", "c1", "d1")
    entries = before.consumer.read(block=False)
    before.process(entries)  # committed under the version without the debounce: d1's run started at once
    pair.engines[0].process(entries)  # processed again (a lost EXEC reply) under the version with it
    pair.settle()
    assert pair.release_at(30) == 0, "the event joined no hold"
    assert [run.event.id for run in pair.by_rule("debounced")] == ["d1"] and pair.by_rule("debounced")[0].flow is None
