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
| <p>:results                      | stream | workers               | trimmed like events (results_retention_s)  |
| <p>:run:<run_id>                 | hash   | engine (WATCH/MULTI)  | run_retention_s after the run finished     |
| <p>:runs                         | zset   | engine                | entries older than run_retention_s removed |
| <p>:runs:status:<status>         | zset   | engine                | as above                                   |
| <p>:runs:workflow:<name>         | zset   | engine                | as above                                   |
| <p>:engine:errors                | hash   | engine                | field removed when its entry is settled    |
| <p>:metrics:<metric name>        | hash   | engine, publishers    | permanent (counters)                       |

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

    @property
    def engine_errors(self) -> str:
        return f"{self.prefix}:engine:errors"

    def metric(self, name: str) -> str:
        return f"{self.prefix}:metrics:{name}"

    def queue_name(self, queue: str) -> str:
        """The RQ queue name for an orch queue (RQ stores it at `rq:queue:<name>`)."""
        return f"{self.prefix}.{queue}"
