"""Where an `http` task may connect: the egress policy and the network backend that enforces it.

The threat is server-side request forgery. An http task's URL can be rendered from event data, so
whoever can send an event can make the worker fetch a URL of their choosing, from inside the network,
and read the answer in the run's result: the cloud metadata service at 169.254.169.254 (credentials),
an admin port on loopback, a database on a private address. Checking the URL's text is not enough:
`2130706433`, `0x7f.0.0.1`, `localhost` and a name whose DNS answers 127.0.0.1 all reach loopback,
a redirect can point anywhere, and a name can answer a public address when it is checked and a
private one when it is fetched (DNS rebinding).

So the check sits where the socket is opened. `EgressBackend.connect_tcp` resolves the host once,
asks the policy about every address, and connects to the addresses it vetted, never to the name:
nothing is resolved twice. Every connection httpx makes, redirects included, goes through it.
TLS still verifies the certificate for the URL's host name: httpcore passes that name as
`server_hostname` to `start_tls` on the stream this backend returns.

`EgressPolicy` is the pure part: by default only globally routable addresses; an allowlist
(`ORCH_HTTP_ALLOW`) of host names (`api.internal`, `*.corp.example`), IP addresses and CIDR blocks
opens the rest. A client using the transport must not use a proxy (`trust_env=False`): a proxy
would open the connection for us, out of the policy's sight.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpcore
import httpx

from orchestrator.errors import ConfigError, ConfigIssue

from .errors import DestinationRefused

__all__ = ["SCHEMES", "EgressBackend", "EgressPolicy", "EgressTransport", "Verdict", "refusal"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

SCHEMES = ("http", "https")
SETTING = "ORCH_HTTP_ALLOW"

# Refused whatever `is_global` says (Python 3.11 calls multicast, site-local and 6to4 "global").
_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple((ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "a 'this network' address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata services answer there)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.168.0.0/16", "a private address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "the loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))
_NAT64 = IPv6Network("64:ff9b::/96")
_COMPATIBLE = IPv6Network("::/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT: ::ffff:0:a.b.c.d
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_IPISH = re.compile(r"[0-9a-f:.%]+(/[0-9]*)?")
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")  # a last label like this makes an IPv4 address in inet_aton


def _embedded_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 form carries, and the form's name."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _COMPATIBLE:
        return "IPv4-compatible", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _TRANSLATED:
        return "IPv4-translated", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why the default policy refuses `ip` ("a loopback address"), or None when it is globally routable."""
    for network, why in _RANGES:
        if ip in network:
            return why
    embedded = _embedded_ipv4(ip) if isinstance(ip, IPv6Address) else None
    if embedded is not None:
        form, inner = embedded
        why_inner = refusal(inner)
        if why_inner is not None:
            return f"the {form} form of {inner}, {why_inner}"
        if form == "IPv4-mapped":
            return None  # a socket connects to the IPv4 address itself, which is global
        if form == "IPv4-compatible":
            return "a deprecated IPv4-compatible address"
    return None if ip.is_global else "not a globally routable address"


@dataclass(frozen=True)
class Verdict:
    """Whether a destination may be reached, and why; `address` is the refused one."""

    allowed: bool
    reason: str
    address: str | None = None


