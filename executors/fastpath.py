"""The fast execution path's Redis side: claim jobs, mark them started and finished, hand them back.

Jobs stay ordinary RQ jobs (`rq:job:<id>` hashes in `rq:queue:<name>` lists), so `rq info` and
rq-dashboard keep working, but a worker spends far fewer commands per job than RQ's own:

    claim    claim.lua moves up to N ids from the queues to `<p>:worker:<name>:claimed` (LMOVE each)
             and returns their hashes (HGETALL each): the reliable-queue pattern, batched when busy;
             an idle worker blocks in BLMOVE instead (see idle.py)
    start    HSET status/started_at/worker_name + ZADD to RQ's StartedJobRegistry (rq:wip:<queue>)
    finish   HSET status/ended_at (+exc_info), EXPIRE (result or failure TTL), ZADD to RQ's finished or
             failed registry, ZREM rq:wip, LREM from the claimed list, HINCRBY the queue's tasks finished
             this minute (orchestrator/catalog/fleet.py; EXPIRE too, once an hour)

The runner's records ride along (Ledger.report): a job's start goes out with its `started` record,
and its finish and `succeeded`/`failed` record with the next job's start or the next claim, so a busy
worker pays about one round trip and 12 commands per job in all, the runner's records included (RQ
3.0's SimpleWorker: about 60 commands over many round trips; tests/integration measures both).
Within one round trip the commands are applied in order, and every prefix of them leaves a state
recover() handles.
A failure also gets RQ's result stream entry (`rq:results:<id>`, its traceback); a success does not
(orch keeps each result in its run). Not done, unlike RQ's worker: no execution hashes, no worker
counters per job (the heartbeat carries them), no dependents (orch jobs have none), no callbacks
(OrchJob refuses them).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError
from rq.job import Job
from rq.results import Result
from rq.utils import now, utcformat

from orchestrator.catalog.fleet import FinishedCounter
from orchestrator.state import pipeline
from orchestrator.state.keys import Keys
from orchestrator.state.lua import Scripts
from orchestrator.state.rq_keys import RQ_PREFIX, job_key, queue_key, registry_key

from .jobs import OrchJob
from .serializer import JSONSerializer

__all__ = ["RQ_PREFIX", "ClaimedJob", "Ledger", "job_key", "queue_key", "registry_key",
           "release"]

log = logging.getLogger(__name__)

_UNREAD_TIMES = frozenset((b"created_at", b"enqueued_at", b"started_at", b"ended_at", b"last_heartbeat"))


@dataclass
class ClaimedJob:
    """A job taken from a queue: its RQ job (restored without a round trip) and where it came from."""

    id: str
    job: OrchJob
    claimed_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_hash(cls, client: redis.Redis, job_id: str, fields: Sequence[bytes]) -> ClaimedJob:
        """The job of hash `fields`, restored as RQ does but for two costs this worker has no use for, a
        tenth of its CPU per job: RQ's check of a serializer it is given (isinstance of a runtime Protocol),
        and parsing the job's timestamps with strptime (it never reads them; it writes its own)."""
        job = OrchJob(job_id, connection=client)
        job.serializer = JSONSerializer
        job.restore({k: v for k, v in zip(fields[::2], fields[1::2], strict=True) if k not in _UNREAD_TIMES})
        return cls(job_id, job)

    @property
    def origin(self) -> str:
        return str(self.job.origin)

    @property
    def payload(self) -> dict[str, Any]:
        """The entry point's argument (empty if the job is not an orch job; it fails when it runs)."""
        return self.job.payload


