"""③ The operators of a rule's `match:` pattern, with AWS EventBridge's semantics (event-ruler's).

Each operator tests one leaf value of the event (a string, number, boolean or null; never an object):

    "eu"                                exact value: a string equals only a string, a number only a number
                                        (by value: 300 == 300.0), true/false only booleans, null only null
    {prefix: "eu-"}                     a string starting with it (case-sensitive); {prefix: {equals-ignore-case: x}}
    {suffix: ".png"}                    a string ending with it; {suffix: {equals-ignore-case: x}}
    {equals-ignore-case: "alice"}       a string equal to it ignoring case
    {wildcard: "*/lib/*.jar"}           a string matching it; `*` is any run of characters (maybe none),
                                        `\\*` a star, `\\\\` a backslash; `**` and other escapes are refused
    {anything-but: x}                   a value that is not x: a string/number, a list of strings or of numbers,
                                        or {prefix|suffix|wildcard|equals-ignore-case: string or list}
    {numeric: [">", 0, "<=", 5]}        a JSON number in the range ("=", "<", "<=", ">", ">="); never a string
    {exists: true | false}              the field has a leaf value / has none (missing, an object, an empty list)
    {cidr: "10.0.0.0/24"}               a string that is an IPv4 or IPv6 address in the network

Compiling the written operators into these Matchers is pattern_syntax.py's job.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RuleError

__all__ = ["OPERATORS", "AnythingBut", "Cidr", "Exact", "Exists", "IgnoreCase", "Matcher", "Numeric", "PatternError",
           "Prefix", "Suffix", "Wildcard", "comparable", "equal", "ip_value", "is_number", "show_parts"]

OPERATORS = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists",
                       "cidr"})
NUMERIC_LIMIT = 5.0e9  # event-ruler's range for numeric matching: -5.0e9 to +5.0e9 inclusive
_IPV4_TEXT = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")  # what event-ruler reads as an IP address (Constants)
_IPV6_TEXT = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")

Parts = tuple[str | int, ...]


class PatternError(RuleError):
    """A `match:` pattern that EventBridge would refuse; `parts` locate it inside `match:`."""

    def __init__(self, parts: Parts, message: str) -> None:
        self.parts = parts
        self.path = show_parts(parts)
        super().__init__(f"{self.path}: {message}" if self.path else message)
        self.detail = message


def show_parts(parts: Parts) -> str:
    """("data.amount", 0, "numeric") -> "data.amount[0].numeric"."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def comparable(value: float) -> int | None:
    """A number as event-ruler compares it (ComparableNumber): (5e9 + value) * 1e6 in double arithmetic,
    truncated, so precise to 6 decimal places (0.1 + 0.2 equals 0.3); None outside -5e9 .. 5e9."""
    if not -NUMERIC_LIMIT <= value <= NUMERIC_LIMIT:
        return None
    return int(1e6 * (NUMERIC_LIMIT + float(value)))


def equal(actual: Any, expected: Any) -> bool:
    """Exact-value equality: YAML `true` never equals 1 (as Python's == would have it), "5" never equals 5;
    numbers within -5e9 .. 5e9 compare as event-ruler does (`comparable`: to 6 decimal places), others by value."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(actual, str) or isinstance(expected, str):
        return isinstance(actual, str) and isinstance(expected, str) and actual == expected
    if is_number(actual) and is_number(expected):
        left, right = comparable(actual), comparable(expected)
        if left is not None and right is not None:
            return left == right
    return bool(actual == expected)


def ip_value(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as event-ruler reads one (CIDR.java): dotted IPv4 or IPv6 of hex digits and colons (no
    zone, no embedded dotted IPv4), an IPv4-mapped IPv6 address read as its IPv4 address; else None."""
    if len(text) > 64 or not (_IPV4_TEXT.fullmatch(text) or _IPV6_TEXT.fullmatch(text)):
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


