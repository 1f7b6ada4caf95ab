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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError

__all__ = ["OPERATORS", "AnythingBut", "Cidr", "Exact", "Exists", "IgnoreCase", "Matcher", "Numeric", "PatternError",
           "Prefix", "Suffix", "Wildcard", "equal", "is_number", "show_parts"]

OPERATORS = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists",
                       "cidr"})
NUMERIC_LIMIT = 5.0e9  # event-ruler's range for numeric matching: -5.0e9 to +5.0e9 inclusive

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


def equal(actual: Any, expected: Any) -> bool:
    """Exact-value equality: YAML `true` never equals 1 (as Python's == would have it), "5" never equals 5."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(actual, str) or isinstance(expected, str):
        return isinstance(actual, str) and isinstance(expected, str) and actual == expected
    return bool(actual == expected)


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
    bounds: tuple[tuple[str, float], ...]  # e.g. ((">", 0), ("<=", 5))

    def test(self, value: Any) -> bool:
        if not is_number(value) or not -NUMERIC_LIMIT <= value <= NUMERIC_LIMIT:
            return False
        return all(_COMPARE[op](value, bound) for op, bound in self.bounds)

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
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    text: str

    def test(self, value: Any) -> bool:
        if not isinstance(value, str) or len(value) > 64:
            return False
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return address.version == self.network.version and address in self.network

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