class Ledger:
    """Writes a worker's bookkeeping and its runner's records, batched into as few round trips as safe.

    A job's start goes out with its `started` record; its `succeeded`/`failed` record and its finish
    ride along with the next job's start or the next claim (microseconds later, or before any wait)."""

    def __init__(self, client: redis.Redis, scripts: Scripts, worker: str, claimed_key: str, *,
                 result_ttl_s: int, failure_ttl_s: int, counter: FinishedCounter | None = None) -> None:
        self._client = client
        self._counter = counter  # tasks finished per queue and minute (GET /workers' throughput)
        self._scripts = scripts
        self._worker = worker
        self._claimed = claimed_key
        self._result_ttl_s = result_ttl_s
        self._failure_ttl_s = failure_ttl_s
        self._pending: list[tuple[Any, ...]] = []  # finishes not yet sent: kept until Redis has them
        self._staged: list[tuple[Any, ...]] = []  # the current job's start, sent with its `started` record
        self._counts: list[tuple[Any, ...]] = []  # finished-task counts, sent once with the next finishes
        self.started_sent = False  # whether the current job's start has reached Redis
        self.unreadable = 0  # jobs of the last claim failed at once, unread (see _claimed_jobs)

    def stage(self, commands: Iterable[tuple[Any, ...]]) -> None:
        """Hold the current job's start until the runner reports it started (one round trip for both)."""
        self._staged = list(commands)
        self.started_sent = False

    def report(self, stream: str, fields: dict[str, Any], *, now: bool) -> None:
        """A runner's record (XADD to `stream`): sent at once with what is pending and staged when `now`
        (a `started` record must be in Redis before the task runs), else queued for the next send."""
        command = ("XADD", stream, "*", *pipeline.flat(fields))
        staged, self._staged = self._staged, []
        if now:
            self.send([*staged, command])
            self.started_sent = True
        else:
            self._pending += [*staged, command]

    def send(self, extra: Iterable[tuple[Any, ...]] = (), claim: tuple[Sequence[str], int] | None = None, *,
             client: redis.Redis | None = None, waited: bool = False) -> list[Any]:
        """Send pending finishes, then `extra` commands, then (optionally) a claim; the replies after the finishes.

        Pending finishes that Redis did not apply stay pending for the next call: all of them on a
        connection error, the refused ones on refusals that may pass (OOM, READONLY, MISCONF, an ACL being
        fixed; they are idempotent, so sending them again is safe, and a result record is not dropped for
        them). A final refusal (ERR, such as an EXPIRE of a forged TTL, or WRONGTYPE, see _passes) drops its
        command, with an error in the log: kept, it would stop the worker for good. `extra` and the claim do
        not stay (the caller hands back what it holds, see FastWorker._resync). The finished-task counts go
        with the finishes once, best effort: an increment is not idempotent, and it only feeds a view."""
        counts, self._counts = self._counts, []
        commands = [*self._pending, *counts, *extra]
        if claim is not None:
            queues, count = claim
            keys = [self._claimed, *queues]
            commands.append(("EVALSHA", self._scripts.sha("claim"), len(keys), *keys, count,
                             Job.redis_job_namespace_prefix, *(["1"] if waited else [])))
        if not commands:
            return []
        replies = pipeline.send(client or self._client, commands)
        sent, skip = len(self._pending), len(self._pending) + len(counts)
        kept: list[tuple[Any, Exception]] = []
        for command, reply in zip(self._pending, replies[:sent], strict=True):
            if isinstance(reply, Exception) and _passes(reply):
                kept.append((command, reply))
            elif isinstance(reply, Exception):
                log.error("worker %s: Redis refused %s %s for good (%s); dropped", self._worker, command[0],
                          _text(command[1]), reply)
        self._pending = [c for c, _ in kept]
        for reply in [*(r for _, r in kept), *replies[skip:]]:
            if isinstance(reply, NoScriptError):  # only the claim can be: the rest was applied, idempotent
                self._scripts.forget()
                return [*replies[skip:-1], *self.send(claim=claim, waited=waited)]
            if isinstance(reply, Exception):
                raise reply
        return list(replies[skip:])

    def claim(self, queues: Sequence[str], count: int) -> list[ClaimedJob]:
        """Claim up to `count` jobs (sending pending finishes in the same round trip)."""
        return self._claimed_jobs(self.send(claim=(queues, count))[-1])

    def fetch(self, job_id: str, queues: Sequence[str] = (), top_up: int = 0) -> list[ClaimedJob]:
        """The job an idle wait moved into the claimed list (nothing, and dropped, if its hash is gone),
        followed by up to `top_up` more claimed in the same round trip."""
        replies = self.send([("HGETALL", job_key(job_id))], claim=(queues, top_up) if top_up > 0 else None)
        fields = replies[0]
        if not fields:
            self._client.lrem(self._claimed, -1, job_id)
        first = [(job_id, pipeline.flat(fields))] if fields else []
        return self._claimed_jobs([*first, *(replies[1] if top_up > 0 else [])])

    def wait(self, queue: str, block_s: float, queues: Sequence[str], top_up: int) -> list[ClaimedJob]:
        """Wait up to `block_s` for a job in `queue` (BLMOVE into the claimed list), and in the same round trip
        read its hash and claim up to `top_up` more: claim.lua, written after the BLMOVE, runs as it returns.
        The job comes first; an idle worker's pickup has no round trip of its own."""
        moved, reply = self.send([("BLMOVE", queue, self._claimed, "LEFT", "RIGHT", block_s)],
                                 claim=(queues, max(0, top_up)), waited=True)
        job_id = _text(moved) if moved is not None else None
        head, rest = (reply[0], reply[1:]) if reply else (None, [])
        if job_id is not None and not (head and _text(head[0]) == job_id):
            head = None  # not last in the list any more: its hash was gone (dropped), or a recovery took it back
        return self._claimed_jobs([head, *rest] if job_id is not None and head else rest)

    def _claimed_jobs(self, reply: Any) -> list[ClaimedJob]:
        jobs = []
        self.unreadable = 0  # of the last claim: jobs failed at once (the queue may hold more after them)
        for raw_id, fields in reply or []:
            job_id = _text(raw_id)
            try:
                if isinstance(raw_id, bytes):
                    raw_id.decode()  # an id that is not UTF-8 is no orch job (a forgery): dropped below
                jobs.append(ClaimedJob.from_hash(self._client, job_id, fields))
            except Exception as exc:  # a hash RQ could not read either: drop it rather than fail the worker
                log.warning("job %s cannot be read (%s); dropped: the engine retries its task as JobLost",
                            job_id, exc)
                self.unreadable += 1
                raw = raw_id if isinstance(raw_id, bytes) else job_id.encode()
                self._pending.append(("DEL", job_key("").encode() + raw))
                self._pending.append(("LREM", self._claimed, -1, raw))
        return jobs

    def start_commands(self, claimed: ClaimedJob, timeout_s: float) -> list[tuple[Any, ...]]:
        """Mark the job started (RQ status and StartedJobRegistry), scored like RQ: until it may run."""
        moment = now()
        stamp = utcformat(moment)
        claimed.job.started_at = moment
        expires = int(moment.timestamp() + timeout_s) + 60
        return [("HSET", job_key(claimed.id), "status", "started", "started_at", stamp, "last_heartbeat", stamp,
                 "worker_name", self._worker),
                ("ZADD", registry_key("started", claimed.origin), expires, f"{claimed.id}:{self._worker}")]

    def finish(self, claimed: ClaimedJob, error: str | None = None) -> None:
        """Queue the job's end (finished, or failed with `error`) for the next send."""
        key = job_key(claimed.id)
        stamp = utcformat(now())
        if error is None:
            ttl = claimed.job.result_ttl if claimed.job.result_ttl is not None else self._result_ttl_s
            self._pending.append(("HSET", key, "status", "finished", "ended_at", stamp))
            registry = registry_key("finished", claimed.origin)
        else:
            ttl = claimed.job.failure_ttl if claimed.job.failure_ttl is not None else self._failure_ttl_s
            self._pending.append(("HSET", key, "status", "failed", "ended_at", stamp,
                                  "exc_info", zlib.compress(error.encode())))
            self._add_failure_result(claimed, error, ttl)
            registry = registry_key("failed", claimed.origin)
        if ttl == 0:
            self._pending.append(("DEL", key))
        elif ttl > 0:
            self._pending.append(("EXPIRE", key, ttl))
        if ttl != 0:
            self._pending.append(("ZADD", registry, "+inf" if ttl < 0 else int(time.time()) + ttl, claimed.id))
        self._pending.append(("ZREM", registry_key("started", claimed.origin), f"{claimed.id}:{self._worker}"))
        self._pending.append(("LREM", self._claimed, -1, claimed.id))
        if self._counter is not None:
            self._counts += self._counter.commands(claimed.origin, time.time())

    def _add_failure_result(self, claimed: ClaimedJob, error: str, ttl: int) -> None:
        """RQ's result stream entry for a failure (job.latest_result(), rq-dashboard); successes get none."""
        result = Result(claimed.id, Result.Type.FAILED, self._client, exc_string=error, worker_name=self._worker,
                        serializer=JSONSerializer)
        fields = pipeline.flat(result.serialize())
        stream = f"{RQ_PREFIX}results:{claimed.id}"  # Result.get_key
        self._pending.append(("XADD", stream, "MAXLEN", 10, "*", *fields))
        self._pending.append(("PERSIST", stream) if ttl < 0 else ("EXPIRE", stream, max(ttl, 1)))

    def release(self, keys: Keys, mode: str, reason: str = "") -> tuple[list[str], list[str]]:
        """Run release.lua for this worker (see its header for the modes)."""
        return release(self._client, self._scripts, keys, self._worker, mode, reason)

    def trim_registries(self, rq_queues: Iterable[str]) -> None:
        """Drop expired entries from RQ's finished and failed registries (RQ's workers do it in maintenance)."""
        stamp = int(time.time())
        pipe = self._client.pipeline(transaction=False)
        for name in rq_queues:
            pipe.zremrangebyscore(registry_key("finished", name), 0, stamp)
            pipe.zremrangebyscore(registry_key("failed", name), 0, stamp)
        pipe.execute()


