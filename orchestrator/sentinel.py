"""Redis through Sentinel: the `redis+sentinel://` URL form, and clients that follow the primary.

The form is the one prefect-redis and RedisVL document (redis-py has no URL form for Sentinel):

    redis+sentinel://[user:password@]host[:port][,host2[:port2],...]/service_name[/db][?options]
    rediss+sentinel://...   TLS to the data nodes and to the Sentinels

Sentinels default to port 26379. `user:password@` authenticates to the data nodes (an orch role's ACL
user); `sentinel_username` / `sentinel_password` authenticate to the Sentinels. Every other option is a
redis-py URL option (`ssl_ca_certs`, `socket_timeout`, ...) applied to the data nodes with redis-py's own
parsing; on the TLS scheme the `ssl_*` options also apply to the Sentinels, so one CA covers both.

Clients come from `Sentinel(...).master_for(service)`: their pool asks the Sentinels for the primary on
every new connection, and drops a connection that meets READONLY (its server was demoted) as a
ConnectionError, so the callers' ride-out loops retry on the new primary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.connection import parse_url

from .errors import ConfigError

__all__ = ["DEFAULT_SENTINEL_PORT", "SentinelSpec", "async_sentinel_client", "clone_sentinel_pool",
           "is_sentinel_url", "parse_sentinel_url", "sentinel_client"]

DEFAULT_SENTINEL_PORT = 26379
SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class SentinelSpec:
    """What a `redis+sentinel://` URL says: where the Sentinels are, which service, how to talk to both."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    node_kwargs: dict[str, Any] = field(default_factory=dict)  # Redis(...) options for the data nodes
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)  # Redis(...) options for the Sentinels


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SCHEMES


def parse_sentinel_url(url: str) -> SentinelSpec:
    """The SentinelSpec of `url`; ConfigError saying what is wrong with a malformed one."""
    scheme, sep, rest = url.partition("://")
    tls = SCHEMES.get(scheme.lower())
    if not sep or tls is None:
        raise ConfigError(f"not a Sentinel URL (redis+sentinel:// or rediss+sentinel://): {scheme}://...")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    creds, _, hosts = netloc.rpartition("@")
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigError("a Sentinel URL names its service after the hosts: "
                          "redis+sentinel://host1:26379,host2:26379/mymaster[/db]")
    service, db = segments[0], segments[1] if len(segments) == 2 else "0"
    if not db.isdigit():
        raise ConfigError(f"the Sentinel URL's database must be a number, not {db!r}: .../{service}/0")
    options = parse_qsl(query, keep_blank_values=True)
    on_sentinels = {k: v for k, v in options if k in SENTINEL_OPTIONS}
    node_query = urlencode([(k, v) for k, v in options if k not in SENTINEL_OPTIONS])
    node_url = f"{'rediss' if tls else 'redis'}://{creds + '@' if creds else ''}sentinel-primary/{db}"
    try:
        node = parse_url(node_url + (f"?{node_query}" if node_query else ""))
    except ValueError as exc:
        raise ConfigError(f"bad option in the Sentinel URL: {exc}") from None
    for key in ("host", "port", "connection_class"):
        node.pop(key, None)
    if tls:
        node["ssl"] = True  # the Sentinel pool picks its TLS connection class from this flag
    return SentinelSpec(_hosts(hosts), service, node, _sentinel_kwargs(node, on_sentinels, tls))


def _hosts(text: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in text.split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not colon:
            host, port = item.strip(), str(DEFAULT_SENTINEL_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad Sentinel address {item.strip()!r} in the Sentinel URL: use host:port")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def _sentinel_kwargs(node: dict[str, Any], given: dict[str, str], tls: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {k: v for k, v in node.items() if k.startswith("socket_")}
    if tls:
        kwargs.update({k: v for k, v in node.items() if k.startswith("ssl")})
    if given.get("sentinel_username"):
        kwargs["username"] = given["sentinel_username"]
    if given.get("sentinel_password"):
        kwargs["password"] = given["sentinel_password"]
    return kwargs


class _PrimaryClient(redis.Redis):  # type: ignore[misc]  # redis-py is untyped here
    """The primary's client; closing it also closes its connections to the sentinels."""

    def close(self) -> None:
        super().close()
        self.connection_pool.sentinel_manager.close()


class _AsyncPrimaryClient(redis.asyncio.Redis):  # type: ignore[misc]
    """`_PrimaryClient` for asyncio."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.connection_pool.sentinel_manager.aclose()


def sentinel_client(url: str, **options: Any) -> redis.Redis:
    """A blocking client for the primary of the Sentinel URL's service (`options`: more Redis() options)."""
    spec = parse_sentinel_url(url)
    manager = redis.sentinel.Sentinel(spec.sentinels, sentinel_kwargs=_on_sentinels(spec, options))
    return manager.master_for(spec.service, redis_class=_PrimaryClient, **{**options, **spec.node_kwargs})


def async_sentinel_client(url: str, **options: Any) -> redis.asyncio.Redis:
    """`sentinel_client` for asyncio."""
    spec = parse_sentinel_url(url)
    manager = redis.asyncio.sentinel.Sentinel(spec.sentinels, sentinel_kwargs=_on_sentinels(spec, options))
    return manager.master_for(spec.service, redis_class=_AsyncPrimaryClient, **{**options, **spec.node_kwargs})


def _on_sentinels(spec: SentinelSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The Sentinels' connection options: the URL's, and the caller's timeouts where the URL sets none (a
    Sentinel that hangs must not stall finding the primary either). As with redis://, the URL wins."""
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout", "socket_keepalive")}
    return {**timeouts, **spec.sentinel_kwargs}


def clone_sentinel_pool(pool: redis.sentinel.SentinelConnectionPool, **overrides: Any) -> redis.ConnectionPool:
    """A new pool for the same service through the same Sentinels (for another thread, or after a fork)."""
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(overrides)
    return redis.sentinel.SentinelConnectionPool(
        pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class,
        is_master=pool.is_master, check_connection=pool.check_connection, **kwargs)
