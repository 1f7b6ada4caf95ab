"""Least privilege in Redis: one ACL user per orch role, each allowed only the keys and commands it uses.

    orch redis-acl --prefix orch > users.acl       every role, in aclfile format (passwords from env)

| role      | may write                                              | may read besides           |
|-----------|--------------------------------------------------------|----------------------------|
| api       | events stream + dedup keys (publish), results stream   | runs and their indexes,    |
|           | (steering requests), metrics counters, token last use  | task logs, rule decisions, |
|           |                                                        | tokens, workers, engines'  |
|           |                                                        | heartbeats, queues, jobs,  |
|           |                                                        | catalogue, throughput,     |
|           |                                                        | holds pending (flow:due),  |
|           |                                                        | slot pools                 |
|           |                                                        | rule-set version and views |
| engine    | everything of orch's (<p>:*) and RQ's (rq:*): it writes runs, dispatches jobs,   |
|           | trims streams and hands back dead workers' jobs                                      |
| worker    | RQ's keys (rq:*), its heartbeat and claimed list, the results stream (records),      |
|           | task logs (append_log.lua), events + dedup keys + metrics (tasks that emit events), |
|           | throughput                                                     | cancel markers |
| triggers  | events stream + dedup keys (publish), schedule tick and cursor keys, watch states,   |
|           | metrics counters; TIME (every replica agrees on Redis's clock)                      |

No role may run dangerous commands (FLUSHALL, CONFIG SET, DEBUG, KEYS, ...), and only the engine touches
runs: a worker, the API or a trigger that is broken into cannot rewrite a run's graph or results. Read-only
key patterns (`%R~`) need Redis >= 7.0; on 6.2 `--no-read-only` writes them as full patterns.

Commands: each role gets the data categories it uses (@read, @write, and the types), scripting (orch's
Lua scripts, loaded by SHA), transactions and connection commands, minus @dangerous; then INFO (the
version check, the eviction check, /healthz) is added back. CONFIG GET is not: it would show every role
the server's secrets (masterauth, TLS key passphrases).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["ROLES", "RoleAcl", "acl_for", "acl_file"]

_COMMANDS = ("-@all +@read +@write +@keyspace +@string +@hash +@list +@set +@sortedset +@stream +@scripting "
             "+@transaction +@connection +@fast +@slow -@dangerous -@admin +info")


@dataclass(frozen=True)
class RoleAcl:
    """The keys a role may read and write (`rw`), only read (`ro`), its channels and extra commands."""

    role: str
    rw: tuple[str, ...]
    ro: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    extra: str = ""

    def rules(self, prefix: str, read_only: bool = True) -> str:
        """The ACL rules (without the user name and password), for keys under `prefix`."""
        keys = [f"~{_p(k, prefix)}" for k in self.rw]
        keys += [f"{'%R~' if read_only else '~'}{_p(k, prefix)}" for k in self.ro]
        channels = [f"&{c}" for c in self.channels] or ["resetchannels"]
        return " ".join([*keys, *channels, _COMMANDS, *([self.extra] if self.extra else [])])


def _p(pattern: str, prefix: str) -> str:
    return pattern.replace("<p>", prefix)


ROLES = {
    "api": RoleAcl("api", rw=("<p>:events", "<p>:dedup:*", "<p>:results", "<p>:metrics:*", "<p>:tokens:used"),
                   ro=("<p>:run:*", "<p>:runs", "<p>:runs:*", "<p>:log:*", "<p>:decisions:*", "<p>:tokens", "<p>:token:*",
                       "<p>:events:dead", "<p>:workers", "<p>:worker:*", "<p>:engines", "<p>:catalog", "<p>:ruleset", "<p>:ruleset:*",
                       "<p>:throughput:*",
                       "<p>:flow:due",
                       "<p>:slots", "<p>:slots:*",
                       "rq:queues", "rq:queue:*", "rq:wip:*", "rq:failed:*", "rq:job:*", "rq:workers", "rq:worker:*")),
    "engine": RoleAcl("engine", rw=("<p>:*", "rq:*")),
    "worker": RoleAcl("worker", rw=("rq:*", "<p>:worker:*", "<p>:workers", "<p>:results", "<p>:log:*",
                                    "<p>:events", "<p>:dedup:*", "<p>:metrics:*", "<p>:throughput:*"),
                      ro=("<p>:cancel:*",), channels=("rq:pubsub:*",), extra="+@pubsub"),
    "triggers": RoleAcl("triggers", rw=("<p>:events", "<p>:dedup:*", "<p>:metrics:*", "<p>:schedule:*",
                                        "<p>:watch:*"), extra="+time"),
}


def acl_for(role: str, prefix: str = "orch", read_only: bool = True) -> str:
    """The ACL rules of one role."""
    return ROLES[role].rules(prefix, read_only)


def acl_file(passwords: dict[str, str], prefix: str = "orch", user_prefix: str = "orch-",
             read_only: bool = True, *, hashed: bool = False) -> str:
    """An aclfile with one user per role in `passwords` (role -> password), e.g. `user orch-api on >pw ...`.

    `hashed`: the file holds each password's SHA-256 (`#<hex>`), not the password, and turns the `default`
    user off (a client that does not authenticate can do nothing): the form a deployment mounts as a secret.
    """
    lines = ["user default off resetkeys resetchannels -@all"] if hashed else []
    for role, password in passwords.items():
        secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if hashed else f">{password}"
        lines.append(f"user {user_prefix}{role} on {secret} {acl_for(role, prefix, read_only)}")
    return "\n".join(lines) + "\n"
