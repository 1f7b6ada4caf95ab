"""`orch rules backtest` as a user runs it: the real CLI against a real Redis holding recorded events, with a
proposed rule set in a directory of its own. The exact difference (tests/backtest_case.py), a keyspace left
exactly as it was, a window that ends, a trimmed stream noted, and bad input refused."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator import Client
from orchestrator.settings import Settings

from ..backtest_case import (
    EVENTS,
    EXAMPLE_IDS,
    EXPECTED,
    FLOWS,
    PROPOSED,
    RULES,
    SOURCE,
    example_ids,
    summary,
)
from ..helpers import RedisServer
from ..projects import make_project
from .conftest import orch, orch_env, orch_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], redis.Redis, Path]]:
    """A Redis with the case's events recorded (and one entry that is no event), a project with the current
    rules, and a directory with the proposed ones."""
    server = RedisServer()
    root = tmp_path_factory.mktemp("backtest")
    project = make_project(root / "project", rules=RULES, workflows=FLOWS)
    (root / "proposed").mkdir()
    (root / "proposed" / "orders.yaml").write_text(textwrap.dedent(PROPOSED))
    client = redis.Redis.from_url(server.url)
    with Client(settings=Settings(redis_url=server.url), connection=client, source=SOURCE) as emitter:
        for event_id, type_, data in EVENTS[:3]:
            emitter.emit(type_, data, id=event_id)
        client.xadd("orch:events", {"e": b"{not json"})
        for event_id, type_, data in EVENTS[3:]:
            emitter.emit(type_, data, id=event_id)
    yield orch_env(server.url, project), client, root / "proposed"
    client.close()
    server.stop()


def keyspace(client: redis.Redis) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key with its serialized value and TTL: equal before and after means nothing was written."""
    return {key: (client.dump(key), client.pttl(key) // 60_000) for key in client.scan_iter(count=1000)}


def test_the_backtest_prints_the_exact_difference_and_writes_nothing(
        recorded: tuple[dict[str, str], redis.Redis, Path]) -> None:
    env, client, proposed = recorded
    before = keyspace(client)

    report: Any = orch_json("rules", "backtest", "--rules", str(proposed), "--since", "1h", env=env)
    text = orch("rules", "backtest", "--rules", str(proposed), "--since", "1h", env=env).stdout

    assert keyspace(client) == before, "a backtest only reads"
    assert summary(report) == EXPECTED and example_ids(report) == EXAMPLE_IDS
    assert (report["events"], report["undecodable"], report["new"], report["gone"], report["changed"]) == (6, 1, 3,
                                                                                                           1, 1)
    assert report["window"]["trimmed_before"] is None
    assert report["proposed"] == {"rules": str(proposed.resolve()), "count": 3}
    assert "runs that would newly start: 3" in text and "runs that would no longer start: 1" in text
    assert "runs whose parameters change: 1" in text and "before flow control" in text
    assert "1 entries are not events and were skipped" in text
    orders = next(line for line in text.splitlines() if line.startswith("  orders  "))
    assert '"priority":"low"' in orders and '"priority":"high"' in orders and "(o-2)" in orders
    print(text)  # the example output of the report


def test_without_proposed_rules_the_current_ones_are_counted_against_themselves(
        recorded: tuple[dict[str, str], redis.Redis, Path]) -> None:
    env, _, _ = recorded

    report: Any = orch_json("rules", "backtest", "--since", "0", env=env)

    assert (report["new"], report["gone"], report["changed"]) == (0, 0, 0)
    assert report["current_runs"] == report["proposed_runs"] == 8
    assert report["notes"] == ["no rule set is active in Redis yet (`orch reload` or an engine's start publishes one): "
                               "current = the rules on disk"]


def test_the_current_rules_are_the_active_version_not_the_files_edited_since(tmp_path: Path) -> None:
    """Engines run the version published to Redis: after the files change, a backtest without --rules compares
    that version with the edited files, which is what publishing them would change."""
    server = RedisServer()
    try:
        project = make_project(tmp_path / "project", rules=RULES, workflows=FLOWS)
        client = redis.Redis.from_url(server.url)
        with Client(settings=Settings(redis_url=server.url), connection=client, source=SOURCE) as emitter:
            for event_id, type_, data in EVENTS:
                emitter.emit(type_, data, id=event_id)
        env = orch_env(server.url, project)
        published: Any = orch_json("reload", env=env)
        (project / "rules" / "rules.yaml").write_text(textwrap.dedent(PROPOSED))

        report: Any = orch_json("rules", "backtest", "--since", "1h", env=env)
        text = orch("rules", "backtest", "--since", "1h", env=env).stdout

        assert report["current"]["version"] == published["version"]
        assert report["current"]["rules"] == f"the active rule set in Redis (version {published['version']})"
        assert report["proposed"]["rules"] == f"the project's rules ({project / 'rules'})"
        assert summary(report) == EXPECTED and (report["new"], report["gone"], report["changed"]) == (3, 1, 1)
        assert report["notes"] == []
        assert f"current   the active rule set in Redis (version {published['version']})" in text
        client.close()
    finally:
        server.stop()


def test_a_window_that_ends_before_the_last_events_leaves_them_out(
        recorded: tuple[dict[str, str], redis.Redis, Path]) -> None:
    env, client, proposed = recorded
    entries = [entry.decode() for entry, _ in client.xrange("orch:events")]

    report: Any = orch_json("rules", "backtest", "--rules", str(proposed), "--since", entries[0], "--until",
                            entries[2], env=env)

    assert (report["events"], report["first_entry"], report["last_entry"]) == (3, entries[0], entries[2])
    assert summary(report)["vip-orders"] == (0, 0, 1, 0, 1, 0, 0)


def test_a_stream_trimmed_past_the_window_start_is_noted(tmp_path: Path) -> None:
    server = RedisServer()
    try:
        project = make_project(tmp_path / "project", rules=RULES, workflows=FLOWS)
        client = redis.Redis.from_url(server.url)
        with Client(settings=Settings(redis_url=server.url), connection=client, source=SOURCE) as emitter:
            for event_id, type_, data in EVENTS:
                emitter.emit(type_, data, id=event_id)
        entries = [entry.decode() for entry, _ in client.xrange("orch:events")]
        client.xtrim("orch:events", minid=entries[2], approximate=False)
        env = orch_env(server.url, project)

        report: Any = orch_json("rules", "backtest", "--since", "1h", env=env)
        text = orch("rules", "backtest", "--since", "1h", env=env).stdout

        assert report["window"]["trimmed_before"] == entries[2] and report["events"] == 4
        assert f"the stream was trimmed past --since: it starts at {entries[2]}" in text
        client.close()
    finally:
        server.stop()


def test_bad_input_is_refused_with_a_message(recorded: tuple[dict[str, str], redis.Redis, Path],
                                             tmp_path: Path) -> None:
    env, _, _ = recorded
    (tmp_path / "bad.yaml").write_text("rules:\n  - {name: x, type: a, workflow: nope}\n")

    since = orch("rules", "backtest", "--since", "yesterday", env=env, check=False)
    until = orch("rules", "backtest", "--since", "1h", "--until", "soon", env=env, check=False)
    bad = orch("rules", "backtest", "--rules", str(tmp_path), "--since", "1h", env=env, check=False)

    assert since.returncode == 2 and "--since 'yesterday'" in since.stderr
    assert until.returncode == 2 and "--until 'soon'" in until.stderr
    assert bad.returncode == 1 and "bad.yaml:2" in bad.stderr and "unknown workflow 'nope'" in bad.stderr
