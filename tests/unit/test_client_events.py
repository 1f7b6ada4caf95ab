"""Pure parts of the application-facing event tools: causation, building events, publish plans, `--since`,
tail lines."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading

import pytest
import redis

from orchestrator import AsyncClient, Client, Event, EventError
from orchestrator.cli.output import event_cells, print_event_line, print_json_line
from orchestrator.errors import EventTooLargeError
from orchestrator.events.causation import caused_by, current_cause, with_cause
from orchestrator.events.publish import Planner, Published, dedup_digest
from orchestrator.events.tail import SinceError, event_record, parse_since
from orchestrator.jsonutil import loads
from orchestrator.state.keys import Keys

NOW_S = 1_700_000_000.0
NOWHERE = "redis://127.0.0.1:9/0"  # never contacted: building events needs no server


def _client() -> Client:
    return Client(connection=redis.Redis.from_url(NOWHERE), source="/app")


def _planner(max_bytes: int = 65_536) -> Planner:
    return Planner(Keys("orch"), dedup_window_s=120.9, max_bytes=max_bytes, trigger="custom")


def test_the_cause_is_set_only_inside_the_block_and_nests() -> None:
    assert current_cause() is None
    with caused_by("run-1", "charge") as outer:
        assert current_cause() == outer
        with caused_by("run-2", "notify"):
            assert current_cause() is not None and current_cause().run_id == "run-2"  # type: ignore[union-attr]
        assert current_cause() == outer
    assert current_cause() is None


def test_the_cause_follows_coroutines_but_not_plain_threads() -> None:
    seen: list[object] = []
    with caused_by("run-1", "charge"):
        async def inside() -> object:
            return current_cause()

        seen.append(asyncio.run(inside()))
        thread = threading.Thread(target=lambda: seen.append(current_cause()))
        thread.start()
        thread.join()
        seen.append(contextvars.copy_context().run(current_cause))
    assert [getattr(c, "node", None) for c in seen] == ["charge", None, "charge"]


def test_with_cause_never_overrides_what_the_caller_set() -> None:
    assert with_cause({"type": "x"}) == {}
    with caused_by("run-1", "charge"):
        assert with_cause({"type": "x"}) == {"orchrun": "run-1", "orchtask": "charge"}
        assert with_cause({"orchrun": "mine"}) == {}
        assert with_cause({"extensions": {"orchtask": "mine"}}) == {}


def test_events_built_inside_a_cause_carry_it_in_every_form() -> None:
    client = _client()
    with caused_by("run-1", "charge"):
        one = client._event("order.paid", {"n": 1}, source=None, subject=None, id=None, time=None,
                            datacontenttype=None, extensions={"tenant": "acme"})
        many = client._events([
            {"type": "a"},
            {"type": "b", "orchrun": "explicit"},
            {"type": "c", "extensions": {"orchtask": "explicit"}},
            Event.new("d", source="/elsewhere"),
            Event.new("e", source="/elsewhere", extensions={"orchrun": "explicit"}),
        ])
    outside = client._events([{"type": "f"}])[0]

    assert one.extensions == {"tenant": "acme", "orchrun": "run-1", "orchtask": "charge"}
    assert one.to_dict()["orchrun"] == "run-1" and one.source == "/app"
    assert [e.extensions for e in many] == [
        {"orchrun": "run-1", "orchtask": "charge"},
        {"orchrun": "explicit"},
        {"orchtask": "explicit"},
        {"orchrun": "run-1", "orchtask": "charge"},
        {"orchrun": "explicit"},
    ]
    assert outside.extensions == {}


def test_a_generator_of_events_gets_the_cause_current_as_each_event_is_made() -> None:
    """emit_many reads the environment's cause once per call, but the current one (`caused_by`) per event:
    a generator may yield some events inside a task's cause and some outside it."""
    def items():  # type: ignore[no-untyped-def]
        yield {"type": "outside"}
        with caused_by("run-1", "charge"):
            yield {"type": "inside"}

    events = _client()._events(items())
    assert [e.extensions for e in events] == [{}, {"orchrun": "run-1", "orchtask": "charge"}]


def test_both_clients_build_the_same_events_and_name_the_bad_field() -> None:
    sync, other = _client(), AsyncClient(NOWHERE, source="/app")
    items = [{"type": "a", "id": "1", "time": "2024-01-01T00:00:00Z", "data": {"x": 1}}]
    assert sync._events(items) == other._events(items)
    for client in (sync, other):
        with pytest.raises(EventError, match=r"events\[1\]\.type") as caught:
            client._events([{"type": "ok"}, {"type": ""}])
        assert caught.value.field == "type"
        with pytest.raises(EventError, match="events\\[0\\]: expected an Event or a mapping, got int"):
            client._events([3])  # type: ignore[list-item]


@pytest.mark.parametrize(("text", "expected"), [
    ("0", "0-0"),
    ("1700000000000-7", "1700000000000-7"),
    ("1700000000000", "1700000000000-0"),
    ("30s", f"{int(NOW_S * 1000) - 30_000}-0"),
    ("5m", f"{int(NOW_S * 1000) - 300_000}-0"),
    ("1h30m", f"{int(NOW_S * 1000) - 5_400_000}-0"),
    ("1.5h", f"{int(NOW_S * 1000) - 5_400_000}-0"),
    ("2d", f"{int(NOW_S * 1000) - 172_800_000}-0"),
    ("250ms", f"{int(NOW_S * 1000) - 250}-0"),
    ("100000d", "0-0"),
])
def test_since_is_an_entry_id_or_a_duration_back_from_now(text: str, expected: str) -> None:
    assert parse_since(text, NOW_S) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "5 minutes", "5m3", "-5m", "1700000000000-x", "$"])
