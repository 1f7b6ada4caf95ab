"""Retained finished runs written straight into Redis, as the engine leaves them, fast enough for millions.

The commands RunStore.write_change queues for one real finished bench_one run (lifecycle.new_run, then its
worker's record applied by advance.apply_record: the engine's own pure code) are recorded once from a
pipeline's command stack, with the run id, the event id and the created ms turned into placeholders, and
replayed by a Lua loop, WRITE_BATCH runs per EVAL: each run gets its own ids (run ids of 24 hex digits, as
derive_run_id gives) and created ms, so it has the hash (with its retention TTL) and every index entry the
engine would have written. About 15 us per run in Redis, none in Python: 1,000,000 runs in well under a
minute, where building each run in Python (bench/maintenance.py) takes a few times longer.
check_written reads some back through RunStore to make sure the replay stays what the engine writes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from orchestrator.project import Project
from orchestrator.state.store import RunStore
from orchestrator.workflows.advance import Change, apply_record
from orchestrator.workflows.lifecycle import new_run
from orchestrator.workflows.records import RecordKind, TaskRecord
from orchestrator.workflows.runs import EventRef, RunStatus, TaskState, derive_run_id

__all__ = ["ReplayError", "RunWriter", "check_written", "finished_run", "run_template"]

WRITE_BATCH = 20_000      # runs per EVAL (about 0.3 s of Redis time)
WORKFLOW, RULE, EVENT_TYPE, SOURCE = "bench_one", "bench-noop", "bench.noop", "/bench"

# Replays one run's recorded commands for runs ARGV[2]..ARGV[3]: @@R@@, @@E@@ and @@MS@@ in any argument
# become the run id (24 hex digits, as derive_run_id), the event id (32) and the created ms (ARGV[4] + i).
#   KEYS  none (the keys are made up here; a bench Redis is not a cluster)
#   ARGV  JSON list of commands (lists of strings), first, last, base ms, salt
_REPLAY_LUA = """
local cmds = cjson.decode(ARGV[1])
local base, salt = tonumber(ARGV[4]), ARGV[5]
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  local run = string.sub(redis.sha1hex(salt .. 'r' .. i), 1, 24)
  local event = string.sub(redis.sha1hex(salt .. 'e' .. i), 1, 32)
  local ms = string.format('%.0f', base + i)
  for _, cmd in ipairs(cmds) do
    local args = {}
    for j, a in ipairs(cmd) do
      if string.find(a, '@@', 1, true) then
        a = string.gsub(string.gsub(string.gsub(a, '@@R@@', run), '@@E@@', event), '@@MS@@', ms)
      end
      args[j] = a
    end
    redis.call(unpack(args))
  end
end
return 1
"""


class ReplayError(RuntimeError):
    """The replayed runs are not what the engine writes; the message says how."""


def finished_run(project: Project, event_id: str, now: datetime) -> Change:
    """A bench_one run as the engine leaves it once its task succeeded (its worker's record applied)."""
    run_id = derive_run_id(RULE, SOURCE, event_id)
    change = new_run(run_id, project.workflows[WORKFLOW].spec, RULE, EventRef(event_id, SOURCE, EVENT_TYPE),
                     {"value": 1}, now, {"n": 1})
    for task in [t for t in change.run.tasks.values() if t.state is TaskState.QUEUED]:
        apply_record(change, TaskRecord(RecordKind.SUCCEEDED, run_id, task.node, task.attempt, now.timestamp(),
                                        worker="bench-worker", result=1, duration_s=0.001), now)
    if change.run.status is not RunStatus.SUCCEEDED:
        raise ReplayError(f"curves: a {WORKFLOW} run did not finish with its one task")
    return change


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_template(client: redis.Redis, store: RunStore, project: Project,
                 now: datetime | None = None) -> list[list[str]]:
    """The commands RunStore.write_change queues for one finished run, its ids and created ms as placeholders."""
    event_id = "e" * 32
    change = finished_run(project, event_id, now or datetime.now(UTC))
    created_ms = str(int(change.run.created_at.timestamp() * 1000))
    pipe = client.pipeline(transaction=False)
    store.write_change(pipe, change)
    commands = []
    for args, _ in pipe.command_stack:
        text = [_text(a).replace(change.run.id, "@@R@@").replace(event_id, "@@E@@") for a in args]
        if text[0].upper() == "ZADD":
            text = [t if t != created_ms else "@@MS@@" for t in text]
        commands.append(text)
    pipe.reset()
    return commands


class RunWriter:
    """Writes runs 0, 1, 2, ... of one template, WRITE_BATCH per EVAL; created ms increase with the number."""

    def __init__(self, client: redis.Redis, template: list[list[str]], n_max: int) -> None:
        self._client, self._template = client, json.dumps(template)
        self._script = client.register_script(_REPLAY_LUA)
        self._base_ms = int(time.time() * 1000) - n_max  # every run inside the retention window
        self.salt, self.written = "curve", 0

    def run_id(self, i: int) -> str:
        return hashlib.sha1(f"{self.salt}r{i}".encode()).hexdigest()[:24]  # noqa: S324 - an id, as in the Lua

    def load(self) -> None:
        self._client.script_load(_REPLAY_LUA)

    def write_to(self, total: int, log: Callable[[str], None]) -> float:
        """Write runs up to `total`; seconds taken."""
        t0 = time.perf_counter()
        while self.written < total:
            last = min(total, self.written + WRITE_BATCH) - 1
            self._script(args=[self._template, self.written, last, self._base_ms, self.salt])
            self.written = last + 1
        seconds = time.perf_counter() - t0
        log(f"curves: {total:,} retained runs ({seconds:.1f} s for the last {WRITE_BATCH:,}-run batches)")
        return seconds


def check_written(store: RunStore, writer: RunWriter, template: list[list[str]]) -> None:
    """The replayed runs read back as finished runs, in the indexes, with the template's fields."""
    for i in (0, writer.written - 1):
        run = store.get(writer.run_id(i))
        if run is None or run.status is not RunStatus.SUCCEEDED:
            raise ReplayError(f"curves: replayed run {i} reads back as {run and run.status}")
    hset = next(cmd for cmd in template if cmd[0].upper() == "HSET")
    fields = {f.decode() for f in store._redis.hkeys(store.keys.run(writer.run_id(0)))}  # noqa: SLF001
    if fields != set(hset[2::2]):
        raise ReplayError(f"curves: replayed run fields {sorted(fields)} differ from {sorted(hset[2::2])}")
    if store._redis.zcard(store.keys.runs) != writer.written:  # noqa: SLF001
        raise ReplayError("curves: the runs index does not hold every written run")