@dataclass(frozen=True)
class EgressPolicy:
    """Globally routable addresses, plus the host names and networks of an allowlist. Pure."""

    hosts: frozenset[str] = frozenset()  # exact names, lower case, without a trailing dot
    suffixes: tuple[str, ...] = ()  # ".corp.example" for the entry "*.corp.example"
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def default(cls) -> EgressPolicy:
        """Globally routable addresses only."""
        return cls()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        """The policy opening `entries` (host names, `*.` wildcards, IPs, CIDR blocks); ConfigError names bad ones."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        issues: list[ConfigIssue] = []
        for entry in entries:
            try:
                parsed = _parse_entry(entry)
            except ValueError as exc:
                issues.append(ConfigIssue(None, None, SETTING, f"entry {entry!r} {exc}"))
                continue
            if not isinstance(parsed, str):
                networks.append(parsed)
            elif parsed.startswith("*."):
                suffixes.append(parsed[1:])
            else:
                hosts.add(parsed)
        if issues:
            raise ConfigError(issues)
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def check(self, host: str, addresses: Iterable[IPAddress | str]) -> Verdict:
        """Whether `host`, resolved to `addresses`, may be reached: by its name, or by every address."""
        entry = self._host_entry(host.lower().rstrip("."))
        if entry is not None:
            return Verdict(True, f"{host} matches the {SETTING} entry {entry!r}")
        ips = [ip_address(a) if isinstance(a, str) else a for a in addresses]
        if not ips:
            return Verdict(False, f"{host} resolved to no address")
        for ip in ips:
            if self._network_entry(ip):
                continue
            why = refusal(ip)
            if why is not None:
                return Verdict(False, f"{ip} is {why}", address=str(ip))
        return Verdict(True, f"every address of {host} is globally routable or in {SETTING}")

    def _host_entry(self, host: str) -> str | None:
        if host in self.hosts:
            return host
        return next((f"*{suffix}" for suffix in self.suffixes if host.endswith(suffix)), None)

    def _network_entry(self, ip: IPAddress) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
        return any(ip in network or (mapped is not None and mapped in network) for network in self.networks)


def _parse_entry(entry: str) -> IPNetwork | str:
    """An IP network, or a host name in lower case ("*.x" for a wildcard); ValueError says what is wrong."""
    text = entry.strip().lower()
    try:
        return ip_network(text)
    except ValueError as exc:
        if _IPISH.fullmatch(text) and not _HOST.fullmatch(text):
            raise ValueError(f"is not a valid IP address or CIDR block ({exc})") from None
    name = text.rstrip(".")
    if not name.isascii():
        raise ValueError("is not ASCII: write an international name in its xn-- form")
    if not _HOST.fullmatch(name) or len(name) > 253:
        raise ValueError("is not a host name (`api.internal`, `*.corp.example`: no scheme, port or path), "
                         "an IP address or a CIDR block")
    if _NUMERIC.fullmatch(name.rsplit(".", 1)[-1]):
        raise ValueError("looks like an IP address in a form other than dotted decimal; write it as a.b.c.d")
    return name


def _resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to, in the resolver's order: one lookup, none for an IP literal."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # as httpcore reports a failed lookup: a ConnectError, which may be retried
        raise httpcore.ConnectError(str(exc)) from exc
    found = (ip_address(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
    return list(dict.fromkeys(found))


class EgressBackend(httpcore.SyncBackend):
    """httpcore's sync backend, connecting only to addresses the policy allows; see the module docstring."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        addresses = _resolve(host, port)
        verdict = self.policy.check(host, addresses)
        if not verdict.allowed:
            raise DestinationRefused(f"refused to connect to {host} port {port}: {verdict.reason}; add it to "
                                     f"{SETTING} if this task must reach it")
        failure: Exception = httpcore.ConnectError(f"{host} resolved to no address")
        for address in addresses:  # what socket.create_connection does with a name, over the vetted list
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


class EgressTransport(httpx.HTTPTransport):
    """httpx's transport, with every connection made by `EgressBackend` and only http(s) URLs sent."""

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False)
        # HTTPTransport takes no network backend, so the pool it built is replaced by one with ours.
        # `_pool` is the one private attribute used (httpx 0.28: handle_request and close read it); no
        # connection is opened before this line.
        self._pool = httpcore.ConnectionPool(ssl_context=verify, network_backend=EgressBackend(policy))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in SCHEMES:
            raise DestinationRefused(f"refused a {request.url.scheme}:// URL: only http and https may be fetched")
        return super().handle_request(request)
