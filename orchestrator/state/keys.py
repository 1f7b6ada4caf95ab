"""Every Redis key and stream orch uses: name, type, owner (the only writer) and lifetime.

All names start with the deployment prefix (`ORCH_KEY_PREFIX`, default `orch`), so several deployments
and other applications can share one Redis. RQ's own keys (`rq:job:*`, `rq:queue:*`, registries) are
RQ's; orch only chooses the queue names, `<prefix>.<queue>`.

| key                              | type   | written by            | lifetime                                   |
|----------------------------------|--------|-----------------------|--------------------------------------------|
| <p>:events                       | stream | publishers (Lua)      | trimmed by the engine, never below the     |
|                                  |        |                       | oldest pending/undelivered entry           |
| <p>:events:dead                  | stream | engine                | capped at DEAD_LETTER_MAXLEN entries       |
| <p>:dedup:<hash(source,id)>      | string | publishers (Lua)      | event_dedup_window_s                       |
|                                  |        | and the engine (run   |                                            |
|                                  |        | lifecycle events)     |                                            |
| <p>:decisions:<entry id>         | string | engine (MULTI)        | events_retention_s: JSON of the rules one  |
|                                  |        |                       | event matched (run ids) and why others     |
|                                  |        |                       | did not (events/decisions.py)              |
| <p>:results                      | stream | workers               | trimmed like events (results_retention_s)  |
| <p>:run:<run_id>                 | hash   | engine (WATCH/MULTI)  | run_retention_s after the run finished     |
| <p>:runs                         | zset   | engine                | entries older than run_retention_s removed |
| <p>:runs:status:<status>         | zset   | engine                | as above                                   |
| <p>:runs:workflow:<name>         | zset   | engine                | as above                                   |
| <p>:runs:workflow:<name>:<status>| zset   | engine                | as above (runs of one workflow and status) |
| <p>:runs:workflows               | set    | engine                | workflows that have run indexes (trimmed   |
|                                  |        |                       | without scanning the keyspace)             |
| <p>:engine:errors                | hash   | engine                | field removed when its entry is settled    |
| <p>:engines                      | zset   | engine (maintenance)  | consumer -> last heartbeat (ms); members   |
|                                  |        |                       | silent for a day removed                   |
| <p>:schedule:<name>:tick:<ms>    | string | orch triggers (Lua)   | fencing token of one tick: the replica     |
|                                  |        |                       | that fired it; max(catchup window, 1 day)  |
| <p>:schedule:<name>:last         | string | orch triggers (Lua)   | permanent: epoch ms of the newest tick     |
|                                  |        |                       | decided (fired or counted missed)          |
| <p>:schedule:<guard>:active      | string | engine (MULTI)        | run id of the running run of a schedule +  |
|                                  |        |                       | rule with overlap skip/queue-one; deleted  |
|                                  |        |                       | when that run finishes                     |
| <p>:schedule:<guard>:queued      | string | engine (MULTI)        | the one event held by overlap queue-one;   |
|                                  |        |                       | re-added to the stream when the run ends   |
| <p>:watch:<name>:files           | hash   | orch triggers (file   | permanent: path -> "size:mtime_ns" of the  |
|                                  |        | watcher), after XADD  | files last seen; delete it to re-announce  |
| <p>:flow:memo:<digest>           | string | engine (Lua)          | a hold-back control's decision for one     |
|                                  |        |                       | (rule, event): 7 days until the transaction|
|                                  |        |                       | that acknowledges the event, then          |
|                                  |        |                       | max(600 s, 10 x engine_claim_idle_s)       |
| <p>:flow:state:<rule>:<digest>   | hash / | engine (Lua)          | one key of a rule's control: throttle GCRA |
|                                  | list / |                       | (hash; until its tat passed and nothing is |
|                                  | string |                       | held), rate_limit window (list; period_s), |
|                                  |        |                       | debounce/batch open hold (string; deleted  |
|                                  |        |                       | when the hold is released)                 |
| <p>:flow:hold:<id>               | hash   | engine (Lua)          | one hold: rule, key, due, counts; with     |
| <p>:flow:hold:<id>:events        | list   |                       | the events it holds and their entry ids;   |
| <p>:flow:hold:<id>:entries       | list   |                       | deleted when released to the results stream|
| <p>:flow:due                     | zset   | engine (Lua)          | hold id -> due ms; removed when released   |
| <p>:flow:seq                     | string | engine (Lua)          | permanent: the last hold id                |
| <p>:flow:ruled:<rule>            | string | engine                | 7 days after the rule's last decision: its |
|                                  |        |                       | memos may exist (looked up after a reload  |
|                                  |        |                       | removes its control)                       |
| <p>:metrics:<metric name>        | hash   | engine, publishers    | permanent (counters)                       |
| <p>:tokens                       | hash   | orch tokens (CLI)     | permanent: token name -> token id          |
| <p>:token:<id>                   | hash   | orch tokens (CLI)     | until revoked: name, scopes, SHA-256 of    |
|                                  |        |                       | the token, created_at                      |
| <p>:tokens:used                  | hash   | orch api              | token id -> last use (epoch s); the API    |
|                                  |        |                       | writes no token record (ACL: read-only)    |
| <p>:worker:<name>                | hash   | that worker           | heartbeat: TTL worker_heartbeat_ttl_s,     |
|                                  |        |                       | refreshed every worker_heartbeat_s         |
| <p>:workers                      | zset   | workers               | name -> last heartbeat (ms); stale entries |
|                                  |        |                       | removed by `orch workers` and the engine   |
| <p>:worker:<name>:claimed        | list   | that worker (LMOVE)   | job ids taken, not finished; handed back   |
|                                  |        |                       | to their queue when the worker is dead     |
| <p>:inflight                     | hash   | engine (MULTI)        | "run<US>node<US>attempt" -> worker, while  |
|                                  |        |                       | an attempt runs; the sweeper's work list   |
| <p>:timers                       | zset   | engine (MULTI)        | due time (ms) of retries and run timeouts; |
|                                  |        |                       | removed when fired                         |
| <p>:waits:<event type>           | hash   | engine (MULTI)        | "run<US>node<US>attempt" -> JSON waiter of |
|                                  |        |                       | a wait step (workflows/waiting.py); field  |
|                                  |        |                       | removed when the step stops waiting        |
|                                  |        |                       | (matched, timed out, cancelled), or when   |
|                                  |        |                       | an event finds its run gone                |
| <p>:slots                        | hash   | engine (MULTI, Lua)   | pool id -> JSON of the pool (kind, rule or |
|                                  |        |                       | workflow, key, limit): the pools with a    |
|                                  |        |                       | holder or a waiting run; removed (Lua)     |
|                                  |        |                       | when both are empty (workflows/pools.py)   |
| <p>:slots:<pool>:held            | zset   | engine (MULTI, Lua)   | run -> lease expiry (ms) of the runs       |
|                                  |        |                       | holding a slot; renewed while the run      |
|                                  |        |                       | lives, removed when it ends or the lease   |
|                                  |        |                       | runs out (slot_release/slot_renew.lua)     |
| <p>:slots:<pool>:waiting         | zset   | engine (MULTI, Lua)   | run -> place in line (arrival ms minus     |
|                                  |        |                       | priority); removed when it gets a slot,    |
|                                  |        |                       | ends, or is found no longer queued         |
| <p>:cancel:<run_id>              | hash   | engine (MULTI)        | node -> last attempt workers must stop (a  |
|                                  |        |                       | cancelled or timed-out run's); later       |
|                                  |        |                       | attempts (a retry's) run; run_retention_s  |
| <p>:catalog                      | string | engine                | permanent: JSON of the project's rules,    |
|                                  |        |                       | workflows and triggers (catalog/), written |
|                                  |        |                       | at start, restored if missing; API reads it|
| <p>:ruleset                      | string | engine at start, its  | permanent: the active rule-set version     |
|                                  |        | watcher, orch reload  | (rules/version.py); every engine runs it   |
|                                  |        | (MULTI with :data)    | and WATCHes it when it commits a batch     |
| <p>:ruleset:data                 | string | as <p>:ruleset        | permanent: JSON {version, rules (validated |
|                                  |        |                       | configs), workflows (name -> digest), at,  |
|                                  |        |                       | by}; never code (state/ruleset.py)         |
| <p>:ruleset:engines              | hash   | each engine (its own  | consumer -> JSON of the version it runs,   |
|                                  |        | field)                | the one it wants, why it cannot; fields    |
|                                  |        |                       | silent for a day removed                   |
| <p>:throughput:<queue>:<hour>    | hash   | workers               | epoch minute -> tasks finished in it; 2 h  |
|                                  |        |                       | TTL, set by each worker's first count of   |
|                                  |        |                       | the hour (hour: epoch hours)               |
| <p>:log:<run_id>:<node>:<attempt>| list   | the worker running    | one attempt's log: a JSON header (lines    |
|                                  |        | that attempt (Lua)    | and bytes dropped, kept, the caps, closed  |
|                                  |        |                       | once the attempt ended), then              |
|                                  |        |                       | its last lines; expires with its run (the  |
|                                  |        |                       | engine sets the run's TTL on every attempt |
|                                  |        |                       | log when the run finishes); a new log gets |
|                                  |        |                       | 2 x run_retention_s until then             |

Consumer group on both streams: `engine`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEAD_LETTER_MAXLEN", "ENGINE_GROUP", "Keys"]

ENGINE_GROUP = "engine"
DEAD_LETTER_MAXLEN = 100_000


@dataclass(frozen=True)
class Keys:
    """Key names for one deployment prefix."""

    prefix: str = "orch"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:events:dead"

    def dedup(self, digest: str) -> str:
        return f"{self.prefix}:dedup:{digest}"

    def decisions(self, entry_id: str) -> str:
        """What the engine decided for the event at stream entry `entry_id`: rules matched, runs, reasons."""
        return f"{self.prefix}:decisions:{entry_id}"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    @property
    def runs(self) -> str:
        return f"{self.prefix}:runs"

    def runs_by_status(self, status: str) -> str:
        return f"{self.prefix}:runs:status:{status}"

    def runs_by_workflow(self, workflow: str) -> str:
        return f"{self.prefix}:runs:workflow:{workflow}"

    def runs_by_workflow_status(self, workflow: str, status: str) -> str:
        return f"{self.prefix}:runs:workflow:{workflow}:{status}"

    @property
    def run_workflows(self) -> str:
        """The workflows that have run indexes: what index trimming walks, instead of the keyspace."""
        return f"{self.prefix}:runs:workflows"

    @property
    def engine_errors(self) -> str:
        return f"{self.prefix}:engine:errors"

    @property
    def engines(self) -> str:
        """Engine heartbeats: consumer name -> when it last said it was alive (epoch ms)."""
        return f"{self.prefix}:engines"

    def schedule_tick(self, schedule: str, tick_ms: int) -> str:
        return f"{self.prefix}:schedule:{schedule}:tick:{tick_ms}"

    def schedule_last(self, schedule: str) -> str:
        return f"{self.prefix}:schedule:{schedule}:last"

    def schedule_active(self, guard: str) -> str:
        """`guard` is `<schedule>/<rule>`: overlap is enforced per schedule and rule."""
        return f"{self.prefix}:schedule:{guard}:active"

    def schedule_queued(self, guard: str) -> str:
        return f"{self.prefix}:schedule:{guard}:queued"

    def watch_files(self, watch: str) -> str:
        """The last known state of a file watch's directory: relative path -> "size:mtime_ns"."""
        return f"{self.prefix}:watch:{watch}:files"

    def worker(self, name: str) -> str:
        """A worker's heartbeat: host, pid, queues, current task; expires unless refreshed."""
        return f"{self.prefix}:worker:{name}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker_claimed(self, name: str) -> str:
        """The jobs a worker has taken from its queues and not finished (reliable-queue pattern)."""
        return f"{self.prefix}:worker:{name}:claimed"

    @property
    def inflight(self) -> str:
        return f"{self.prefix}:inflight"

    @property
    def timers(self) -> str:
        return f"{self.prefix}:timers"

    @property
    def slots(self) -> str:
        """The slot pools in use (workflows/pools.py): pool id -> the pool's kind, name, key and limit."""
        return f"{self.prefix}:slots"

    def slots_held(self, pool: str) -> str:
        """The runs holding a slot of `pool`, with their lease's expiry (ms)."""
        return f"{self.prefix}:slots:{pool}:held"

    def slots_waiting(self, pool: str) -> str:
        """The runs waiting for a slot of `pool`, first in line first."""
        return f"{self.prefix}:slots:{pool}:waiting"

    def waits(self, event_type: str) -> str:
        """The steps waiting for events of `event_type` (engine/waits.py): one read per type an engine sees."""
        return f"{self.prefix}:waits:{event_type}"

    def cancel(self, run_id: str) -> str:
        return f"{self.prefix}:cancel:{run_id}"

    def task_log(self, run_id: str, node: str, attempt: int) -> str:
        """One task attempt's log lines (state/logs.py), written while the attempt runs."""
        return f"{self.prefix}:log:{run_id}:{node}:{attempt}"

    @property
    def tokens(self) -> str:
        """API token names -> ids (names are unique)."""
        return f"{self.prefix}:tokens"

    def token(self, token_id: str) -> str:
        """One API token's record: name, scopes and the SHA-256 of the token (never the token)."""
        return f"{self.prefix}:token:{token_id}"

    @property
    def tokens_used(self) -> str:
        """Token id -> when `orch api` last accepted it (kept apart: the API may not write token records)."""
        return f"{self.prefix}:tokens:used"

    @property
    def catalog(self) -> str:
        """The project catalogue the engine writes (rules, workflows, triggers) for `orch api` to show."""
        return f"{self.prefix}:catalog"

    @property
    def ruleset(self) -> str:
        """The active rule-set version: what every engine plans and commits under (engine/reload.py)."""
        return f"{self.prefix}:ruleset"

    @property
    def ruleset_data(self) -> str:
        """The active version's rule configs and workflow digests, written with `ruleset` (state/ruleset.py)."""
        return f"{self.prefix}:ruleset:data"

    @property
    def ruleset_engines(self) -> str:
        """Each engine's view of the rule set: the version it runs, the one it wants, and why it cannot."""
        return f"{self.prefix}:ruleset:engines"

    def throughput(self, queue: str, hour: int) -> str:
        """Tasks of an orch queue finished per minute, within one hour (epoch hours)."""
        return f"{self.prefix}:throughput:{queue}:{hour}"

    def flow_memo(self, digest: str) -> str:
        """A hold-back control's decision for one (rule, event), kept a while past its commit (flow/decide.py)."""
        return f"{self.prefix}:flow:memo:{digest}"

    def flow_ruled(self, rule: str) -> str:
        """Marks a rule whose hold-back control decided in the last 7 days (flow/decide.py)."""
        return f"{self.prefix}:flow:ruled:{rule}"

    def flow_state(self, rule: str, digest: str) -> str:
        """The state of one key (its digest) of a rule's hold-back control: GCRA, window or open hold."""
        return f"{self.prefix}:flow:state:{rule}:{digest}"

    @property
    def flow_hold_prefix(self) -> str:
        """Prefix of the holds, `<p>:flow:hold:<id>` (the Lua scripts append the id)."""
        return f"{self.prefix}:flow:hold:"

    @property
    def flow_due(self) -> str:
        """Holds of hold-back controls by due time (ms)."""
        return f"{self.prefix}:flow:due"

    @property
    def flow_seq(self) -> str:
        return f"{self.prefix}:flow:seq"

    def metric(self, name: str) -> str:
        return f"{self.prefix}:metrics:{name}"

    def queue_name(self, queue: str) -> str:
        """The RQ queue name for an orch queue (RQ stores it at `rq:queue:<name>`)."""
        return f"{self.prefix}.{queue}"
