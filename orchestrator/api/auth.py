"""Who may call which route of `orch api`: bearer tokens with scopes (orchestrator/tokens.py).

Every route declares its scope with `scoped(scope)`: a FastAPI dependency that checks it, plus the
`x-orch-scope` OpenAPI extension that a test reads for every route of the app:

    a token scope (events:write, runs:read, ...)  `Authorization: Bearer <token>` of a token with that
                                                  scope (or admin); no or an unknown token: 401; a valid
                                                  token without the scope: 403; both say which scope
    ANY_TOKEN                                     any valid token (the OpenAPI schema)
    PUBLIC                                        /healthz only
    SIGNATURE                                     /hooks/{name}: the webhook's signature, never a token

A verified token is cached for TOKEN_CACHE_S, so a revoked token stops working within that time.
While Redis cannot be reached, a token this process verified before keeps the scopes in OUTAGE_SCOPES
(metrics:read), so Prometheus still scrapes `orch_redis_up 0`; every other route answers 503.
With `ORCH_API_AUTH=none` (refused unless `orch api` listens on loopback) every request is `anonymous`
with every scope. The caller is `request.state.principal`: steering records its name as the actor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from fastapi import Depends, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..state.keys import Keys
from ..tokens import ADMIN, SCOPES, TokenRecord, digest, parse

__all__ = ["ANY_TOKEN", "PUBLIC", "SIGNATURE", "AuthError", "Principal", "Verifier", "auth_error", "principal_of",
           "scoped"]

log = logging.getLogger(__name__)

ANY_TOKEN = "any-token"
PUBLIC = "public"
SIGNATURE = "signature"
TOKEN_CACHE_S = 2.0
_CACHE_MAX = 10_000
OUTAGE_SCOPES = frozenset({"metrics:read"})

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="An orch API token: `orch tokens create --name NAME --scope SCOPE` prints one.")
_CREDENTIALS = Security(bearer)


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's name and scopes."""

    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous (ORCH_API_AUTH=none)", frozenset({ADMIN}))


class AuthError(Exception):
    """A request without the token its route needs (401) or whose token lacks the scope (403)."""

    def __init__(self, status: int, message: str, scope: str) -> None:
        super().__init__(message)
        self.status, self.scope = status, scope


async def auth_error(request: Request, exc: Any) -> JSONResponse:
    challenge = f'Bearer realm="orch", scope="{exc.scope}"'
    if exc.status == 403:
        challenge += ', error="insufficient_scope"'
    elif request.headers.get("authorization"):
        challenge += ', error="invalid_token"'
    return JSONResponse({"error": str(exc), "scope": exc.scope}, status_code=exc.status,
                        headers={"WWW-Authenticate": challenge})


def _needs(scope: str) -> str:
    return "any valid token" if scope == ANY_TOKEN else f"a token with scope {scope}"


class Verifier:
    """Checks bearer tokens against their records in Redis, caching verified ones briefly."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, *, disabled: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis, self._keys, self.disabled, self._clock = client, keys, disabled, clock
        self._cache: dict[str, tuple[TokenRecord | None, float]] = {}
        self._known: dict[str, TokenRecord] = {}  # digest -> record last verified, for OUTAGE_SCOPES

    async def principal(self, credentials: HTTPAuthorizationCredentials | None, scope: str) -> Principal:
        """The caller, allowed `scope`; AuthError (401 or 403) otherwise."""
        if self.disabled:
            return ANONYMOUS
        if credentials is None:
            raise AuthError(401, f"this route needs {_needs(scope)}: send `Authorization: Bearer <token>` "
                                 f"(create one with `orch tokens create --name NAME --scope {_example(scope)}`)",
                            scope)
        record = await self._record_or_known(credentials.credentials, scope)
        if record is None:
            raise AuthError(401, f"the token is not valid (unknown, revoked or mistyped); this route needs "
                                 f"{_needs(scope)}", scope)
        if scope != ANY_TOKEN and not record.allows(scope):
            raise AuthError(403, f"token {record.name!r} lacks scope {scope} (it has {', '.join(sorted(record.scopes))}); "
                                 f"create a token with --scope {scope}", scope)
        return Principal(record.name, record.scopes)

    async def _record_or_known(self, token: str, scope: str) -> TokenRecord | None:
        try:
            return await self._record(token)
        except (redis.ConnectionError, redis.TimeoutError):
            known = self._known.get(digest(token)) if scope in OUTAGE_SCOPES else None
            if known is None:
                raise
            return known

    async def _record(self, token: str) -> TokenRecord | None:
        key, now = digest(token), self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        token_id = parse(token)
        record = None
        if token_id is not None:
            found = TokenRecord.from_fields(token_id, await self._redis.hgetall(self._keys.token(token_id)))
            if found is not None and found.matches(token):
                record = found
                await self._note_use(token_id)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (record, now + TOKEN_CACHE_S)
        if record is None:
            self._known.pop(key, None)
        elif key in self._known or len(self._known) < _CACHE_MAX:
            self._known[key] = record
        return record


    async def _note_use(self, token_id: str) -> None:
        """Best effort: a Redis user without write access to the last-use hash (an aclfile made before it
        existed) must not turn every authenticated request into an error."""
        try:
            await self._redis.hset(self._keys.tokens_used, token_id, f"{time.time():.3f}")
        except redis.RedisError as exc:
            log.warning("could not note the use of token %s (%s): `orch tokens list` will not show it; "
                        "regenerate the Redis ACLs with `orch redis-acl`", token_id, exc)


def _example(scope: str) -> str:
    return "events:write" if scope in (ANY_TOKEN, PUBLIC, SIGNATURE) else scope


def scoped(scope: str) -> dict[str, Any]:
    """The keyword arguments that give a route its scope: a dependency that checks it, and the
    `x-orch-scope` extension (read by the test that enumerates every route)."""
    if scope not in SCOPES and scope not in (ANY_TOKEN, PUBLIC, SIGNATURE):
        raise ValueError(f"unknown scope {scope!r}")
    extra = {"x-orch-scope": scope}
    if scope in (PUBLIC, SIGNATURE):
        return {"openapi_extra": extra}

    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = _CREDENTIALS) -> None:
        request.state.principal = await request.app.state.orch.auth.principal(credentials, scope)

    return {"dependencies": [Depends(check)], "openapi_extra": extra}


def principal_of(request: Request) -> Principal:
    """The caller of a request that passed its route's scope check."""
    found: Principal = getattr(request.state, "principal", ANONYMOUS)
    return found
