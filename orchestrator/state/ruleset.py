"""The active rule set in Redis: published atomically, read back as untrusted, and each engine's view of it.

    publish(client, keys, project, by)   one MULTI: SET <p>:ruleset (the version) and <p>:ruleset:data
                                         (the rule configs, validated, as JSON data, and the workflows'
                                         digests); returns the version it replaced
    read_active(client, keys)            both, read in one MULTI (so never half of one publication)
    active_version(client, keys)         the version alone: the cheap read engines make every check
    write_view / read_views              <p>:ruleset:engines: what each engine runs, wants, why not, and
                                         its own copy's workflow digests

Rules are data and travel through Redis; workflows are Python code and never do: an engine builds the
active version from these rule configs and its own copy of the workflows, and the digests say whether
its copy is the one the version was made with. Everything read back is untrusted: a value of the wrong
shape is a RulesetError (the engine keeps the version it runs), a view that does not parse is skipped.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from ..errors import OrchestratorError
from ..jsonutil import dumps, loads
from ..project import Project
from .keys import Keys

__all__ = ["MAX_RULESET_BYTES", "Active", "EngineView", "RulesetError", "active_version", "digest_mismatch", "forget_views", "publish",
           "publisher", "read_active", "read_views", "workflow_mismatch", "write_view"]

MAX_RULESET_BYTES = 64 * 1024 * 1024
FORGET_VIEWS_AFTER_S = 86400.0
_VERSION = re.compile(r"^[0-9a-f]{1,64}$")


class RulesetError(OrchestratorError):
    """The active rule set in Redis cannot be read (it is not what a publisher writes)."""


@dataclass(frozen=True)
class Active:
    """The active rule-set version, its rule configs and the workflow digests it was made with."""

    version: str
    rules: list[dict[str, Any]]
    workflows: dict[str, str]
    at: float = 0.0  # when it was published (epoch s)
    by: str = ""  # who published it: host, pid and how (engine start, watcher, orch reload)


@dataclass(frozen=True)
class EngineView:
    """One engine's rule set: the version it runs, the active one, its state and why (`error`)."""

    engine: str
    version: str
    wanted: str
    state: str  # ok: it runs the active version; behind: it cannot load it, and plans no event
    error: str | None = None  # why it is behind
    refused: str | None = None  # the last change of its own project it refused (invalid), and why
    at: float = 0.0
    workflows: dict[str, str] | None = None  # its own copy's workflows (name -> digest); None: not said


def publisher(how: str) -> str:
    """Who publishes: `host pid how`."""
    return f"{socket.gethostname()} {os.getpid()} {how}"


def publish(client: redis.Redis, keys: Keys, project: Project, by: str) -> str | None:
    """Make `project`'s rule set the active one (it was validated when it was loaded); the version it
    replaced, None if there was none."""
    data = {"version": project.ruleset, "rules": project.rule_configs,
            "workflows": {name: wf.spec.digest for name, wf in sorted(project.workflows.items())},
            "at": time.time(), "by": by}
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.ruleset)
    pipe.set(keys.ruleset, project.ruleset)
    pipe.set(keys.ruleset_data, dumps(data))
    old = pipe.execute()[0]
    return old.decode(errors="replace") if old else None


def active_version(client: redis.Redis, keys: Keys) -> str | None:
    """The active version (None: none published yet)."""
    raw = client.get(keys.ruleset)
    return raw.decode(errors="replace") if raw else None


def read_active(client: redis.Redis, keys: Keys) -> Active | None:
    """The active version with its data; RulesetError when what Redis holds is not a publication."""
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.ruleset)
    pipe.strlen(keys.ruleset_data)
    pipe.getrange(keys.ruleset_data, 0, MAX_RULESET_BYTES)
    version, size, raw = pipe.execute()
    if not version:
        return None
    if size > MAX_RULESET_BYTES:
        raise RulesetError(f"{keys.ruleset_data} is larger than {MAX_RULESET_BYTES} bytes")
    try:
        return parse_active(version.decode(errors="replace"), loads(raw) if raw else None)
    except ValueError as exc:
        raise RulesetError(f"{keys.ruleset_data} is not JSON: {exc}") from None


