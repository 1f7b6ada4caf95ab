"""An idle worker of one queue picks a job up in one round trip (Ledger.wait): BLMOVE into its claimed list,
then claim.lua, written after it, reads that job's hash and tops up; Redis counts the round trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from executors.fastpath import Ledger, job_key, queue_key
from orchestrator.cli.wiring import load_project
from orchestrator.settings import Settings
from orchestrator.state.lua import Scripts
from orchestrator.workflows.runs import job_id

from ..helpers import RedisServer, wait_for
from ..projects import make_project
from .test_maintenance import cost
from .test_worker_fastpath import KEYS, WORKFLOWS, dispatch

QUEUE = queue_key("orch.default")


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, project=load_project(make_project(tmp_path / "p", workflows=WORKFLOWS)).root)


@pytest.fixture
def ledger(r: redis.Redis) -> Ledger:
    return Ledger(r, Scripts(r), "w-test", KEYS.worker_claimed("w-test"), result_ttl_s=60, failure_ttl_s=60)


def test_a_waiting_worker_gets_the_job_its_hash_and_a_top_up_in_one_round_trip(
        r: redis.Redis, settings: Settings, ledger: Ledger) -> None:
    ledger.claim([QUEUE], 0)  # the script loaded
    dispatch(r, settings, [("noop", [i]) for i in range(3)])

    taken = cost(r, lambda: ledger.wait(QUEUE, 1.0, [QUEUE], 1))
    assert taken.round_trips == 1, taken
    assert taken.calls.get("blmove") == 1 and taken.calls.get("evalsha") == 1, taken.calls
    claimed = r.lrange(KEYS.worker_claimed("w-test"), 0, -1)
    assert claimed == [job_id(f"run{i:04d}", "noop", 1).encode() for i in range(2)]
    assert r.lrange(QUEUE, 0, -1) == [job_id("run0002", "noop", 1).encode()]


def test_the_job_comes_first_with_its_payload_and_the_top_up_after(r: redis.Redis, settings: Settings,
        ledger: Ledger) -> None:
    dispatch(r, settings, [("noop", [i]) for i in range(3)])
    jobs = ledger.wait(QUEUE, 1.0, [QUEUE], 5)
    assert [j.id for j in jobs] == [job_id(f"run{i:04d}", "noop", 1) for i in range(3)]
    assert jobs[0].payload["run"] == "run0000" and jobs[0].origin == "orch.default"


def test_a_wait_that_times_out_returns_nothing_and_never_an_id_already_in_the_claimed_list(
        r: redis.Redis, settings: Settings, ledger: Ledger) -> None:
    [held] = dispatch(r, settings, [("noop", [1])])
    r.lmove(QUEUE, KEYS.worker_claimed("w-test"))  # claimed earlier (its finish not sent yet, say)
    assert ledger.wait(QUEUE, 0.1, [QUEUE], 3) == []
    assert r.lrange(KEYS.worker_claimed("w-test"), 0, -1) == [held.job_id.encode()]


def test_a_job_whose_hash_is_gone_is_dropped(r: redis.Redis, settings: Settings, ledger: Ledger) -> None:
    [gone] = dispatch(r, settings, [("noop", [1])])
    r.delete(job_key(gone.job_id))
    assert ledger.wait(QUEUE, 1.0, [QUEUE], 0) == []
    assert r.llen(KEYS.worker_claimed("w-test")) == 0


def test_after_a_script_flush_the_wait_still_delivers_the_job(r: redis.Redis, settings: Settings,
        ledger: Ledger) -> None:
    ledger.claim([QUEUE], 0)
    r.script_flush()
    dispatch(r, settings, [("noop", [1])])
    assert [j.id for j in ledger.wait(QUEUE, 1.0, [QUEUE], 0)] == [job_id("run0000", "noop", 1)]


def test_an_id_that_is_not_utf8_is_dropped_with_its_hash_and_the_next_job_still_comes(
        r: redis.Redis, settings: Settings, ledger: Ledger) -> None:
    forged = b"\xff\xfe"
    r.hset(job_key("").encode() + forged, mapping={"data": b"x", "origin": "orch.default"})
    r.rpush(QUEUE, forged)
    [real] = dispatch(r, settings, [("noop", [1])])
    assert ledger.wait(QUEUE, 1.0, [QUEUE], 0) == [], "the forged id, dropped (it ended the worker)"
    ledger.send()  # the drop goes out with the next round trip
    assert not r.exists(job_key("").encode() + forged)
    assert r.lrange(KEYS.worker_claimed("w-test"), 0, -1) == []
    assert [j.id for j in ledger.wait(QUEUE, 1.0, [QUEUE], 0)] == [real.job_id]


def test_a_finish_refused_while_redis_cannot_persist_stays_pending_and_goes_out_after() -> None:
    """MISCONF (a full disk: a failed BGSAVE stops writes) passes: the task's results record and its job's end
    are kept and sent again once Redis writes, never dropped (the job would then run again)."""
    server = RedisServer()
    try:
        r = server.client()
        ledger = Ledger(r, Scripts(r), "w-test", KEYS.worker_claimed("w-test"), result_ttl_s=60, failure_ttl_s=60)
        r.config_set("save", "3600 1")
        shutil.rmtree(server.dir)  # the next BGSAVE cannot write its file
        r.bgsave()
        wait_for(lambda: r.info("persistence")["rdb_last_bgsave_status"] == "err", 30, "the BGSAVE to fail")
        ledger.report(KEYS.results, {"r": "succeeded"}, now=False)
        with pytest.raises(redis.ResponseError, match="MISCONF"):
            ledger.send()
        r.config_set("stop-writes-on-bgsave-error", "no")  # the operator freed the disk, say
        ledger.send()
        assert r.xlen(KEYS.results) == 1
    finally:
        server.stop()
