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

`compile_operator(spec, parts)` turns one written operator into a Matcher or raises PatternError, whose
`parts` locate the problem inside `match:` (the caller reports file, line and field).
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import RuleError

__all__ = ["OPERATORS", "Exact", "Exists", "Matcher", "PatternError", "Prefix", "compile_operator", "equal",
           "is_number", "show_parts"]

OPERATORS = frozenset({"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists",
                       "cidr"})
NUMERIC_LIMIT = 5.0e9  # event-ruler's range for numeric matching: -5.0e9 to +5.0e9 inclusive
_RANGE_OPS = frozenset({"=", "<", "<=", ">", ">="})

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
class _Affix(Matcher):
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
class Prefix(_Affix):
    def _has(self, value: str, text: str) -> bool:
        return value.startswith(text)


@dataclass(frozen=True)
class Suffix(_Affix):
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


# -- compiling ---------------------------------------------------------------------------------------------


def compile_operator(spec: dict[str, Any], parts: Parts) -> Matcher:
    """A written operator object ({prefix: "eu-"}) as a Matcher; PatternError if EventBridge would refuse it."""
    if len(spec) != 1:
        raise PatternError(parts, "an operator object has exactly one key, such as {prefix: ...}")
    ((name, arg),) = spec.items()
    if name not in OPERATORS:
        known = ", ".join(sorted(OPERATORS))
        raise PatternError((*parts, name), f"unknown operator {name!r} (operators: {known})")
    return _COMPILERS[name](arg, (*parts, name))


def _string(arg: Any, parts: Parts, what: str) -> str:
    if not isinstance(arg, str):
        raise PatternError(parts, f"{what} takes a string, not {_kind(arg)}")
    return arg


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _affix(cls: type[_Affix], what: str) -> Callable[[Any, Parts], Matcher]:
    def build(arg: Any, parts: Parts) -> Matcher:
        if isinstance(arg, dict):
            if list(arg) != ["equals-ignore-case"]:
                raise PatternError(parts, f"{what} takes a string or {{equals-ignore-case: string}}")
            return cls(_string(arg["equals-ignore-case"], (*parts, "equals-ignore-case"), what), True)
        return cls(_string(arg, parts, what))
    return build


def _ignore_case(arg: Any, parts: Parts) -> Matcher:
    return IgnoreCase(_string(arg, parts, "equals-ignore-case"))


def _wildcard(arg: Any, parts: Parts) -> Matcher:
    text = _string(arg, parts, "wildcard")
    segments, run, i = [], "", 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise PatternError(parts, f"invalid escape at position {i} in {text!r}: a backslash escapes only "
                                          "* or another backslash")
            run += text[i + 1]
            i += 2
            continue
        if char == "*":
            if text[i + 1:i + 2] == "*":
                raise PatternError(parts, f"consecutive wildcard characters at position {i} in {text!r}")
            segments.append(run)
            run = ""
        else:
            run += char
        i += 1
    segments.append(run)
    return Wildcard(text, tuple(segments))


def _numeric(arg: Any, parts: Parts) -> Matcher:
    if not isinstance(arg, list) or not arg:
        raise PatternError(parts, 'numeric takes a list such as [">", 0, "<=", 5] or ["=", 3]')
    if len(arg) % 2 or len(arg) > 4:
        raise PatternError(parts, "numeric takes one or two (operator, number) pairs")
    bounds = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if not isinstance(op, str) or op not in _RANGE_OPS:
            raise PatternError((*parts, i), f"unknown numeric operator {op!r} (use =, <, <=, >, >=)")
        if not is_number(bound):
            raise PatternError((*parts, i + 1), f"the value of {op} must be a number, not {_kind(bound)}")
        if not -NUMERIC_LIMIT <= bound <= NUMERIC_LIMIT:
            raise PatternError((*parts, i + 1), "numeric matching is limited to -5.0e9 .. 5.0e9")
        bounds.append((op, bound))
    if len(bounds) == 2:
        (low_op, low), (high_op, high) = bounds
        if low_op not in (">", ">=") or high_op not in ("<", "<="):
            raise PatternError(parts, 'a numeric range is a lower bound then an upper one: [">", 0, "<=", 5]')
        if high <= low:
            raise PatternError(parts, "the lower bound of a numeric range must be below its upper bound")
    return Numeric(tuple(bounds))


def _exists(arg: Any, parts: Parts) -> Matcher:
    if not isinstance(arg, bool):
        raise PatternError(parts, "exists takes true or false")
    return Exists(arg)


def _cidr(arg: Any, parts: Parts) -> Matcher:
    text = _string(arg, parts, "cidr")
    if text.count("/") != 1:
        raise PatternError(parts, f"{text!r} is not a network like 10.0.0.0/24 or 2001:db8::/32")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise PatternError(parts, f"{text!r} is not a valid network: {exc}") from None
    return Cidr(network, text)


def _anything_but(arg: Any, parts: Parts) -> Matcher:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix", "wildcard", "equals-ignore-case"):
            raise PatternError(parts, "anything-but takes a value, a list, or one of {prefix: ...}, "
                                      "{suffix: ...}, {wildcard: ...}, {equals-ignore-case: ...}")
        ((name, inner),) = arg.items()
        items = inner if isinstance(inner, list) else [inner]
        if not items:
            raise PatternError((*parts, name), "an empty list excludes nothing")
        build = {"prefix": lambda a, p: Prefix(_nonempty(a, p, "prefix")),
                 "suffix": lambda a, p: Suffix(_nonempty(a, p, "suffix")),
                 "wildcard": _wildcard, "equals-ignore-case": _ignore_case}[name]
        where = (*parts, name)
        excluded = tuple(build(item, (*where, i) if isinstance(inner, list) else where) for i, item in enumerate(items))
        return AnythingBut(excluded, f"{name} " + _show(inner))
    values = arg if isinstance(arg, list) else [arg]
    if not values:
        raise PatternError(parts, "an empty list excludes nothing")
    for i, value in enumerate(values):
        if not (isinstance(value, str) or is_number(value)):
            raise PatternError((*parts, i) if isinstance(arg, list) else parts,
                               f"anything-but takes strings or numbers, not {_kind(value)}")
    if len({isinstance(v, str) for v in values}) > 1:
        raise PatternError(parts, "an anything-but list holds only strings or only numbers, not both")
    return AnythingBut(tuple(Exact(v) for v in values), _show(arg))


def _nonempty(arg: Any, parts: Parts, what: str) -> str:
    text = _string(arg, parts, what)
    if not text:
        raise PatternError(parts, f"anything-but {what} must not be empty")
    return text


def _show(value: Any) -> str:
    if isinstance(value, list):
        return repr(value[0]) if len(value) == 1 else "one of " + ", ".join(map(repr, value))
    return repr(value)


_COMPILERS: dict[str, Callable[[Any, Parts], Matcher]] = {
    "prefix": _affix(Prefix, "prefix"), "suffix": _affix(Suffix, "suffix"), "equals-ignore-case": _ignore_case,
    "wildcard": _wildcard, "numeric": _numeric, "exists": _exists, "cidr": _cidr, "anything-but": _anything_but}
