"""What hold-back flow control leaves behind: decision records with their detail, the released run's events
and how `orch runs show` names them, the release entry read back from untrusted bytes. Pure: no Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.cli.output import _held_events
from orchestrator.events.decisions import Decision, encode, read_record
from orchestrator.events.envelope import EventError
from orchestrator.events.summary import ITEMS_MAX, STR_MAX_CHARS
from orchestrator.flow.decide import hold_run_id, read_answer
from orchestrator.flow.release import Released
from orchestrator.jsonutil import dumps
from orchestrator.workflows.advance import _results
from orchestrator.workflows.lifecycle import skeleton
from orchestrator.workflows.runs import EventRef, Run, derive_run_id
from orchestrator.workflows.spec import NodeSpec, WorkflowSpec, build_spec

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_a_decision_keeps_a_bounded_detail_through_the_record() -> None:
    detail = {"control": "debounce", "key": "k" * 1000, "nested": {"no": 1}, 3: "not a string key",
              **{f"extra{i}": i for i in range(20)}}
    record = read_record(encode([Decision("r", "debounced", "run1", "why", detail)], event={"id": "e"}, depth=0,
                                at=NOW))
    assert record is not None
    (decision,) = record["rules"]
    assert decision["outcome"] == "debounced" and decision["run"] == "run1"
    assert decision["detail"]["control"] == "debounce" and len(decision["detail"]["key"]) == STR_MAX_CHARS
    assert len(decision["detail"]) == ITEMS_MAX + 1 and decision["detail"]["…"] == f"{len(detail) - ITEMS_MAX} more keys"


@pytest.mark.parametrize("outcome", ["throttled", "debounced", "batched", "rate_limited"])
def test_the_flow_outcomes_read_back(outcome: str) -> None:
    assert Decision.from_dict({"rule": "r", "outcome": outcome}) == Decision("r", outcome)


def test_a_hold_run_id_is_stable_and_apart_from_event_run_ids() -> None:
    assert hold_run_id("r", "0000000000000001") == hold_run_id("r", "0000000000000001")
    assert hold_run_id("r", "0000000000000001") != hold_run_id("r", "0000000000000002")
    assert hold_run_id("r", "x") != derive_run_id("r", "", "x")


def _spec() -> WorkflowSpec:
    return build_spec("flow", [], [NodeSpec(name="a", task="a")])


def test_a_released_run_keeps_its_events_apart_and_names_them() -> None:
    held = [{"entry_id": f"1-{i}", "event": {"id": f"e{i}", "source": "/s", "type": "t", "data": {"i": i}}}
            for i in range(12)]
    run = skeleton("r1", _spec(), "rule", EventRef("e11", "/s", "t"), {}, NOW)
    run.flow, run.events = {"control": "debounce", "hold": "h1", "key": "c1", "reason": "quiet", "events": 12}, held
    fields = {k.encode(): v for k, v in run.to_fields(spec=True).items()}
    assert b"e0" not in dumps(run.meta_dict()), "the events stay out of the meta written on every change"
    back = Run.from_fields(fields)
    assert back.events == held and back.flow == run.flow
    shown = back.to_dict()
    assert shown["events"][0] == {"entry_id": "1-0", "id": "e0", "source": "/s", "type": "t"}
    text = _held_events(shown)
    assert "12 event(s) by debounce of key 'c1', released (quiet): e0 (1-0), " in text and "and 2 more" in text
    assert [e["data"] for e in _results(back)["$events"]][:2] == [{"i": 0}, {"i": 1}]


def test_a_run_without_a_hold_has_its_one_event_as_events() -> None:
    run = skeleton("r1", _spec(), "rule", EventRef("e", "/s", "t"), {}, NOW, event_data={"x": 1})
    assert _results(run)["$events"] == [{"id": "e", "source": "/s", "type": "t", "data": {"x": 1}}]


def test_a_release_entry_is_checked_field_by_field() -> None:
    event = {"specversion": "1.0", "id": "e1", "source": "/s", "type": "t", "data": {}}
    meta = {"hold": "h", "rule": "r", "kind": "batch", "key": "", "reason": "full", "depth": 2, "entries": ["1-0"]}
    released = Released.from_fields({b"h": dumps(meta), b"e": dumps([event])})
    assert (released.hold, released.depth, [e.id for e in released.events]) == ("h", 2, ["e1"])
    with pytest.raises(ValueError, match="one stream entry per event"):
        Released.from_fields({b"h": dumps({**meta, "entries": []}), b"e": dumps([event])})
    with pytest.raises(ValueError, match="as strings"):
        Released.from_fields({b"h": dumps({**meta, "rule": 3}), b"e": dumps([event])})
    with pytest.raises(EventError):
        Released.from_fields({b"h": dumps(meta), b"e": dumps([{"id": "no source"}])})


@pytest.mark.parametrize("raw", [b"[1]", b"nope", b'{"a": "explode"}', b'{"a": "merge"}', b'{"a": "delay", "hold": 3}',
                                 b"null", b'"start"'])
def test_a_decision_read_back_that_is_not_one_is_an_error_not_a_crash(raw: bytes) -> None:
    assert isinstance(read_answer(raw), ValueError)


def test_a_decision_read_back_is_kept_as_written() -> None:
    assert read_answer(b'{"a": "merge", "hold": "0001", "n": 2}') == {"a": "merge", "hold": "0001", "n": 2}
    assert read_answer(b'{"a": "start"}') == {"a": "start"}
    error = RuntimeError("script")
    assert read_answer(error) is error
