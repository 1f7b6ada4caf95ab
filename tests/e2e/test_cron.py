"""Cron end to end: `orch triggers` replicas as real processes, killed and restarted; overlap policies."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from orchestrator.jsonutil import loads
from orchestrator.metrics import SCHEDULE_OVERLAPS, SCHEDULE_TICKS, counter_field
from orchestrator.state.keys import Keys

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .conftest import Processes, orch, orch_env, orch_json, start_stack, stop_stack

KEYS = Keys()


def ticks(client: redis.Redis, schedule: str) -> list[dict[str, object]]:
    events = [loads(fields[b"e"]) for _, fields in client.xrange(KEYS.events)]
    return [e for e in events if e["source"] == f"/schedules/{schedule}"]


def times(events: list[dict[str, object]]) -> list[datetime]:
    return [datetime.fromisoformat(str(e["data"]["scheduled_at"]).replace("Z", "+00:00"))  # type: ignore[index]
            for e in events]


def counter(client: redis.Redis, metric: str, *labels: str) -> int:
    value = client.hget(KEYS.metric(metric), counter_field(*labels))
    return int(value) if value else 0


@pytest.fixture
def server() -> RedisServer:
    running = RedisServer()
    yield running  # type: ignore[misc]
    running.stop()


def test_three_replicas_fire_every_tick_once_while_one_is_killed(tmp_path: Path, server: RedisServer) -> None:
    project = make_project(tmp_path / "project", rules="""\
        schedules:
          - name: every-second
            cron: "* * * * * *"
        """)
    procs = Processes(orch_env(server.url, project), tmp_path)
    client = server.client()
    try:
        for i in range(3):
            procs.start(f"triggers-{i}", "triggers")
        wait_for(lambda: len(ticks(client, "every-second")) >= 2, 20, "the first ticks")
        time.sleep(10)
        procs.stop("triggers-1", signal.SIGKILL)
        time.sleep(11)
        for i in (0, 2):
            procs.stop(f"triggers-{i}")
        fired = times(ticks(client, "every-second"))
    finally:
        procs.stop_all()
        client.close()

    duplicates = [t for t, n in Counter(fired).items() if n > 1]
    gaps = [(a, b) for a, b in zip(fired, fired[1:], strict=False) if b - a != timedelta(seconds=1)]
    print(f"\nreplica test: {len(fired)} ticks over {fired[-1] - fired[0]}, {len(duplicates)} duplicates, "
          f"{len(gaps)} gaps; replica 1 killed (-9) after ~10 s")
    assert len(fired) >= 20
    assert duplicates == []
    assert gaps == []


def test_catchup_after_every_replica_stopped(tmp_path: Path, server: RedisServer) -> None:
    project = make_project(tmp_path / "project", rules="""\
        schedules:
          - {name: skip, cron: "* * * * * *", misfire_grace_s: 1}
          - {name: latest, cron: "* * * * * *", misfire_grace_s: 1, catchup: latest}
          - {name: all, cron: "* * * * * *", misfire_grace_s: 1, catchup: all}
        """)
    procs = Processes(orch_env(server.url, project), tmp_path)
    client = server.client()
    try:
        procs.start("triggers", "triggers")
        wait_for(lambda: all(len(ticks(client, s)) >= 2 for s in ("skip", "latest", "all")), 20, "first ticks")
        procs.stop("triggers")
        down_from = max(times(ticks(client, "all")))
        time.sleep(6)
        procs.start("triggers", "triggers")
        wait_for(lambda: all(max(times(ticks(client, s))) > down_from + timedelta(seconds=7)
                             for s in ("skip", "latest", "all")), 20, "ticks after the restart")
        procs.stop("triggers")
    finally:
        procs.stop_all()

    every = times(ticks(client, "all"))
    assert all(b - a == timedelta(seconds=1) for a, b in zip(every, every[1:], strict=False)), every
    skipped = times(ticks(client, "skip"))
    assert any(b - a >= timedelta(seconds=4) for a, b in zip(skipped, skipped[1:], strict=False)), skipped
    assert counter(client, SCHEDULE_TICKS.name, "skip", "missed") >= 4
    latest = ticks(client, "latest")
    caught_up = [e for e in latest if e["data"]["missed"]]  # type: ignore[index]
    assert len(caught_up) == 1 and caught_up[0]["data"]["missed"] >= 3  # type: ignore[index,operator]
    assert counter(client, SCHEDULE_TICKS.name, "latest", "caught_up") == 1
    assert counter(client, SCHEDULE_TICKS.name, "all", "caught_up") >= 4
    client.close()


SLOW_FLOWS = """\
    import time

    from orchestrator import task, workflow


    @task
    def slow(at: str) -> str:
        time.sleep(2.5)
        return at


    @workflow
    def slow_flow(at: str):
        slow(at)
    """


def test_overlap_policies_are_enforced_where_runs_start(tmp_path: Path) -> None:
    schedules = "\n".join(f"  - {{name: {p}, cron: '* * * * * *', overlap: {p}}}" for p in ("allow", "skip",
                                                                                          "queue-one"))
    rules = "\n".join(f"  - {{name: run-{p}, type: schedule.fired, source: /schedules/{p}, workflow: slow_flow, "
                      f"params: {{at: '{{{{ data.scheduled_at }}}}'}}}}" for p in ("allow", "skip", "queue-one"))
    project = make_project(tmp_path / "project", rules=f"schedules:\n{schedules}\nrules:\n{rules}\n",
                           workflows={"slow": SLOW_FLOWS})
    stack = start_stack(tmp_path, project, workers=4)
    client = stack.redis.client()
    try:
        stack.procs.start("triggers", "triggers")
        time.sleep(7)
        stack.procs.stop("triggers")
        wait_for(lambda: not orch_json("runs", "list", "--status", "running", env=stack.env), 30,
                 "every run to finish")
        runs = orch_json("runs", "list", "--limit", "500", env=stack.env)
        counts = {(s, a): counter(client, SCHEDULE_OVERLAPS.name, s, a)
                  for s in ("skip", "queue-one") for a in ("skipped", "queued", "released")}
        client.close()
    finally:
        stop_stack(stack)

    def spans(rule: str) -> list[tuple[datetime, datetime]]:
        return sorted((datetime.fromisoformat(r["created_at"]), datetime.fromisoformat(r["finished_at"]))
                      for r in runs if r["rule"] == rule)

    def overlapping(rule: str) -> bool:
        found = spans(rule)
        return any(b[0] < a[1] for a, b in zip(found, found[1:], strict=False))

    assert overlapping("run-allow")  # one run per tick, each 2.5 s long
    assert not overlapping("run-skip") and not overlapping("run-queue-one")
    assert len(spans("run-allow")) >= 5 > len(spans("run-skip"))
    assert counts["skip", "skipped"] >= 3
    assert counts["queue-one", "queued"] >= 1 and counts["queue-one", "released"] >= 1
    held = spans("run-queue-one")
    # a held tick starts right after the run it waited for ended
    assert any(timedelta(0) <= b[0] - a[1] < timedelta(seconds=1) for a, b in zip(held, held[1:], strict=False))


def test_schedules_commands(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", rules="""\
        schedules:
          - {name: nightly, cron: "30 2 * * *", timezone: Europe/Berlin}
        """)
    env = orch_env(None, project, ORCH_REDIS_URL="redis://127.0.0.1:1/0")

    listed = orch_json("schedules", "list", env=env)
    nxt = orch_json("schedules", "next", "nightly", "--count", "3", "--after", "2026-10-24T12:00Z", env=env)
    text = orch("schedules", "next", "nightly", "-n", "2", "--after", "2026-03-28T12:00Z", env=env).stdout
    missing = orch("schedules", "next", "nope", env=env, check=False)

    assert [s["name"] for s in listed] == ["nightly"] and listed[0]["last_fired_utc"] is None
    assert [t["utc"] for t in nxt["ticks"]] == ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
    assert "occurs twice" in nxt["ticks"][0]["dst"]
    assert "moved: 02:30 does not exist on 2026-03-29" in text and "03:30" in text
    assert missing.returncode == 1 and "no schedule 'nope'; schedules: nightly" in missing.stderr
