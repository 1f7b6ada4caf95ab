"""API tokens: who may call `orch api`, with which scopes. Redis keeps only a hash of each token.

    orch tokens create --name ci --scope events:write --scope runs:read    prints the token once
    orch tokens list [--json]                                              names, scopes, last use
    orch tokens revoke ci                                                  by name or id

A token reads `orch_<id>_<secret>`: the id (12 hex characters) is public (`orch tokens list` shows it)
and names the record `<p>:token:<id>`; the secret is 32 random bytes. The record holds the token's name,
scopes, creation and last use, and the SHA-256 of the whole token (a token is random, so a fast hash
suffices: there is nothing to guess), compared in constant time. Names are unique (`<p>:tokens`, name ->
id), so a token is revoked by its name as well as by its id.

Scopes (`SCOPES`): what each allows is listed there; `admin` allows everything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from .errors import OrchestratorError
from .state.keys import Keys

__all__ = ["ADMIN", "SCOPES", "TokenError", "TokenRecord", "TokenStore", "check_scopes", "digest", "parse"]

ADMIN = "admin"
SCOPES = {
    "events:write": "publish events (POST /events)",
    "events:read": "read recent events (GET /events)",
    "runs:read": "read runs, their tasks, results and logs (GET /runs, GET /runs/{id}, GET /runs/{id}/logs)",
    "runs:steer": "cancel, retry and rerun runs (POST /runs/{id}/cancel|retry|rerun)",
    "metrics:read": "scrape Prometheus metrics (GET /metrics)",
    "system:read": "read the project's rules, workflows, schedules, webhooks and watches, and the workers and "
                   "queues (GET /catalog, GET /workers)",
    ADMIN: "every scope",
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TOKEN = re.compile(r"^orch_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_ID = re.compile(r"^[0-9a-f]{12}$")


class TokenError(OrchestratorError):
    """A token cannot be created, found or revoked as asked; the message says what to do."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse(token: str) -> str | None:
    """The id a well-formed token names, or None."""
    match = _TOKEN.match(token)
    return match["id"] if match else None


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes, or TokenError naming the unknown ones and listing the valid ones."""
    given = frozenset(scopes)
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        what = f"unknown scope(s) {', '.join(unknown)}" if unknown else "no scope given"
        raise TokenError(f"{what}: give --scope one or more of {', '.join(SCOPES)}")
    return given


@dataclass(frozen=True)
class TokenRecord:
    """A token as Redis keeps it (never the token itself)."""

    id: str
    name: str
    scopes: frozenset[str]
    created_at: float
    digest: str
    last_used_at: float | None = None

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, digest(token))

    def used_at(self, when: float | None) -> TokenRecord:
        return replace(self, last_used_at=when)

    def to_fields(self) -> dict[str, str]:
        return {"name": self.name, "scopes": ",".join(sorted(self.scopes)), "created_at": f"{self.created_at:.3f}",
                "digest": self.digest}

    @classmethod
    def from_fields(cls, token_id: str, fields: Mapping[bytes, bytes]) -> TokenRecord | None:
        """The record, or None for a missing or malformed one (read back from Redis: untrusted)."""
        try:
            text = {k.decode(): v.decode() for k, v in fields.items()}
            return cls(token_id, text["name"], frozenset(s for s in text["scopes"].split(",") if s in SCOPES),
                       float(text["created_at"]), text["digest"])
        except (KeyError, ValueError, UnicodeDecodeError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scopes": sorted(self.scopes), "created_at": self.created_at,
                "last_used_at": self.last_used_at}


class TokenStore:
    """Creates, lists, revokes and verifies tokens in Redis (the CLI's side; the API verifies with
    the same record through its async client, see orchestrator/api/auth.py)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def create(self, name: str, scopes: Iterable[str]) -> tuple[str, TokenRecord]:
        """A new token (shown once) and its record; TokenError if the name is taken or malformed."""
        if not NAME.match(name):
            raise TokenError(f"token name {name!r}: letters, digits and . _ @ -, at most 64, starting with a "
                             "letter or digit")
        if _ID.match(name):
            raise TokenError(f"token name {name!r} looks like a token id (12 hex digits), which `orch tokens "
                             "revoke` also takes: choose another name")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        token = f"orch_{token_id}_{secret}"
        record = TokenRecord(token_id, name, check_scopes(scopes), time.time(), digest(token))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.watch(self._keys.tokens)
            if pipe.hexists(self._keys.tokens, name):
                raise TokenError(f"a token named {name!r} exists: revoke it first (`orch tokens revoke {name}`) "
                                 "or choose another name")
            pipe.multi()
            pipe.hset(self._keys.tokens, name, token_id)
            pipe.hset(self._keys.token(token_id), mapping=record.to_fields())
            pipe.execute()
        return token, record

    def list(self) -> list[TokenRecord]:
        ids = [i.decode() for i in self._redis.hvals(self._keys.tokens)]
        pipe = self._redis.pipeline(transaction=False)
        for token_id in ids:
            pipe.hgetall(self._keys.token(token_id))
        pipe.hgetall(self._keys.tokens_used)
        *found, used = pipe.execute()
        records = [TokenRecord.from_fields(i, f) for i, f in zip(ids, found, strict=True)]
        return sorted((r.used_at(_when(used.get(r.id.encode()))) for r in records if r is not None),
                      key=lambda r: r.name)

    def revoke(self, name_or_id: str) -> TokenRecord:
        """Revoke a token by name or id; TokenError (listing the names) when there is none."""
        records = self.list()
        found = next((r for r in records if r.id == name_or_id), None) or next(
            (r for r in records if r.name == name_or_id), None)
        if found is None:
            names = ", ".join(r.name for r in self.list()) or "none"
            raise TokenError(f"no token named {name_or_id!r} (tokens: {names}; see `orch tokens list`)")
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.tokens, found.name)
            pipe.delete(self._keys.token(found.id))
            pipe.hdel(self._keys.tokens_used, found.id)
            pipe.execute()
        return found

    def verify(self, token: str) -> TokenRecord | None:
        """The record of a valid token, or None."""
        token_id = parse(token)
        if token_id is None:
            return None
        record = TokenRecord.from_fields(token_id, self._redis.hgetall(self._keys.token(token_id)))
        return record if record is not None and record.matches(token) else None


def _when(raw: bytes | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None
