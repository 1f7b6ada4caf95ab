"""② Consumer groups: reclaiming, dead letters, and trimming that never loses undelivered or pending work."""

from __future__ import annotations

import time

import redis

from orchestrator.events.stream import StreamConsumer, safe_trim

STREAM, GROUP = "s", "g"


def _consumer(r: redis.Redis, name: str, batch: int = 1000) -> StreamConsumer:
    consumer = StreamConsumer(r, [STREAM], GROUP, name, batch_size=batch, block_s=0.01)
    consumer.ensure_groups()
    return consumer


def _fill(r: redis.Redis, n: int) -> list[str]:
    return [r.xadd(STREAM, {"n": i}).decode() for i in range(n)]


def test_entries_added_before_the_group_existed_are_delivered(r: redis.Redis) -> None:
    _fill(r, 3)
    assert [e.fields[b"n"] for e in _consumer(r, "c1").read(block=False)] == [b"0", b"1", b"2"]


def test_acknowledging_inside_a_transaction(r: redis.Redis) -> None:
    _fill(r, 2)
    consumer = _consumer(r, "c1")
    entries = consumer.read(block=False)
    pipe = r.pipeline(transaction=True)
    consumer.ack(pipe, entries)
    pipe.execute()
    assert r.xpending(STREAM, GROUP)["pending"] == 0


def test_entries_of_a_dead_consumer_are_reclaimed(r: redis.Redis) -> None:
    ids = _fill(r, 3)
    _consumer(r, "dead").read(block=False)  # read, never acknowledged

    claimed = _consumer(r, "alive").claim_idle(min_idle_s=0)

    assert [e.id for e in claimed] == ids
    assert {c["name"]: c["pending"] for c in r.xinfo_consumers(STREAM, GROUP)} == {b"dead": 0, b"alive": 3}


def test_entries_delivered_too_often_are_dead_lettered_with_the_reason(r: redis.Redis) -> None:
    (entry_id,) = _fill(r, 1)
    consumer = _consumer(r, "c1")
    consumer.read(block=False)
    consumer.claim_idle(0)
    consumer.claim_idle(0)

    (found,) = consumer.over_delivered(min_idle_s=0, max_deliveries=3)
    assert found == (STREAM, entry_id, 3)
    consumer.dead_letter("dead", STREAM, entry_id, 3, "boom", maxlen=100)

    (dead,) = r.xrange("dead")
    assert dead[1][b"id"] == entry_id.encode() and dead[1][b"reason"] == b"boom"
    assert dead[1][b"payload_n"] == b"0", "the original entry travels with the dead letter"
    assert r.xpending(STREAM, GROUP)["pending"] == 0


def test_trimming_keeps_every_undelivered_and_pending_entry(r: redis.Redis) -> None:
    ids = _fill(r, 100)
    consumer = _consumer(r, "c1", batch=30)
    delivered = consumer.read(block=False)  # 30 delivered
    pipe = r.pipeline()
    consumer.ack(pipe, delivered[:20])  # 20 acknowledged, 10 pending, 70 never delivered
    pipe.execute()

    removed = safe_trim(r, STREAM, retention_s=0)

    assert removed == 20
    assert [e[0].decode() for e in r.xrange(STREAM)] == ids[20:]
    claim = r.xautoclaim(STREAM, GROUP, "c2", 0, "0-0", count=100)
    assert len(claim[1]) == 10 and not claim[2], "no pending entry was deleted under the consumer"


def test_trimming_keeps_entries_a_second_group_has_not_read(r: redis.Redis) -> None:
    _fill(r, 10)
    fast = _consumer(r, "c1")
    pipe = r.pipeline()
    fast.ack(pipe, fast.read(block=False))
    pipe.execute()
    r.xgroup_create(STREAM, "slow", id="0")

    assert safe_trim(r, STREAM, retention_s=0) == 0
    assert r.xlen(STREAM) == 10


def test_trimming_keeps_recent_entries_and_needs_a_group(r: redis.Redis) -> None:
    _fill(r, 5)
    assert safe_trim(r, STREAM, retention_s=0) == 0, "without a consumer group nothing is known to be processed"
    consumer = _consumer(r, "c1")
    pipe = r.pipeline()
    consumer.ack(pipe, consumer.read(block=False))
    pipe.execute()
    assert safe_trim(r, STREAM, retention_s=3600) == 0, "processed but younger than the retention"
    # a moment later (entries of the current millisecond are not older than a zero retention yet)
    assert safe_trim(r, STREAM, retention_s=0, now_s=time.time() + 1) == 5


def test_naive_maxlen_trimming_loses_undelivered_entries(r: redis.Redis) -> None:
    """Negative control: why orch never trims with MAXLEN."""
    _fill(r, 100)
    consumer = _consumer(r, "c1")
    r.xtrim(STREAM, maxlen=10, approximate=False)
    assert len(consumer.read(block=False)) == 10, "90 accepted entries vanished without ever being delivered"
