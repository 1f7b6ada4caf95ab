"""Causation from the environment: what a shell task's command (`orch emit`, a script using the clients)
finds in `ORCH_RUN_ID` / `ORCH_NODE` / `TRACEPARENT` / `TRACESTATE`, checked strictly, never over an
explicit value or the in-process cause."""

from __future__ import annotations

import pytest
import redis

from orchestrator import Client, Event
from orchestrator.events.causation import Cause, caused_by, env_cause, with_cause
from orchestrator.tracing import TraceContext
from orchestrator.workflows.lifecycle import rerun_id
from orchestrator.workflows.runs import derive_run_id, item_name

RUN = derive_run_id("rule", "/src", "event-1")
TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
PARENT = f"00-{TRACE}-{SPAN}-01"
SHELL = {"ORCH_RUN_ID": RUN, "ORCH_NODE": "announce", "ORCH_WORKFLOW": "wf", "TRACEPARENT": PARENT,
         "TRACESTATE": "k=v", "PATH": "/bin"}


def test_a_shell_tasks_environment_names_its_run_node_and_trace() -> None:
    assert env_cause(SHELL) == Cause(RUN, "announce", TraceContext(TRACE, SPAN, "01", "k=v"))
    assert with_cause({"type": "x"}, SHELL) == {"orchrun": RUN, "orchtask": "announce", "traceparent": PARENT,
                                                "tracestate": "k=v"}
    untraced = {"ORCH_RUN_ID": RUN, "ORCH_NODE": item_name("fan", 12)}
    assert with_cause({}, untraced) == {"orchrun": RUN, "orchtask": "fan[12]"}


def test_every_run_id_the_engine_makes_is_accepted() -> None:
    for run_id in (derive_run_id("r", "/s", "e"), rerun_id(RUN, "nonce")):
        assert env_cause({"ORCH_RUN_ID": run_id, "ORCH_NODE": "n"}) == Cause(run_id, "n")


@pytest.mark.parametrize("changes", [
    {"ORCH_RUN_ID": None},
    {"ORCH_NODE": None},
    {"ORCH_RUN_ID": ""},
    {"ORCH_RUN_ID": RUN.upper()},
    {"ORCH_RUN_ID": RUN + "0"},
    {"ORCH_RUN_ID": RUN[:-1]},
    {"ORCH_RUN_ID": RUN + "\n"},
    {"ORCH_RUN_ID": "../" + RUN[3:]},
    {"ORCH_NODE": ""},
    {"ORCH_NODE": "9lives"},
    {"ORCH_NODE": "a" * 65},
    {"ORCH_NODE": "fan[]"},
    {"ORCH_NODE": "fan[1]x"},
    {"ORCH_NODE": "announce\n"},
    {"ORCH_NODE": "an nounce"},
])
def test_a_malformed_run_or_node_means_no_cause_at_all(changes: dict[str, str | None]) -> None:
    environ = {**SHELL, **changes}
    clean = {k: v for k, v in environ.items() if v is not None}
    assert env_cause(clean) is None
    assert with_cause({}, clean) == {}


@pytest.mark.parametrize(("traceparent", "tracestate"), [
    ("00-" + "0" * 32 + f"-{SPAN}-01", "k=v"),
    (PARENT.upper(), "k=v"),
    (PARENT + "-extra", "k=v"),
    ("not a trace", None),
])
def test_a_malformed_trace_context_is_dropped_and_the_cause_kept(traceparent: str, tracestate: str | None) -> None:
    environ = {**SHELL, "TRACEPARENT": traceparent}
    environ.pop("TRACESTATE")
    if tracestate is not None:
        environ["TRACESTATE"] = tracestate
    assert with_cause({}, environ) == {"orchrun": RUN, "orchtask": "announce"}
    assert with_cause({}, {**SHELL, "TRACESTATE": "bad state,,=="}) == {"orchrun": RUN, "orchtask": "announce",
                                                                          "traceparent": PARENT}


def test_explicit_values_and_the_in_process_cause_win_over_the_environment() -> None:
    assert with_cause({"orchrun": "mine"}, SHELL) == {"traceparent": PARENT, "tracestate": "k=v"}
    assert with_cause({"extensions": {"orchtask": "mine", "traceparent": PARENT}}, SHELL) == {}
    with caused_by("run-1", "charge"):
        assert with_cause({}, SHELL) == {"orchrun": "run-1", "orchtask": "charge"}


def test_the_clients_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SHELL.items():
        monkeypatch.setenv(name, value)
    client = Client(connection=redis.Redis.from_url("redis://127.0.0.1:9/0"), source="/app")  # never contacted
    one = client._event("x", None, source=None, subject=None, id=None, time=None, datacontenttype=None,
                        extensions=None)
    many = client._events([{"type": "a"}, Event.new("b", source="/app"), {"type": "c", "orchrun": "mine"}])

    cause = {"orchrun": RUN, "orchtask": "announce", "traceparent": PARENT, "tracestate": "k=v"}
    assert one.extensions == cause
    assert [e.extensions for e in many] == [cause, cause, {"orchrun": "mine", "traceparent": PARENT,
                                                           "tracestate": "k=v"}]