def parse_active(version: str, data: Any) -> Active:
    """Check the shape of a publication read back from Redis."""
    if not _VERSION.match(version):
        raise RulesetError(f"the active version {version[:80]!r} is not a version")
    if not isinstance(data, dict) or data.get("version") != version:
        raise RulesetError(f"the data of version {version} is missing or belongs to another version")
    rules, workflows = data.get("rules"), data.get("workflows")
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise RulesetError(f"the rules of version {version} are not a list of objects")
    if not isinstance(workflows, dict) or not all(isinstance(v, str) for v in workflows.values()):
        raise RulesetError(f"the workflows of version {version} are not names and digests")
    at, by = data.get("at"), data.get("by")
    return Active(version, rules, workflows, float(at) if isinstance(at, int | float) else 0.0,
                  by if isinstance(by, str) else "")


def write_view(client: redis.Redis | redis.client.Pipeline, keys: Keys, view: EngineView) -> None:
    """Record `view` as its engine's own field."""
    client.hset(keys.ruleset_engines, view.engine, dumps(asdict(view)))


def read_views(client: redis.Redis, keys: Keys, now_s: float | None = None) -> dict[str, EngineView]:
    """Every engine's view of the last day, by engine; views that do not parse are skipped. Read only."""
    now_s = time.time() if now_s is None else now_s
    views = (_view(raw) for raw in client.hvals(keys.ruleset_engines))
    return dict(sorted((v.engine, v) for v in views if v is not None and now_s - v.at <= FORGET_VIEWS_AFTER_S))


def forget_views(client: redis.Redis, keys: Keys, now_s: float) -> int:
    """Remove the views of engines silent for a day, and those that do not parse; how many."""
    stale = [name for name, raw in client.hgetall(keys.ruleset_engines).items()
             if (view := _view(raw)) is None or now_s - view.at > FORGET_VIEWS_AFTER_S]
    return int(client.hdel(keys.ruleset_engines, *stale)) if stale else 0


def _view(raw: bytes) -> EngineView | None:
    try:
        data = loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    text = ("engine", "version", "wanted", "state")
    optional = ("error", "refused")
    if not all(isinstance(data.get(k), str) for k in text) or not isinstance(data.get("at"), int | float):
        return None
    if not all(data.get(k) is None or isinstance(data.get(k), str) for k in optional):
        return None
    workflows = data.get("workflows")
    if workflows is not None and not (isinstance(workflows, dict) and all(isinstance(v, str) for v in workflows.values())):
        workflows = None  # not what an engine writes: unknown
    return EngineView(engine=data["engine"], version=data["version"], wanted=data["wanted"], state=data["state"],
                      error=data.get("error"), refused=data.get("refused"), at=float(data["at"]), workflows=workflows)


def workflow_mismatch(active: Active, project: Project) -> list[str]:
    """How `project`'s workflows differ from those `active` was made with (empty: its copy can load it)."""
    return digest_mismatch(active.workflows, {name: wf.spec.digest for name, wf in project.workflows.items()},
                           "this engine's project", "the active version")


def digest_mismatch(wanted: Mapping[str, str], have: Mapping[str, str], here: str, there: str) -> list[str]:
    """How the workflows `have` (name -> digest, `here`) differ from those `wanted` (`there`); empty: the same."""
    out = []
    for name, digest in sorted(wanted.items()):
        mine = have.get(name)
        if mine is None:
            out.append(f"workflow {name!r} is missing from {here}")
        elif mine != digest:
            out.append(f"workflow {name!r} is version {mine} in {here}, {digest} in {there}")
    return out + [f"workflow {name!r} is not in {there}" for name in sorted(set(have) - set(wanted))]
