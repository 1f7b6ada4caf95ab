"""Redis connections from Settings: where Redis is, whether it is good enough. No module-level clients.

Whether a server is good enough is decided once, without I/O, by `server_check` (a generator that
yields the commands to send and reads their replies); `check_server` (blocking) and `check_server_async`
(asyncio) are its shells and only send the commands.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import psutil
import redis
import redis.asyncio

from .backoff import PASSING, Backoff, classify
from .errors import ConfigError, RedisUnavailableError
from .sentinel import async_sentinel_client, is_sentinel_url, sentinel_client
from .settings import Settings

__all__ = [
    "MIN_REDIS_VERSION",
    "Command",
    "address_file",
    "async_client_from_url",
    "check_info",
    "check_server",
    "check_server_async",
    "client_from_url",
    "client_options",
    "connect",
    "read_address_file",
    "redact_url",
    "resolve_redis_url",
    "server_check",
    "unreachable_error",
    "wait_for_server",
    "warn_about_eviction",
    "with_password",
]

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (6, 2, 0)
LONGEST_OWN_BLOCK_S = 2.0  # the longest blocking read orch sends besides the engine's (`orch events tail`)


def address_file(settings: Settings) -> Path:
    """The file in which `orch dev` records the Redis it started for this project."""
    return settings.state_dir / "redis.json"


def read_address_file(path: Path) -> dict[str, Any] | None:
    """The embedded Redis record at `path`, or None when absent, unreadable or its owner is gone."""
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    owner = record.get("owner_pid")
    if not isinstance(owner, int) or not _pid_alive(owner):
        return None
    return record


def _pid_alive(pid: int) -> bool:
    return pid > 0 and psutil.pid_exists(pid)


def resolve_redis_url(settings: Settings) -> str:
    """`ORCH_REDIS_URL` if set (with the password of `ORCH_REDIS_PASSWORD_FILE`, if set), else the Redis
    that a running `orch dev` started for the same project."""
    if settings.redis_password_file is not None:
        return with_password(settings.redis_url, _read_password(settings.redis_password_file))
    if settings.redis_url:
        return settings.redis_url
    record = read_address_file(address_file(settings))
    if record and isinstance(record.get("url"), str):
        return str(record["url"])
    raise RedisUnavailableError(
        f"no Redis configured for project {settings.project_dir}: start the stack with "
        f"`orch dev --project {settings.project}` (it starts its own Redis), "
        "or set ORCH_REDIS_URL=redis://HOST:6379/0"
    )


def _read_password(path: Path) -> str:
    """The password in a secret file: its first line, stripped; ConfigError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"ORCH_REDIS_PASSWORD_FILE {path}: cannot read it: {reason}") from exc
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password or any(line.strip() for line in lines[1:]):
        raise ConfigError(f"ORCH_REDIS_PASSWORD_FILE {path}: expected the password alone on one line")
    return password


def with_password(url: str | None, password: str) -> str:
    """`url` with `password` put in (URL-quoted); ConfigError if there is no URL or it names a password."""
    if not url:
        raise ConfigError("ORCH_REDIS_PASSWORD_FILE is set but ORCH_REDIS_URL is not: set the URL too, e.g. "
                          "redis://orch-engine@redis:6379/0 (an ACL user name, without its password)")
    parts = urlsplit(url)
    user, has_creds, host = parts.netloc.rpartition("@")
    if not has_creds:
        user, host = "", parts.netloc
    if ":" in user or any(k.lower() == "password" for k, _ in parse_qsl(parts.query)):
        raise ConfigError("ORCH_REDIS_URL names a password and ORCH_REDIS_PASSWORD_FILE gives one too: "
                          "keep the password in the file only")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_url(url: str) -> str:
    """The URL with any password (before the @ or as ?password=) replaced by `***`, safe to print."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:  # a password with a raw / ? or # in it would hide the @ from urlsplit
        creds, _, host = rest.rpartition("@")
        url = f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in parts.netloc and not any(_secret(k) for k, _ in pairs):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = "&".join(
        f"{k}=***" if _secret(k) else f"{k}={v}" for k, v in pairs
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secret(option: str) -> bool:
    return option.lower() in ("password", "sentinel_password")


def client_from_url(url: str, **options: Any) -> redis.Redis:
    """A blocking client for `url`: redis://, rediss://, unix://, or the primary of a redis+sentinel:// service."""
    if is_sentinel_url(url):
        return sentinel_client(url, **options)
    return redis.Redis.from_url(url, **_for_scheme(url, options))


def async_client_from_url(url: str, **options: Any) -> redis.asyncio.Redis:
    """`client_from_url` for asyncio."""
    if is_sentinel_url(url):
        return async_sentinel_client(url, **options)
    return redis.asyncio.Redis.from_url(url, **_for_scheme(url, options))


