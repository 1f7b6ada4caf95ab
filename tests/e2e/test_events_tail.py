"""`orch events tail` as a user runs it: a real subprocess following a real Redis while events arrive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator import Client
from orchestrator.jsonutil import loads
from orchestrator.settings import Settings

from ..helpers import EXAMPLES, RedisServer, wait_for
from .conftest import orch, orch_env

pytestmark = pytest.mark.e2e


class Tail:
    """A running `orch events tail`, its output collected line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "orchestrator", "events", "tail", *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()
        wait_for(lambda: any(line.startswith("following ") for line in self.err) or self.process.poll() is not None,
                 20, "orch events tail to start following")
        if self.process.poll() is not None:
            self.wait()
            raise AssertionError(f"tail exited early: {''.join(self.err)}")

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait(self, timeout_s: float = 10) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"tail did not exit; out={self.out} err={self.err}") from None
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def events(self) -> list[dict[str, Any]]:
        return [loads(line) for line in self.out]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    running = RedisServer()
    yield running
    running.stop()


@pytest.fixture
def env(server: RedisServer) -> Iterator[dict[str, str]]:
    client = server.client()
    client.flushall()
    client.close()
    yield orch_env(server.url, EXAMPLES)


@pytest.fixture
def client(server: RedisServer) -> Iterator[Client]:
    with Client(settings=Settings(redis_url=server.url), source="/e2e/tail") as running:
        yield running


def test_json_count_prints_exactly_the_new_events_and_exits(env: dict[str, str], client: Client) -> None:
    client.emit("order.created", {"n": 0}, id="before")  # already there: not printed
    tail = Tail(env, "--json", "--count", "3")
    ids = client.emit_many([{"type": "order.created", "data": {"n": i}} for i in range(1, 4)])
    client.emit("order.created", {"n": 4}, id="after")  # past --count: not printed

    assert tail.wait() == 0, tail.err
    events = tail.events()
    assert [e["id"] for e in events] == ids and len(tail.out) == 3
    assert [e["data"] for e in events] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert all(e["source"] == "/e2e/tail" and e["entry_id"] and e["received_at"] for e in events)


def test_type_filter(env: dict[str, str], client: Client) -> None:
    tail = Tail(env, "--json", "--count", "2", "--type", "order.*")
    client.emit_many([{"type": "user.signup", "id": "u1"}, {"type": "order.created", "id": "o1"},
                      {"type": "orders", "id": "x"}, {"type": "order.paid", "id": "o2"}])

    assert tail.wait() == 0, tail.err
    assert [(e["type"], e["id"]) for e in tail.events()] == [("order.created", "o1"), ("order.paid", "o2")]


def test_since_an_entry_id_or_a_duration_reads_the_past(env: dict[str, str], client: Client) -> None:
    first, second = client.publish([{"type": "a", "id": "1"}, {"type": "b", "id": "2"}])

    after_first = orch("events", "tail", "--since", first.entry_id, "--count", "1", "--json", env=env)
    recent = orch("events", "tail", "--since", "5m", "--count", "2", "--json", env=env)
    everything = orch("events", "tail", "--since", "0", "--count", "2", env=env)
    bad = orch("events", "tail", "--since", "yesterday", env=env, check=False)

    assert [loads(line)["id"] for line in after_first.stdout.splitlines()] == ["2"]
    assert [loads(line)["id"] for line in recent.stdout.splitlines()] == ["1", "2"]
    lines = everything.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[1:4] == ["a", "/e2e/tail", "1"]
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_since_a_duration_counts_back_from_redis_clock_not_the_hosts(env: dict[str, str], client: Client,
                                                                    tmp_path: Path) -> None:
    # A host whose clock runs an hour ahead of Redis's (stream entry ids are Redis's milliseconds).
    (tmp_path / "sitecustomize.py").write_text("import time\n_real = time.time\n"
                                               "time.time = lambda: _real() + 3600.0\n")
    skewed = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))}
    client.publish([{"type": "a", "id": "1"}, {"type": "b", "id": "2"}])

    recent = orch("events", "tail", "--since", "5m", "--count", "2", "--json", env=skewed, timeout=20)

    assert [loads(line)["id"] for line in recent.stdout.splitlines()] == ["1", "2"]


def test_sigterm_and_ctrl_c_exit_cleanly(env: dict[str, str], client: Client, server: RedisServer) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        tail = Tail(env)
        client.emit("order.created", {"order_id": "A-1"}, id=f"sig-{sig}", subject="A-1")
        wait_for(lambda t=tail: t.out, 10, "the event to be printed")
        tail.process.send_signal(sig)

        assert tail.wait() == 0, tail.err
        (line,) = tail.out
        assert line.split()[1:6] == ["order.created", "/e2e/tail", f"sig-{sig}", "A-1", '{"order_id":"A-1"}']
        assert not any("Traceback" in e or "Aborted" in e for e in tail.err), tail.err
    assert _groups_of(server) == [], "tail never joins a consumer group"


def _groups_of(server: RedisServer) -> list[Any]:
    r = server.client()
    try:
        return list(r.xinfo_groups("orch:events"))
    except redis.ResponseError:
        return []
    finally:
        r.close()