def release(client: redis.Redis, scripts: Scripts, keys: Keys, worker: str, mode: str, reason: str = "",
            error_type: str = "WorkerLost") -> tuple[list[str], list[str]]:
    """Hand back what `worker` claimed (release.lua): (requeued ids, ids of started jobs marked failed,
    whose `failed` records the script appended in the same step)."""
    moment = now()
    args = [worker, mode, int(moment.timestamp()), utcformat(moment), reason, RQ_PREFIX, error_type]
    script_keys = [keys.worker(worker), keys.worker_claimed(worker), keys.workers, keys.results]
    requeued, failed = scripts.call("release", script_keys, args)
    return [_text(i) for i in requeued], [_text(i) for i in failed]



def _passes(refusal: Exception) -> bool:
    """Whether a refused command may go through later. Only the refusals that a command's own arguments or
    keys cause are final: ERR (an invalid EXPIRE time, a bad argument) and WRONGTYPE. Any other (OOM,
    READONLY, MISCONF, NOREPLICAS, an ACL, a code a proxy or a managed Redis sends) is waited out."""
    return not (getattr(refusal, "status_code", None) == "ERR" or str(refusal).startswith("WRONGTYPE"))


def _text(value: Any) -> str:
    """An id or key for messages and results (bytes that are not UTF-8 are shown escaped, never raised on)."""
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)
