"""Every Lua script orch runs, from one place: `orchestrator/state/scripts/*.lua`.

    publish.lua        events in: dedup on (source, id) + XADD (every publisher, webhooks included)
    fire_tick.lua      one cron tick, decided once across replicas, published like any event
    read_runs.lua      the engine reads a batch's runs under WATCH (skipping the ones it holds)
    read_guards.lua    the engine reads schedule overlap guards under WATCH
    read_slots.lua     the engine reads a batch's slot pools under WATCH
    release_guard.lua  a guarded run ended: free the guard, re-publish the event queue-one held
    slot_release.lua   a run with a slot pool ended: its slot goes to the next run in line
    slot_renew.lua     the engine renews the leases of a pool's live holders; expired ones free their slot
    claim.lua          a worker takes jobs from its queues into its claimed list (reliable queue)
    release.lua        a worker's claimed jobs go back (or fail, with their WorkerLost records)
    append_log.lua     a worker appends lines to a task attempt's log, keeping its newest within the caps
    read_log.lua       attempt logs' lines after the ones a reader has, with what was dropped
    flow_decide.lua    a hold-back control decides once what becomes of one event (start, hold, merge, drop)
    flow_release.lua   due holds of hold-back controls go to the results stream, one entry each
    forget_consumer.lua  delete a dead engine's consumer from the group, only once it holds no entry
    ack_settled.lua    the engine acknowledges a batch that only settles entries, if no step waits for them
    give_back.lua      a job an idle waiter took goes back to its queue, if its worker still holds it

Each starts with a header stating its KEYS, ARGV and what it returns (a test checks). A line
`--@include NAME` inserts `scripts/lib/NAME.lua`, a snippet defining local functions: the publish step
(dedup + XADD) is written once, in lib/publish_one.lua, and used by publish.lua and fire_tick.lua; giving
free slots to the runs in line, in lib/promote.lua, used by slot_release.lua and slot_renew.lua.

How to call them:
    register(client, name)   a redis-py Script for a sync or asyncio client: EVALSHA, loading the script
                             on NOSCRIPT; queued on a pipeline, it is loaded before the pipeline runs
    source(name)             the text, for EVAL inside MULTI, where NOSCRIPT would not undo the rest
    watch_and_read(pipe, watched, name, keys, args)   WATCH, then a read script, in one round trip
    read_watch_and_read(pipe, before, ...)   the same, after other reads, still one round trip
    call_read_only(client, name, keys, args)   a script that only reads, as EVALSHA_RO (read-only ACLs)
    Scripts(client)          SHAs loaded once per client, for callers that send raw EVALSHA commands in
                             their own pipelines (the worker's Ledger), with `forget()` after NOSCRIPT
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
import redis.client
from redis.exceptions import NoScriptError, ResponseError

from . import pipeline

__all__ = ["NAMES", "Scripts", "call_read_only", "read_watch_and_read", "register", "source", "watch_and_read"]

NAMES = ("publish", "fire_tick", "read_runs", "read_guards", "read_slots", "release_guard", "slot_release",
         "slot_renew", "claim", "release", "append_log", "read_log", "flow_decide", "flow_release",
         "forget_consumer", "ack_settled", "give_back")
_INCLUDE = re.compile(r"^--@include (?P<name>[a-z_]+)$", re.MULTILINE)


def _read(relative: str) -> str:
    return resources.files("orchestrator.state").joinpath(f"scripts/{relative}").read_text(encoding="utf-8")


@functools.cache
def source(name: str) -> str:
    """The full text of script `name`, its `--@include` lines replaced by the snippets they name."""
    if name not in NAMES:
        raise KeyError(f"no Lua script {name!r} (scripts: {', '.join(NAMES)})")
    return _INCLUDE.sub(lambda m: _read(f"lib/{m['name']}.lua").rstrip("\n"), _read(f"{name}.lua"))


def register(client: Any, name: str) -> Any:
    """Script `name` registered on `client` (redis.Redis or redis.asyncio.Redis)."""
    return client.register_script(source(name))


@functools.cache
def _sha(name: str) -> str:
    return hashlib.sha1(source(name).encode("utf-8"), usedforsecurity=False).hexdigest()


def call_read_only(client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run script `name`, which only reads, as EVALSHA_RO: a read-only ACL key pattern (`%R~`, the api
    role's) allows it where EVALSHA counts every key as written. On NOSCRIPT it loads the script; on Redis
    6.2, which has neither EVALSHA_RO nor read-only patterns, it runs EVALSHA."""
    try:
        return _evalsha_ro(client, name, keys, args)
    except NoScriptError:
        client.script_load(source(name))
        return _evalsha_ro(client, name, keys, args)


