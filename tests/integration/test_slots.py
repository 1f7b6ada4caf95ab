"""Keyed concurrency, priority and singletons (issue 10 §4) under two engines on a real Redis, several keys
interleaved: exact counts of runs started, events carried and decision records written, and the slots state
sampled after every engine step (never timing)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from executors.dispatch import RQDispatcher
from executors.worker import run_worker
from orchestrator import Client
from orchestrator.cli.wiring import load_project
from orchestrator.engine import Engine
from orchestrator.engine.slots import RenewLeases
from orchestrator.events.decisions import decisions_of
from orchestrator.jsonutil import loads
from orchestrator.project import Project
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.slots import read_pools
from orchestrator.workflows.pools import pool_id
from orchestrator.workflows.runs import Run, RunStatus, derive_run_id

from ..projects import make_project

KEYS = Keys()
WORKFLOW = """\
    from orchestrator import task, workflow

    @task
    def step(n: int) -> int:
        return n

    @workflow
    def job(n: int):
        step(n)
    """


def _project(root: Path, controls: str) -> Project:
    return load_project(make_project(root, rules=f"""\
        rules:
          - name: r
            type: t.job
            workflow: job
            params: {{n: "{{{{ event.data.n }}}}"}}
{controls}
        """, workflows={"job": WORKFLOW}))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Two:
    """Two engines (consumers of one group, small batches so they share the work) and a burst worker."""

    def __init__(self, r: redis.Redis, redis_url: str, root: Path, project: Project, lease_s: float = 60.0) -> None:
        self.r, self.project, self.clock = r, project, Clock()
        self.settings = Settings(redis_url=redis_url, project=root, engine_batch_size=4, slot_lease_s=lease_s)
        self.engines = [Engine(r, self.settings, project, RQDispatcher(r, self.settings), consumer=f"engine-{i}",
                               clock=self.clock) for i in range(2)]
        self.engines[0].consumer.ensure_groups()
        self.samples = 0

    def emit(self, data: dict[str, Any]) -> str:
        with Client(settings=self.settings, connection=self.r) as client:
            return client.emit("t.job", data)

    def step_engines(self, check: Any = None) -> int:
        """Both engines, one step each in turn, until neither reads anything; `check` after every step."""
        total = 0
        while True:
            read = 0
            for engine in self.engines:
                read += engine.step(block=False)
                if check is not None:
                    check()
                    self.samples += 1
            total += read
            if not read:
                return total

    def drain(self, check: Any = None, rounds: int = 60) -> None:
        for _ in range(rounds):
            read = self.step_engines(check)
            worked = run_worker(self.r, self.settings, self.project, self.project.queues, burst=True)
            if not read and not worked:
                return
        raise AssertionError("the system did not settle")

    def run(self, event_id: str) -> Run | None:
        return self.engines[0].store.get(derive_run_id("r", "/orch/client", event_id))

    def decisions(self) -> list[dict[str, Any]]:
        entries = [e.decode() for e, _ in self.r.xrange(KEYS.events)]
        records = decisions_of(self.r, KEYS, entries)
        return [d for record in records.values() if record for d in record["rules"]]

    def starts(self) -> list[str]:
        """The runs the slot scripts gave a slot to, in order (their `start` records on the results stream)."""
        out = []
        for _, fields in self.r.xrange(KEYS.results):
            body = loads(fields[b"c"]) if b"c" in fields else {}
            if body.get("action") == "start":
                out.append(body["run"])
        return out


def _held(r: redis.Redis, pool: str) -> list[str]:
    return [m.decode() for m in r.zrange(KEYS.slots_held(pool), 0, -1)]


def test_keyed_concurrency_3_keys_x_10_events_limit_2_under_two_engines(r: redis.Redis, redis_url: str,
                                                                        tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.customer, limit: 2}
            priority: data.priority"""))
    priorities = [0, 0, 5, 0, 30, -10, 5, 600, 0, 900]  # 900 is clamped to 600: after the 600 that came first
    customers = ["a", "b", "c"]
    ids: dict[str, list[str]] = {c: [] for c in customers}
    for i in range(10):
        for c in customers:  # interleaved
            ids[c].append(two.emit({"customer": c, "n": i, "priority": priorities[i]}))
    pools = {c: pool_id("rule", "r", c) for c in customers}

    def at_most_two() -> None:
        for c in customers:
            held = _held(r, pools[c])
            assert len(held) <= 2, f"customer {c}: {held} hold slots"
            running = {run.id for i in ids[c] if (run := two.run(i)) and run.status is RunStatus.RUNNING}
            assert len(running) <= 2 and running <= set(held), f"customer {c}: {running} run without a slot"

    two.step_engines(at_most_two)
    for c in customers:
        statuses = Counter(str(run.status) for i in ids[c] if (run := two.run(i)))
        assert statuses == {"running": 2, "queued": 8}
        assert len(_held(r, pools[c])) == 2 and r.zcard(KEYS.slots_waiting(pools[c])) == 8
    shown = read_pools(r, KEYS, rule="r")
    assert [(p["key"], p["held"], p["limit"], p["waiting"]) for p in shown] == [(c, 2, 2, 8) for c in customers]
    assert Counter(d["outcome"] for d in two.decisions()) == {"matched": 6, "waiting": 24}
    waiting = [d for d in two.decisions() if d["outcome"] == "waiting"]
    assert {d["detail"]["key"] for d in waiting} == set(customers) and all(d["detail"]["limit"] == 2 for d in waiting)

    two.drain(at_most_two)

    runs = [two.run(i) for c in customers for i in ids[c]]
    assert len(runs) == 30 and all(run is not None and run.status is RunStatus.SUCCEEDED for run in runs)
    assert {run.event.id for run in runs if run} == {i for c in customers for i in ids[c]}  # every event carried
    assert two.samples > 30 and r.hlen(KEYS.slots) == 0
    order = sorted(range(2, 10), key=lambda i: (-min(priorities[i], 600), i))  # the first two took the slots
    assert order == [7, 9, 4, 2, 6, 3, 8, 5]
    started = two.starts()
    for c in customers:
        expected = [derive_run_id("r", "/orch/client", ids[c][i]) for i in order]
        assert [run for run in started if run in expected] == expected, f"customer {c} started out of priority order"
    assert len(started) == 24


