"""The egress policy of the http task kind, as a pure function: which addresses, names and entries."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from executors.kinds.egress import EgressPolicy, refusal
from orchestrator.errors import ConfigError

DEFAULT = EgressPolicy.default()


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("0.0.0.0", "'this network'"),
    ("0.1.2.3", "'this network'"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.170", "IETF protocol assignment"),
    ("192.0.2.1", "not a globally routable"),  # documentation
    ("198.18.0.1", "not a globally routable"),  # benchmarking
    ("2001:db8::1", "not a globally routable"),  # documentation
    ("64:ff9b:1::a00:1", "local-use NAT64"),
])
def test_non_global_addresses_are_refused_and_say_why(address: str, why: str) -> None:
    verdict = DEFAULT.check("somewhere.example", [address])

    assert not verdict.allowed
    assert verdict.address == str(ip_address(address))
    assert why in verdict.reason


@pytest.mark.parametrize(("address", "why"), [
    ("::ffff:127.0.0.1", "the IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("::ffff:169.254.169.254", "the IPv4-mapped form of 169.254.169.254, a link-local address"),
    ("::ffff:10.1.2.3", "the IPv4-mapped form of 10.1.2.3, a private address"),
    ("::ffff:0.0.0.0", "the IPv4-mapped form of 0.0.0.0, a 'this network' address"),
    ("64:ff9b::7f00:1", "the NAT64 form of 127.0.0.1, a loopback address"),
    ("::ffff:0:127.0.0.1", "the IPv4-translated form of 127.0.0.1, a loopback address"),
    ("::ffff:0:a9fe:a9fe", "the IPv4-translated form of 169.254.169.254, a link-local address"),
    ("64:ff9b::a9fe:a9fe", "the NAT64 form of 169.254.169.254, a link-local address"),
    ("2002:7f00:1::", "the 6to4 form of 127.0.0.1, a loopback address"),
    ("2002:c0a8:101::1", "the 6to4 form of 192.168.1.1, a private address"),
    ("::7f00:1", "the IPv4-compatible form of 127.0.0.1, a loopback address"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "the Teredo form of 127.0.0.1, a loopback address"),
])
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_carry(address: str, why: str) -> None:
    assert (refusal(ip_address(address)) or "").startswith(why)
    assert not DEFAULT.check(address, [address]).allowed


def test_an_ipv4_compatible_form_of_a_public_address_is_refused_too() -> None:
    assert refusal(ip_address("::808:808")) == "a deprecated IPv4-compatible address"


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111",
                                     "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_globally_routable_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None
    assert DEFAULT.check("api.example.com", [address]).allowed


def test_one_refused_address_refuses_the_host() -> None:
    verdict = DEFAULT.check("mixed.example", ["93.184.215.14", "10.0.0.5"])

    assert (verdict.allowed, verdict.address) == (False, "10.0.0.5")
    assert verdict.reason == "10.0.0.5 is a private address"


def test_a_host_that_resolved_to_nothing_is_refused() -> None:
    assert not DEFAULT.check("nowhere.example", []).allowed


# -- the allowlist ---------------------------------------------------------------------------------------

def test_a_host_name_entry_matches_exactly_whatever_the_case_and_accepts_any_address() -> None:
    policy = EgressPolicy.from_entries(["API.internal"])

    assert policy.check("api.internal", ["10.0.0.5"]).allowed
    assert policy.check("Api.Internal.", ["127.0.0.1", "169.254.169.254"]).allowed
    assert "matches the ORCH_HTTP_ALLOW entry 'api.internal'" in policy.check("api.internal", []).reason
    assert not policy.check("x.api.internal", ["10.0.0.5"]).allowed
    assert not policy.check("api.internal.evil.example", ["10.0.0.5"]).allowed


def test_a_wildcard_entry_matches_subdomains_only() -> None:
    policy = EgressPolicy.from_entries(["*.corp.example"])

    assert policy.check("db.corp.example", ["10.0.0.5"]).allowed
    assert policy.check("a.b.CORP.example", ["192.168.1.1"]).allowed
    assert not policy.check("corp.example", ["10.0.0.5"]).allowed
    assert not policy.check("evilcorp.example", ["10.0.0.5"]).allowed
    assert not policy.check("corp.example.evil", ["10.0.0.5"]).allowed


def test_an_ip_entry_opens_that_address_only() -> None:
    policy = EgressPolicy.from_entries(["127.0.0.1", "::1"])

    assert policy.check("127.0.0.1", ["127.0.0.1"]).allowed
    assert policy.check("localhost", ["127.0.0.1", "::1"]).allowed
    assert policy.check("::ffff:127.0.0.1", ["::ffff:127.0.0.1"]).allowed  # the same socket destination
    assert not policy.check("127.0.0.2", ["127.0.0.2"]).allowed
    assert not policy.check("localhost", ["127.0.0.1", "10.0.0.1"]).allowed


def test_a_cidr_entry_opens_its_block_and_public_addresses_stay_open() -> None:
    policy = EgressPolicy.from_entries(["10.20.0.0/16", "fd00:1::/32"])

    assert policy.check("svc", ["10.20.3.4", "8.8.8.8"]).allowed
    assert policy.check("svc6", ["fd00:1:2::3"]).allowed
    verdict = policy.check("svc", ["10.20.3.4", "10.21.0.1"])
    assert (verdict.allowed, verdict.address) == (False, "10.21.0.1")
    assert not policy.check("metadata", ["169.254.169.254"]).allowed


def test_an_ip_entry_does_not_match_a_host_name() -> None:
    assert not EgressPolicy.from_entries(["10.0.0.1"]).check("10.0.0.1.nip.io", ["10.0.0.2"]).allowed


def test_entries_are_trimmed_and_an_empty_list_is_the_default() -> None:
    assert EgressPolicy.from_entries([]) == DEFAULT
    assert EgressPolicy.from_entries([" api.internal "]).check("api.internal", ["10.0.0.1"]).allowed


@pytest.mark.parametrize(("entry", "message"), [
    ("10.0.0.1/8", "has host bits set"),
    ("1.2.3.4/33", "not a valid IP address or CIDR block"),
    ("http://api.internal", "is not a host name"),
    ("api.internal:8080", "is not a host name"),
    ("api.internal/path", "is not a host name"),
    ("*", "is not a host name"),
    ("*.", "is not a host name"),
    ("a.*.example", "is not a host name"),
    ("", "is not a host name"),
    ("-api.example", "is not a host name"),
    ("bücher.example", "xn-- form"),
    ("0x7f.0.0.1", "write it as a.b.c.d"),
    ("2130706433", "write it as a.b.c.d"),
    ("127.1", "write it as a.b.c.d"),
])
def test_an_invalid_entry_is_named_when_the_policy_is_built(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        EgressPolicy.from_entries(["api.internal", entry])

    assert f"ORCH_HTTP_ALLOW: entry {entry!r}" in str(caught.value)


def test_every_invalid_entry_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        EgressPolicy.from_entries(["http://a", "ok.example", "10.0.0.1/8"])

    assert [issue.message.split(" ")[1] for issue in caught.value.issues] == ["'http://a'", "'10.0.0.1/8'"]