@dataclass(frozen=True)
class Matcher:
    """One operator; `test` decides a present leaf value, `describe` says what it wants."""

    def test(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Exact(Matcher):
    value: Any

    def test(self, value: Any) -> bool:
        expected = self.value
        if type(expected) is str:
            return type(value) is str and value == expected
        return equal(value, expected)

    def describe(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Affix(Matcher):
    text: str
    ignore_case: bool = False

    def _has(self, value: str, text: str) -> bool:
        raise NotImplementedError

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        return self._has(value.lower(), self.text.lower()) if self.ignore_case else self._has(value, self.text)

    def describe(self) -> str:
        return f"{type(self).__name__.lower()} {self.text!r}" + (" ignoring case" if self.ignore_case else "")


@dataclass(frozen=True)
class Prefix(Affix):
    def _has(self, value: str, text: str) -> bool:
        return value.startswith(text)


@dataclass(frozen=True)
class Suffix(Affix):
    def _has(self, value: str, text: str) -> bool:
        return value.endswith(text)


@dataclass(frozen=True)
class IgnoreCase(Matcher):
    text: str

    def test(self, value: Any) -> bool:
        return isinstance(value, str) and value.lower() == self.text.lower()

    def describe(self) -> str:
        return f"{self.text!r} ignoring case"


@dataclass(frozen=True)
class Wildcard(Matcher):
    text: str
    segments: tuple[str, ...]  # the literal runs between the stars

    def test(self, value: Any) -> bool:
        return isinstance(value, str) and _glob(self.segments, value)

    def describe(self) -> str:
        return f"wildcard {self.text!r}"


@dataclass(frozen=True)
class Numeric(Matcher):
    """A numeric range, compared as event-ruler does: to 6 decimal places (`comparable`)."""

    bounds: tuple[tuple[str, float], ...]  # e.g. ((">", 0), ("<=", 5))
    keys: tuple[tuple[str, int], ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple((op, comparable(bound) or 0) for op, bound in self.bounds))

    def test(self, value: Any) -> bool:
        key = comparable(value) if is_number(value) else None
        if key is None:
            return False
        return all(_COMPARE[op](key, bound) for op, bound in self.keys)

    def describe(self) -> str:
        return "a number " + " and ".join(f"{op} {bound!r}" for op, bound in self.bounds)


@dataclass(frozen=True)
class Exists(Matcher):
    present: bool

    def test(self, value: Any) -> bool:  # only called with a present leaf value
        return self.present

    def describe(self) -> str:
        return "the field to exist" if self.present else "the field to be missing"


@dataclass(frozen=True)
class Cidr(Matcher):
    """IP addresses (`ip_value`) of one version from `low` to `high`: event-ruler's range, which starts at the
    address as written (10.0.0.5/8 is 10.0.0.5 .. 10.255.255.255)."""

    version: int
    low: int
    high: int
    text: str

    def test(self, value: Any) -> bool:
        address = ip_value(value) if isinstance(value, str) else None
        return address is not None and address.version == self.version and self.low <= int(address) <= self.high

    def describe(self) -> str:
        return f"an IP address in {self.text}"


@dataclass(frozen=True)
class AnythingBut(Matcher):
    """Any present value but those `excluded` describes; a value of another kind (a number against strings,
    null, a boolean) is never excluded."""

    excluded: tuple[Matcher, ...]
    text: str

    def test(self, value: Any) -> bool:
        return not any(m.test(value) for m in self.excluded)

    def describe(self) -> str:
        return f"anything but {self.text}"


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {"=": operator.eq, "<": operator.lt, "<=": operator.le,
                                                   ">": operator.gt, ">=": operator.ge}


def _glob(segments: tuple[str, ...], value: str) -> bool:
    """Linear-time `*` glob (never a regular expression: no backtracking on event data): the first run is a prefix, the last a suffix, the others found in order."""
    if len(segments) == 1:
        return value == segments[0]
    first, *middle, last = segments
    if len(value) < len(first) + len(last) or not value.startswith(first) or not value.endswith(last):
        return False
    at, end = len(first), len(value) - len(last)
    for run in middle:
        found = value.find(run, at, end)
        if found < 0:
            return False
        at = found + len(run)
    return True