def test_singleton_skip_drops_the_events_of_a_key_while_its_run_runs(r: redis.Redis, redis_url: str,
                                                                    tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            singleton: {key: data.k, mode: skip}"""))
    first = [two.emit({"k": k, "n": i}) for i in range(5) for k in ("x", "y", "z")]

    two.step_engines()

    assert sum(1 for i in first if two.run(i)) == 3, "one run per key"
    outcomes = Counter(d["outcome"] for d in two.decisions())
    assert outcomes == {"matched": 3, "singleton_skipped": 12}
    skipped = [d for d in two.decisions() if d["outcome"] == "singleton_skipped"]
    holders = {k: derive_run_id("r", "/orch/client", first[i]) for i, k in enumerate(("x", "y", "z"))}
    assert all(d["detail"]["holder"] == holders[d["detail"]["key"]] for d in skipped)
    two.drain()
    second = [two.emit({"k": k, "n": i}) for i in range(2) for k in ("x", "y", "z")]
    two.step_engines()

    assert sum(1 for i in second if two.run(i)) == 3
    assert Counter(d["outcome"] for d in two.decisions()) == {"matched": 6, "singleton_skipped": 15}
    metric = r.hgetall(KEYS.metric("orch_slot_events_total"))
    assert {k.decode(): int(v) for k, v in metric.items()} == {"singleton\x1fr\x1fskipped": 15}


def test_singleton_cancel_previous_cancels_the_running_run_and_starts_the_new_one(r: redis.Redis, redis_url: str,
                                                                                tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            singleton: {key: data.k, mode: cancel_previous}"""))
    keys = ("x", "y", "z")
    ids = {k: [two.emit({"k": k, "n": 0})] for k in keys}
    two.step_engines()
    assert all(two.run(ids[k][0]).status is RunStatus.RUNNING for k in keys)  # type: ignore[union-attr]
    for i in (1, 2):
        for k in keys:
            ids[k].append(two.emit({"k": k, "n": i}))

    def one_holder() -> None:
        for k in keys:
            assert len(_held(r, pool_id("singleton", "r", k))) <= 1

    two.drain(one_holder)

    for k in keys:
        runs = [two.run(i) for i in ids[k]]
        assert [str(run.status) for run in runs if run] == ["cancelled", "cancelled", "succeeded"]
        assert all(run and run.steering[-1]["by"] == "singleton r" for run in runs[:2])
    assert Counter(d["outcome"] for d in two.decisions()) == {"matched": 3, "replaced": 6}
    replaced = {d["run"]: d["detail"] for d in two.decisions() if d["outcome"] == "replaced"}
    for k in keys:
        runs = [derive_run_id("r", "/orch/client", i) for i in ids[k]]
        for before, after in zip(runs, runs[1:], strict=False):  # each new run cancelled the one before it
            assert replaced[after]["key"] == k and before in replaced[after]["cancelled"]
    assert r.hlen(KEYS.slots) == 0


