"""Typed settings: one `Settings` object, read from `ORCH_*` environment variables, passed explicitly.

Precedence (highest first): keyword arguments (what CLI flags become) > environment variables > defaults.
Durations carry their unit in the name (`*_s`), sizes in bytes (`*_bytes`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

MiB = 1024 * 1024
DAY_S = 86400.0
TASK_LOG_MAX_LINES = 2000  # the defaults of one task attempt's stored log (LogBuffer's too)
TASK_LOG_MAX_BYTES = 256 * 1024


class Settings(BaseSettings):
    """Everything an orch process can be told from outside. Each field is `ORCH_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Redis to use, e.g. redis://127.0.0.1:6379/0, or through Sentinel "
                    "redis+sentinel://h1:26379,h2:26379/SERVICE/0. Unset: the Redis `orch dev` started for the project.",
    )
    redis_password_file: Path | None = Field(
        default=None,
        description="A file holding the Redis password (one line; a mounted secret, e.g. /run/secrets/redis_password): "
        "it is put into ORCH_REDIS_URL, which must then name no password itself (a user name, for an ACL user, it may).",
    )
    redis_socket_timeout_s: float = Field(default=15.0, gt=0, description="A Redis command (beyond a blocking "
                                          "read's own wait) or connection attempt that gets no answer within this "
                                          "time fails and is retried on a new connection: a connection a failover "
                                          "or a network fault left hanging cannot stall a loop.")
    redis_start_wait_s: float = Field(default=120.0, ge=0, description="How long `orch engine|worker|triggers|api` "
                                      "wait at start for a Redis that is away, loading or failing over, retrying "
                                      "and saying why, before giving up (0: not at all).")
    project: Path = Field(default=Path("."), description="Directory of the automation project (rules/, workflows/).")
    key_prefix: str = Field(default="orch", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of every Redis key.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64, description="`orch api` processes sharing the port (one "
                             "core each); a supervisor restarts one that exits.")
    api_header_timeout_s: float = Field(default=10.0, gt=0, description="A client must send a request's head "
                                        "within this time (of connecting, or of its first byte): slow clients "
                                        "get 408 and are cut off.")
    api_body_timeout_s: float = Field(default=30.0, gt=0, description="A client must send a request's body "
                                      "within this time of its head.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="How orch processes log: `text` for people, `json` for log shippers (one JSON "
        "object per line, naming the run, task and attempt where there is one).")

    event_max_bytes: int = Field(default=MiB, gt=0, description="Largest accepted event or HTTP body.")
    event_dedup_window_s: float = Field(default=DAY_S, gt=0, description="How long (source, id) pairs are remembered.")
    events_retention_s: float = Field(default=7 * DAY_S, gt=0, description="Age after which processed events are trimmed.")
    results_retention_s: float = Field(default=3600.0, gt=0, description="Age after which applied task results are trimmed.")

    engine_batch_size: int = Field(default=500, gt=0)
    engine_block_s: float = Field(default=1.0, gt=0, description="How long one engine read waits for new entries.")
    engine_claim_idle_s: float = Field(default=60.0, gt=0, description="Idle time after which a pending entry is reclaimed.")
    engine_maintenance_interval_s: float = Field(default=5.0, gt=0, description="Period of reclaim and trim passes.")
    engine_beat_s: float = Field(default=5.0, gt=0, description="How often an engine writes its heartbeat.")
    engine_dead_after_s: float = Field(default=15.0, gt=0, description="An engine whose heartbeat is older than "
                                       "this (at least twice engine_beat_s) is dead: live engines take over its "
                                       "pending entries at once, without waiting for engine_claim_idle_s.")
    slot_lease_s: float = Field(default=60.0, ge=1, description="How long a run's slot of a concurrency pool is "
                                "held without renewal; the engine renews live runs' leases every third of it.")
    engine_max_deliveries: int = Field(default=5, gt=0, description="Deliveries before an entry is dead-lettered.")
    engine_stall_s: float = Field(default=300.0, gt=0,
                                  description="A task queued this long whose job vanished is failed (JobLost).")
    flow_release_interval_s: float = Field(default=0.5, gt=0, description="How often an engine releases the due "
                                           "holds of debounce, batch and throttle rules.")
    flow_hold_max_events: int = Field(default=1000, ge=1, le=10_000, description="Most events one debounce or batch "
                                      "hold keeps: a hold that reaches it starts its run at once.")
    flow_hold_max_bytes: int = Field(default=4 * MiB, ge=1024, description="Most bytes of events one hold keeps: a "
                                     "hold that reaches it starts its run at once.")
    engine_watch_project: bool = Field(default=True, description="`orch engine` reloads rules and workflows when "
                                       "the project's files change (and publishes them to every engine).")
    engine_reload_check_s: float = Field(default=1.0, gt=0, description="How often an idle engine checks for a new "
                                         "active rule-set version (a busy one checks at every commit).")
    engine_reload_debounce_s: float = Field(default=0.3, gt=0, description="Quiet time after a burst of project "
                                            "file changes before the engine reloads.")

    run_retention_s: float = Field(default=7 * DAY_S, gt=0, description="How long finished runs stay queryable.")
    explain_sample: float = Field(default=1.0, ge=0, le=1, description="Fraction (0..1) of events whose rules "
                                  "that did not match are recorded and counted (by a hash of the event's source "
                                  "and id: every engine samples the same events). Matches, render errors and flow "
                                  "decisions are recorded for every event.")
    lifecycle_events: bool = Field(default=True, description="The engine publishes orch.run.* and orch.task.failed "
                                   "events as runs start and end (rules can chain workflows and alert on them).")
    chain_max_depth: int = Field(default=10, ge=0, le=10_000, description="Deepest event chain that may start runs "
                                 "(a run's lifecycle events and the events its tasks emit are one deeper than the "
                                 "event that started it); deeper events are recorded as failed runs, not started.")
    wait_lookback_s: float = Field(default=3600.0, ge=0, description="When a wait step starts waiting, events of "
                                   "its type that entered the stream at most this long before are looked at too "
                                   "(an event that came early is not lost); 0 looks back at nothing.")
    wait_lookback_max_entries: int = Field(default=10_000, gt=0, description="Most stream entries one wait step's "
                                           "look-back reads (newest first: on a busy stream, the oldest part of "
                                           "the window goes unread).")
    task_timeout_s: int = Field(default=600, gt=0, description="Default hard time limit of one task execution.")
    task_log_max_lines: int = Field(default=TASK_LOG_MAX_LINES, ge=10, description="Lines kept of one task attempt's "
                                    "log: past it the oldest go, and a marker says how many.")
    task_log_max_bytes: int = Field(default=TASK_LOG_MAX_BYTES, ge=16 * 1024,
                                    description="Bytes kept of one task attempt's log (as above).")
    job_result_ttl_s: int = Field(default=60, ge=0, description="How long RQ keeps a finished job (orch keeps its own).")
    job_failure_ttl_s: int = Field(default=7 * 86400, ge=0, description="How long RQ keeps a failed job.")
    worker_maintenance_interval_s: int = Field(default=60, gt=0)
    worker_heartbeat_s: float = Field(default=2.0, gt=0, description="How often a worker refreshes its heartbeat.")
    worker_heartbeat_ttl_s: float = Field(default=10.0, gt=0,
                                          description="A worker silent this long is dead: its tasks are retried.")
    worker_deploy_grace_s: float = Field(default=120.0, ge=0, description="How long after a rule-set version is "
                                         "published a worker whose files lack its workflow version has them "
                                         "deployed: its jobs are retried (after 1, 2, 4 ... 10 s) until then, "
                                         "refused for good after. 0: refused at once.")

    health_port: int = Field(default=0, ge=0, le=65535, description="`orch engine|worker|triggers` serve GET "
                             "/livez and /readyz on this port (`--health-port`); 0: no health listener.")
    health_host: str = Field(default="127.0.0.1", description="Interface of the health listener; 0.0.0.0 for a "
                             "Kubernetes httpGet probe (the kubelet calls the pod's IP).")
    health_stuck_after_s: float = Field(default=60.0, gt=0, description="A loop whose last iteration is older than "
                                        "this (and than 3 of its periods; for a worker running a task, plus what "
                                        "is left of its timeout) fails liveness. Keep it above the longest Redis "
                                        "back-off (30 s).")
    health_redis_timeout_s: float = Field(default=2.0, gt=0, description="Readiness fails when Redis does not "
                                          "answer PING within this time.")

    watch_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Directories file watches may watch besides the project directory: a list separated like "
        "PATH (`/data/in:/srv/drop`) or a JSON list.",
    )

    http_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Destinations the http task kind may reach although the default policy refuses them "
        "(loopback, link-local, private and unique-local addresses): host names (`api.internal`, "
        "`*.corp.example`), IP addresses or CIDR blocks, separated by commas, or a JSON list.",
    )
    api_auth: Literal["token", "none"] = Field(
        default="token",
        description="`token`: every route but /healthz and /hooks/* needs `Authorization: Bearer <token>` with "
        "the route's scope; `none`: no authentication (refused unless `orch api` listens on loopback).",
    )
    api_public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/\s]+/?$",
        description="The URL people reach `orch api` at through a proxy, e.g. `https://orch.example.com`: the "
        "web UI accepts forms from that origin and, when it is https, marks its session cookie Secure.",
    )

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("watch_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(os.pathsep) if part.strip()]

    @field_validator("http_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @property
    def project_dir(self) -> Path:
        """The project directory, absolute."""
        return self.project.expanduser().resolve()

    @property
    def state_dir(self) -> Path:
        """Where orch keeps local state for this project (embedded Redis data, its address)."""
        return self.project_dir / ".orch"