def test_a_bad_since_says_what_is_expected(text: str) -> None:
    if text == "5":  # a bare number is an entry id (milliseconds), not a duration
        assert parse_since(text, NOW_S) == "5-0"
        return
    with pytest.raises(SinceError, match="expected a stream entry id .* or a duration"):
        parse_since(text, NOW_S)


def test_a_tail_line_shows_the_cells_of_events_list(capsys: pytest.CaptureFixture[str]) -> None:
    record = event_record("1700000000000-0", {b"e": b'{"specversion":"1.0","id":"e-1","source":"/shop",'
                                                    b'"type":"order.created","data":{"order_id":"[b]A-1"},'
                                                    b'"orchrun":"r1"}'})
    assert record["received_at"] == "2023-11-14T22:13:20Z" and record["orchrun"] == "r1"

    print_event_line(record)
    print_json_line(record)
    line, json_line = capsys.readouterr().out.splitlines()

    cells = event_cells(record)
    assert cells[1:] == ("order.created", "/shop", "e-1", "-", '{"order_id":"[b]A-1"}')
    assert re.split(r"\s{2,}", line) == list(cells)
    assert json_line.startswith('{"entry_id":"1700000000000-0",') and '"orchrun":"r1"' in json_line

    print_event_line({**record, "data": "two\nlines\r\x00"})
    (multi,) = capsys.readouterr().out.splitlines()
    assert multi.endswith("two\\nlines\\r\\x00"), "one event, one line"


@pytest.mark.parametrize("source", ["/schedules/nightly-digest", "/hooks/github", "/watches/inbox"])
def test_both_clients_refuse_sources_reserved_for_orchs_triggers(source: str) -> None:
    for client in (_client(), AsyncClient(NOWHERE, source="/app")):
        with pytest.raises(EventError, match="reserved for orch's") as one:
            client._event("schedule.fired", None, source=source, subject=None, id=None, time=None,
                          datacontenttype=None, extensions=None)
        with pytest.raises(EventError, match=r"^events\[1\]\.source") as many:
            client._events([{"type": "a"}, {"type": "b", "source": source}])
        with pytest.raises(EventError, match="reserved"):
            client._events([Event.new("c", source=source)])
        assert one.value.field == many.value.field == "source" and one.value.status_code == 422
    with pytest.raises(EventError, match="reserved"):
        Client(connection=redis.Redis.from_url(NOWHERE), source=source).emit("x")


def test_one_event_is_one_direct_script_call() -> None:
    event = Event.new("order.created", {"order_id": "A-1"}, source="/shop", id="e-1")
    plan = _planner().plan([event])

    (trip,) = plan.round_trips
    assert not trip.pipelined
    ((keys, args),) = trip.calls
    assert keys == ["orch:events", "orch:metrics:orch_events_received_total",
                    f"orch:dedup:{dedup_digest('/shop', 'e-1')}"]
    assert args[:2] == ["120", "custom"] and loads(args[2]) == event.to_dict()


@pytest.mark.parametrize(("count", "round_trips"), [
    (0, []),
    (1, [(False, [1])]),
    (500, [(False, [500])]),
    (501, [(True, [500, 1])]),
    (10_500, [(True, [500] * 20), (True, [500])]),
])
def test_events_go_500_to_a_call_and_20_calls_to_a_pipelined_round_trip(
        count: int, round_trips: list[tuple[bool, list[int]]]) -> None:
    distinct = [Event.new("bench.item", {"n": i}, source="/bench", id=str(i)) for i in range(501)]
    # beyond 501, repeats: they keep the test fast, and the plan never compares events
    events = distinct[:count] + distinct[-1:] * (count - 501)
    plan = _planner().plan(events)

    assert [(trip.pipelined, [len(args) - 2 for _, args in trip.calls]) for trip in plan.round_trips] == round_trips
    sent = [loads(payload)["id"] for trip in plan.round_trips for _, args in trip.calls for payload in args[2:]]
    assert sent == [e.id for e in events], "every event once, in order"
    assert all(len(keys) == len(args) for trip in plan.round_trips for keys, args in trip.calls)


def test_an_event_over_the_limit_fails_the_plan_before_anything_is_sent() -> None:
    events = [Event.new("small", source="/s"), Event.new("big", {"blob": "x" * 2000}, source="/s")]
    with pytest.raises(EventTooLargeError, match=r"events\[1\] is \d+ bytes, over the limit of 1000") as caught:
        _planner(max_bytes=1000).plan(events)
    assert caught.value.field == "events[1]"


def test_replies_are_read_in_order_across_calls_and_duplicates_are_marked() -> None:
    events = [Event.new("t", source="/s", id=str(i)) for i in range(3)]
    plan = _planner().plan(events)

    outcome = plan.outcome([[b"1700000000000-0", b"=1699999999999-3"], ["1700000000000-1"]])

    assert outcome == [Published("0", "1700000000000-0", duplicate=False),
                       Published("1", "1699999999999-3", duplicate=True),
                       Published("2", "1700000000000-1", duplicate=False)]
    assert _planner().plan([]).outcome([]) == []
    with pytest.raises(ValueError, match="shorter"):
        plan.outcome([[b"1700000000000-0"]])