def test_a_holder_whose_run_vanished_loses_its_slot_when_its_lease_runs_out(r: redis.Redis, redis_url: str,
                                                                           tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 1}"""), lease_s=30.0)
    gone, waiting = two.emit({"k": "x", "n": 1}), two.emit({"k": "x", "n": 2})
    two.step_engines()
    pool = pool_id("rule", "r", "x")
    holder = two.run(gone)
    queued = two.run(waiting)
    assert holder is not None and _held(r, pool) == [holder.id] and queued and queued.status is RunStatus.QUEUED
    renew = RenewLeases(two.engines[1])

    two.clock.now += timedelta(seconds=31)
    assert renew.renew() == {"renewed": 1, "expired": 0, "started": 0}, "a live run's lease is renewed"
    r.delete(KEYS.run(holder.id))  # the holder vanishes: nobody renews its lease any more
    two.clock.now += timedelta(seconds=29)
    assert renew.renew() == {"renewed": 0, "expired": 0, "started": 0}, "its lease still runs"
    two.clock.now += timedelta(seconds=2)
    assert renew.renew() == {"renewed": 0, "expired": 1, "started": 1}

    next_run = two.run(waiting)
    assert next_run is not None and _held(r, pool) == [next_run.id]
    two.step_engines()
    assert two.run(waiting).status is RunStatus.RUNNING  # type: ignore[union-attr]
    metric = r.hgetall(KEYS.metric("orch_slot_events_total"))
    assert int(metric[b"rule\x1fr\x1fexpired"]) == 1


def test_a_key_that_cannot_be_evaluated_fails_the_run_with_the_reason(r: redis.Redis, redis_url: str,
                                                                     tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.customer, limit: 1}"""))
    event = two.emit({"n": 1})
    two.step_engines()

    run = two.run(event)
    assert run is not None and run.status is RunStatus.FAILED and "concurrency key" in (run.error or "")
    assert [d["outcome"] for d in two.decisions()] == ["error"]
    assert r.hlen(KEYS.slots) == 0


