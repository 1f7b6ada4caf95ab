"""Waiting for work without polling: BLMOVE from the queues into the worker's claimed list.

BLMOVE blocks on one list. A worker of one queue blocks in its main thread, its job's hash read in the same
round trip (fastpath.Ledger.wait: claim.lua written after the BLMOVE). A worker of several queues
runs one waiter thread per queue (each with its own connection), armed only while the worker is idle:
the first job to arrive wakes it, and a job a waiter takes after the worker found other work goes back
to the front of its queue at once (give_back.lua: only if the worker still holds it, since a resync may
have handed it back already), so an idle wait never hoards jobs. An id that is not UTF-8 is no orch job:
it is dropped with its hash, as a hash RQ cannot read is.
Either way the id is in the claimed list from the moment it leaves the queue (the reliable-queue
pattern): a worker that dies while waiting leaves nothing that recover() cannot find.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

import redis

from orchestrator.backoff import RideOut
from orchestrator.state.keys import Keys
from orchestrator.state.lua import register
from orchestrator.state.rq_keys import job_key

from .heartbeat import clone_client

__all__ = ["IdleWait"]

log = logging.getLogger(__name__)


class IdleWait:
    """Blocks up to `block_s` at a time until jobs arrive; returns their ids (already claimed)."""

    def __init__(self, client: redis.Redis, queue_keys: Sequence[str], claimed_key: str, keys: Keys,
                 block_s: float = 1.0) -> None:
        self._client = client
        self._keys = keys  # where the waiter threads count the Redis errors they ride out
        self._queues = list(queue_keys)
        self._claimed = claimed_key
        self._block_s = block_s
        self._lock = threading.Lock()
        self._armed = threading.Event()
        self._closed = threading.Event()
        self._handoff: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []  # started on the first wait, for several queues
        # a waiter's BLMOVE failed: Redis may have moved a job whose id never came back, so the worker must
        # hand back its claimed list (Worker._resync) or that job would wait there until the worker stops
        self.lost_reply = False

    @property
    def block_s(self) -> float:
        return self._block_s

    def wait(self) -> list[str]:
        """Wait up to `block_s` for a job; the ids of the jobs that arrived (often one, possibly none). A worker
        of one queue waits in its own round trip instead (Ledger.wait)."""
        if not self._threads:
            for key in self._queues:
                thread = threading.Thread(target=self._waiter, args=(key,), name=f"wait-{key}", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._armed.set()
        try:
            first = self._handoff.get(timeout=self._block_s)
        except queue.Empty:
            return []  # stay armed: the next wait() would arm again anyway
        return [first, *self.pause()]

    def pause(self) -> list[str]:
        """Disarm (the worker has work); the ids delivered meanwhile, which the worker now holds."""
        if not self._threads:
            return []
        with self._lock:
            self._armed.clear()
            return self._drain()

    def close(self) -> list[str]:
        """Stop the waiters (within `block_s`); ids delivered but not taken, still in the claimed list."""
        self._closed.set()
        with self._lock:
            self._armed.clear()
        for thread in self._threads:
            thread.join(timeout=self._block_s + 5)
        with self._lock:
            return self._drain()

    def _drain(self) -> list[str]:
        ids = []
        while True:
            try:
                ids.append(self._handoff.get_nowait())
            except queue.Empty:
                return ids

    def _waiter(self, key: str) -> None:
        client = clone_client(self._client)
        give_back = register(client, "give_back")
        ride = RideOut("worker", log, self._keys)  # the main thread's errors reach the worker loop instead
        try:
            while not self._closed.is_set():
                if not self._armed.wait(timeout=self._block_s):
                    continue
                try:
                    moved = client.blmove(key, self._claimed, self._block_s, "LEFT", "RIGHT")
                    if moved is not None:
                        self._deliver(client, give_back, key, moved)
                    ride.ok(client)
                except redis.RedisError as exc:
                    self.lost_reply = True
                    self._closed.wait(ride.failed(exc))
        finally:
            client.close()

    def _deliver(self, client: redis.Redis, give_back: Any, key: str, moved: bytes) -> None:
        try:
            job_id = moved.decode()
        except UnicodeDecodeError:
            log.warning("queue %s held %r, not a job id (not UTF-8); dropped with its hash", key, moved)
            client.pipeline().lrem(self._claimed, -1, moved).delete(job_key("").encode() + moved).execute()
            return
        with self._lock:  # held while giving back too: the worker's resync (pause, then release) waits for it
            if self._armed.is_set() and not self._closed.is_set():
                self._handoff.put(job_id)
                return
            # the worker is busy or leaving: the job goes back to the front of its queue, if it still holds it
            give_back(keys=[self._claimed, key], args=[job_id], client=client)