def _for_scheme(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` without the TCP-only ones for a unix:// URL: redis-py's unix-socket connections refuse
    `socket_keepalive` (TypeError at the first command)."""
    if not url.startswith("unix:"):
        return options
    return {k: v for k, v in options.items() if k not in ("socket_keepalive", "socket_keepalive_options")}


def client_options(settings: Settings) -> dict[str, Any]:
    """The options of every client orch keeps open, blocking or asyncio. Without a socket timeout a
    connection left half-open (a primary gone without a reset, a dropped NAT entry) blocks its loop forever,
    until liveness restarts the process. With one, the command fails with a TimeoutError and its connection
    is dropped; it is not retried blindly (Redis may have run it), the loop rides the error out and goes on
    on a new connection. The timeout covers the longest blocking read's own wait; a URL's `?socket_timeout=`
    overrides it."""
    wait_s = max(settings.engine_block_s, LONGEST_OWN_BLOCK_S)
    return {"health_check_interval": 30, "socket_keepalive": True,
            "socket_connect_timeout": settings.redis_socket_timeout_s,
            "socket_timeout": settings.redis_socket_timeout_s + wait_s}


def connect(settings: Settings, *, check: bool = True, wait: bool = False) -> redis.Redis:
    """A Redis client for `settings` (bytes responses, as RQ requires); checks the server unless told not to,
    and with `wait` (a long-running role starting) waits up to ORCH_REDIS_START_WAIT_S for it to come."""
    url = resolve_redis_url(settings)
    client = client_from_url(url, **client_options(settings))
    if check and wait:
        wait_for_server(client, url, settings.redis_start_wait_s)
    elif check:
        check_server(client, url)
    return client


def wait_for_server(client: redis.Redis, url: str, wait_s: float, *, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> tuple[int, ...]:
    """`check_server`, tried again while Redis is away, loading or failing over, for up to `wait_s`: a role
    started before its Redis (pods and Compose services start together) waits, saying why, as Celery's
    workers wait for their broker, instead of exiting into a restart loop. What waiting cannot fix (a
    Redis too old, an ACL that forbids INFO) is raised at once."""
    backoff, deadline = Backoff(initial_s=0.5, max_s=5.0), clock() + wait_s
    while True:
        try:
            return check_server(client, url)
        except (RedisUnavailableError, redis.RedisError) as exc:
            cause = exc.__cause__ if isinstance(exc, RedisUnavailableError) else exc
            if not isinstance(cause, redis.RedisError) or classify(cause) not in PASSING or clock() >= deadline:
                raise
            delay = min(backoff.next_s(), max(0.0, deadline - clock()))
            log.warning("waiting for Redis: %s; trying again in %.1fs (for up to %gs: ORCH_REDIS_START_WAIT_S)",
                        str(cause).strip() or type(cause).__name__, delay, wait_s)
            sleep(delay)


Command = tuple[str, ...]  # a Redis command and its arguments, as `execute_command` takes them


def server_check(url: str = "") -> Generator[Command, Any, tuple[int, ...]]:
    """Refuse a Redis older than 6.2; warn about settings that lose data. Returns the server version.

    The sans-I/O core of the check: it yields each command to send (arguments of `execute_command`) and
    is sent back its reply, or the RedisError that sending it raised. `check_server` and
    `check_server_async` only perform the calls.
    """
    info = yield ("INFO", "server")
    if isinstance(info, redis.RedisError):
        raise unreachable_error(url, info) from info
    version = check_info(info, url)
    memory = yield ("INFO", "memory")  # not CONFIG GET: an ACL user need not be able to read the config
    if isinstance(memory, redis.ResponseError):  # a proxy or managed Redis that hides the section
        memory = {}
    elif isinstance(memory, redis.RedisError):
        raise memory
    warn_about_eviction(memory)
    return version


def check_server(client: redis.Redis, url: str = "") -> tuple[int, ...]:
    """Refuse a Redis older than 6.2; warn about settings that lose data. Returns the server version.

    The blocking shell of `server_check`: it sends the commands and hands back their replies.
    """
    steps = server_check(url)
    try:
        command = next(steps)
        while True:
            try:
                reply = client.execute_command(*command)
            except redis.RedisError as exc:
                reply = exc
            command = steps.send(reply)
    except StopIteration as done:
        return cast("tuple[int, ...]", done.value)


async def check_server_async(client: redis.asyncio.Redis, url: str = "") -> tuple[int, ...]:
    """`check_server` for an asyncio client (AsyncClient, on first use): `server_check`, awaited."""
    steps = server_check(url)
    try:
        command = next(steps)
        while True:
            try:
                reply = await client.execute_command(*command)
            except redis.RedisError as exc:
                reply = exc
            command = steps.send(reply)
    except StopIteration as done:
        return cast("tuple[int, ...]", done.value)


def unreachable_error(url: str, exc: Exception) -> RedisUnavailableError:
    """The error for a Redis that does not answer, saying what to check."""
    return RedisUnavailableError(
        f"cannot reach Redis at {redact_url(url) or 'the configured URL'}: {str(exc).rstrip('.')}. "
        "Is it running? Check ORCH_REDIS_URL, or start `orch dev`."
    )


def check_info(info: Mapping[str, Any], url: str = "") -> tuple[int, ...]:
    """The version in an `INFO server` reply; RedisUnavailableError if it is older than 6.2."""
    version = parse_version(str(info.get("redis_version", "0")))
    if version < MIN_REDIS_VERSION:
        raise RedisUnavailableError(
            f"Redis {'.'.join(map(str, version))} at {redact_url(url)} is too old: orch needs Redis >= 6.2 "
            "(streams with XAUTOCLAIM, LMOVE). Upgrade Redis or use Valkey."
        )
    return version


def parse_version(text: str) -> tuple[int, ...]:
    """"7.2.4-rc1" -> (7, 2, 4): the leading number of each of the first three parts."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = re.match(r"\d*", piece)
        parts.append(int(digits.group() or 0) if digits else 0)
    return tuple(parts)


def warn_about_eviction(reply: Mapping[Any, Any]) -> None:
    """Log a warning when an `INFO memory` reply says Redis may evict keys."""
    policy = reply.get("maxmemory_policy", reply.get(b"maxmemory_policy", b"noeviction"))
    if policy not in (b"noeviction", "noeviction"):
        log.warning(
            "Redis maxmemory-policy is %s: under memory pressure Redis may evict events, runs or dedup keys. "
            "Set maxmemory-policy noeviction for orch.",
            policy.decode() if isinstance(policy, bytes) else policy,
        )