def test_holders_are_visible_in_orch_slots_and_the_metrics(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from prometheus_client import CollectorRegistry, generate_latest

    from orchestrator.metrics import RedisCollector

    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 1}"""))
    ids = [two.emit({"k": k, "n": i}) for i in range(3) for k in ("x", "y")]
    two.step_engines()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}, "ORCH_REDIS_URL": redis_url,
           "ORCH_PROJECT": str(tmp_path)}

    def orch(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "orchestrator", "slots", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout

    pools = loads(orch("--json", "--rule", "r"))
    assert [(p["kind"], p["name"], p["key"], p["held"], p["limit"], p["waiting"]) for p in pools] == [
        ("rule", "r", "x", 1, 1, 2), ("rule", "r", "y", 1, 1, 2)]
    assert [p["holders"][0]["run"] for p in pools] == [derive_run_id("r", "/orch/client", i) for i in ids[:2]]
    assert pools[0]["next"] == [derive_run_id("r", "/orch/client", i) for i in ids[2::2]]
    table = orch()
    assert "rule" in table and "1/1" in table and derive_run_id("r", "/orch/client", ids[0]) in table
    assert loads(orch("--json", "--rule", "other")) == []

    registry = CollectorRegistry()
    registry.register(RedisCollector(r, KEYS))
    text = generate_latest(registry).decode()
    for line in ('orch_slots_held{kind="rule",name="r"} 2.0', 'orch_slots_waiting{kind="rule",name="r"} 4.0',
                 'orch_slots_limit{kind="rule",name="r"} 1.0', 'orch_slots_keys{kind="rule",name="r"} 2.0',
                 'orch_slot_events_total{action="waited",kind="rule",name="r"} 4.0'):
        assert line in text


def test_the_slots_an_older_orch_kept_per_workflow_are_adopted(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, rules="""\
        rules:
          - {name: r, type: t.job, workflow: job, params: {n: "{{ event.data.n }}"}}
        """, workflows={"job": WORKFLOW.replace("@workflow\n", "@workflow(concurrency=1)\n")}))
    two = Two(r, redis_url, tmp_path, project)
    first, second = two.emit({"n": 1}), two.emit({"n": 2})
    two.step_engines()
    holder, queued = two.run(first), two.run(second)
    assert holder and queued and queued.status is RunStatus.QUEUED
    pool = "workflow/job"
    r.delete(KEYS.slots_held(pool), KEYS.slots_waiting(pool), KEYS.slots)  # as an older orch kept them:
    r.sadd("orch:workflow:job:running", holder.id)
    r.zadd("orch:workflow:job:queued", {queued.id: 1})

    two.engines[0].maintain(force=True)

    assert not r.exists("orch:workflow:job:running", "orch:workflow:job:queued")
    assert _held(r, pool) == [holder.id] and r.zrange(KEYS.slots_waiting(pool), 0, -1) == [queued.id.encode()]
    two.drain()
    assert two.run(second).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]


def _reload(two: Two, root: Path, controls: str) -> None:
    """Both engines switch to the project with `controls` (published by the first, followed by the second)."""
    _project(root, controls)
    for engine in two.engines:
        engine.reload.reload_from(lambda: load_project(root))
    two.engines[0].reload.changed()
    for engine in two.engines:
        engine.reload.check()
    two.project = two.engines[0].reload.project


def test_a_limit_lowered_by_a_reload_holds_when_the_slots_free(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 2}"""))
    for engine in two.engines:
        engine.reload.reload_from(lambda: load_project(tmp_path))
        engine.reload.check()
    ids = [two.emit({"k": "x", "n": n}) for n in range(5)]
    two.step_engines()
    pool = pool_id("rule", "r", "x")
    assert len(_held(r, pool)) == 2
    _reload(two, tmp_path, "            concurrency: {key: data.k, limit: 1}")
    assert two.engines[1].reload.project.rules[0].controls.limit == 1  # type: ignore[union-attr]
    run_worker(r, two.settings, two.project, two.project.queues, burst=True)  # both holders end ...
    two.step_engines()
    running = [i for i in ids if two.run(i).status is RunStatus.RUNNING]  # type: ignore[union-attr]
    assert len(_held(r, pool)) == 1 and len(running) == 1, "... and one run in line starts, not two (limit 1 now)"
    two.drain()
    assert all(two.run(i).status is RunStatus.SUCCEEDED for i in ids)  # type: ignore[union-attr]