def _evalsha_ro(client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        return client.evalsha_ro(_sha(name), len(keys), *keys, *args)
    except ResponseError as exc:
        if "unknown command" not in str(exc).lower():
            raise
        return client.evalsha(_sha(name), len(keys), *keys, *args)


class Scripts:
    """Scripts loaded (SCRIPT LOAD) once per client and called by SHA: no SCRIPT EXISTS per call."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._sha: dict[str, str] = {}

    def sha(self, name: str) -> str:
        if name not in self._sha:
            self._sha[name] = str(self._client.script_load(source(name)))
        return self._sha[name]

    def forget(self) -> None:
        """After NOSCRIPT (Redis restarted or flushed its scripts): load them again on next use."""
        self._sha.clear()

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return self._client.evalsha(self.sha(name), len(keys), *keys, *args)
        except NoScriptError:
            self.forget()
            return self._client.evalsha(self.sha(name), len(keys), *keys, *args)


def watch_and_read(pipe: redis.client.Pipeline, watched: Sequence[str], name: str, keys: Sequence[str],
                   args: Sequence[Any]) -> Any:
    """WATCH `watched`, then run script `name` (a read) on the same connection: both commands are written
    at once and their replies read in order, one round trip where `pipe.watch` and a call would take two
    (the engine's idle latency is mostly round trips). EVALSHA, then EVAL with the text after NOSCRIPT,
    which is harmless here: still under WATCH, before MULTI. A connection error drops the connection and
    the watch with it, as `pipe.watch` would: raised, or as a WatchError (retry the commit) when keys were
    already watched."""
    return read_watch_and_read(pipe, (), watched, name, keys, args)[1]


def read_watch_and_read(pipe: redis.client.Pipeline, before: Sequence[tuple[Any, ...]], watched: Sequence[str],
                        name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[list[Any], Any]:
    """`watch_and_read` with the read commands `before` written ahead of the WATCH, in the same round trip:
    (their replies, parsed as the client would, a refusal raised; the script's reply)."""
    conn = pipe.connection
    if conn is None:
        conn = pipe.connection = pipe.connection_pool.get_connection()
    call = ("EVALSHA", _sha(name), len(keys), *keys, *args)
    watching = pipe.watching
    try:
        conn.send_packed_command([pipeline.pack([*before, ("WATCH", *watched), call])])
        first = [pipeline.reply(pipe, conn, str(command[0])) for command in before]
        watch_reply, reply = pipeline.reply(pipe, conn, "WATCH"), pipeline.reply(pipe, conn, "EVALSHA")
    except BaseException as exc:  # lost, or interrupted between the two replies: out of step for good
        conn.disconnect()
        if watching and isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            # what it watched before is lost with the connection: retry, as pipe.watch would say
            raise redis.WatchError(f"a connection error occurred while watching keys: {exc}") from exc
        raise
    if isinstance(watch_reply, Exception):
        raise watch_reply
    pipe.watching = True  # before raising a refused read: the pipeline's reset then unwatches
    for answer in first:
        if isinstance(answer, Exception):
            raise answer
    if isinstance(reply, NoScriptError):
        return first, pipe.execute_command("EVAL", source(name), len(keys), *keys, *args)
    if isinstance(reply, Exception):
        raise reply
    return first, reply