def test_a_limit_removed_by_a_reload_lets_the_line_drain_at_the_next_renewal(r: redis.Redis, redis_url: str,
                                                                              tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 1}"""))
    for engine in two.engines:
        engine.reload.reload_from(lambda: load_project(tmp_path))
        engine.reload.check()
    ids = [two.emit({"k": "x", "n": n}) for n in range(3)]
    two.step_engines()
    _reload(two, tmp_path, "")
    assert RenewLeases(two.engines[0]).renew() == {"renewed": 1, "expired": 0, "started": 2}
    two.step_engines()
    assert all(two.run(i).status is RunStatus.RUNNING for i in ids)  # type: ignore[union-attr]


def test_lease_renewal_covers_a_big_index_in_bounded_passes(r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    from orchestrator.state.slots import index_record
    from orchestrator.workflows.pools import Claim
    from tests.integration.test_maintenance import cost

    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 1}"""))
    pipe = r.pipeline(transaction=False)
    for n in range(700):  # 700 pools (past a listpack, so HSCAN pages), one live holder each
        claim = Claim(pool_id("rule", "r", f"k{n}"), 1, "rule", "r", f"k{n}")
        pipe.zadd(KEYS.slots_held(claim.pool), {f"run-{n}": 1})
        pipe.hset(KEYS.slots, claim.pool, index_record(claim))
        pipe.hset(KEYS.run(f"run-{n}"), "meta", '{"status": "running"}')
    pipe.execute()
    renew = RenewLeases(two.engines[0], max_pools=200)
    passes = [renew.renew()["renewed"] for _ in range(4)]
    assert passes == [200, 200, 200, 100], "bounded, each pass resuming where the last stopped"
    whole = cost(r, RenewLeases(two.engines[0]).renew)
    assert whole.calls["evalsha"] == 700 and whole.round_trips < 70, f"pipelined, not one per pool: {whole}"
    leases = [score for n in range(700) for _, score in r.zrange(KEYS.slots_held(pool_id("rule", "r", f"k{n}")),
                                                                  0, -1, withscores=True)]
    assert len(leases) == 700 and min(leases) > 1, "every live holder's lease was renewed"


def test_a_queued_holder_whose_start_record_was_lost_gets_another_when_its_lease_runs_out(
        r: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    two = Two(r, redis_url, tmp_path, _project(tmp_path, """\
            concurrency: {key: data.k, limit: 1}"""), lease_s=30.0)
    first, second = two.emit({"k": "x", "n": 1}), two.emit({"k": "x", "n": 2})
    two.step_engines()
    pool, queued = pool_id("rule", "r", "x"), two.run(second)
    assert queued is not None and queued.status is RunStatus.QUEUED
    # the holder ended and the slot went to `second`, whose `start` record was then dead-lettered:
    r.zrem(KEYS.slots_held(pool), two.run(first).id)  # type: ignore[union-attr]
    r.zrem(KEYS.slots_waiting(pool), queued.id)
    until = int(two.clock.now.timestamp() * 1000) + 30_000
    r.zadd(KEYS.slots_held(pool), {queued.id: until})
    renew = RenewLeases(two.engines[0])
    assert renew.renew() == {"renewed": 0, "expired": 0, "started": 0}, "within its lease: its record may come"
    assert r.zscore(KEYS.slots_held(pool), queued.id) == until, "a queued holder's lease is not renewed"
    two.clock.now += timedelta(seconds=31)
    assert renew.renew() == {"renewed": 0, "expired": 0, "started": 1}, "its lease ran out: another start record"
    two.step_engines()
    assert two.run(second).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert _held(r, pool) == [queued.id]
