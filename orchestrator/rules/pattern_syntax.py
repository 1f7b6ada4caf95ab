"""③ Compiling a written `match:` pattern: its structure (fields, nested objects, lists, $or) and its operators.

`compile_branches(match)` gives the alternatives of the pattern ($or expanded, as event-ruler does; at most
MAX_BRANCHES); `compile_operator(spec, parts)` one operator. Both raise PatternError, whose `parts` locate
the problem inside `match:` (the caller reports file, line and field) when EventBridge would refuse it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from .pattern_eval import Branch, Leaf, Node
from .pattern_ops import (
    NUMERIC_LIMIT,
    OPERATORS,
    Affix,
    AnythingBut,
    Cidr,
    Exact,
    Exists,
    IgnoreCase,
    Matcher,
    Numeric,
    Parts,
    PatternError,
    Prefix,
    Suffix,
    Wildcard,
    ip_value,
    is_number,
)

__all__ = ["MAX_BRANCHES", "compile_branches", "compile_operator"]

MAX_BRANCHES = 64
INT64 = 2**63  # integers in a pattern are 64-bit, as in JSON tools and event-ruler
_FIELD = re.compile(r"^[^\s.$][^\s.]*$")
_RANGE_OPS = frozenset({"=", "<", "<=", ">", ">="})


def compile_branches(match: Mapping[str, Any]) -> tuple[Branch, ...]:
    """The alternatives of a `match:` mapping."""
    if not isinstance(match, Mapping):
        raise PatternError((), "match must be a mapping of field paths to values")
    return tuple(_branch(leaves, i) for i, leaves in enumerate(_object(match, (), (), allow_empty=True)))


# -- structure: fields, nested objects, lists, $or ------------------------------------------------------------

_Alt = list[Leaf]  # one alternative, as leaves in written order


def _object(obj: Mapping[str, Any], prefix: tuple[str, ...], parts: Parts, allow_empty: bool = False) -> list[_Alt]:
    if not obj and not allow_empty:
        raise PatternError(parts, "an empty object matches nothing; remove it or give it fields")
    alternatives: list[_Alt] = [[]]
    for key, value in obj.items():
        where = (*parts, key)
        if key == "$or":
            found = _or(value, prefix, where)
        else:
            found = _field(key, value, prefix, where)
        alternatives = [a + b for a, b in itertools.product(alternatives, found)]
        if len(alternatives) > MAX_BRANCHES:
            raise PatternError(where, f"the $or alternatives multiply to more than {MAX_BRANCHES} combinations")
    return alternatives


def _or(value: Any, prefix: tuple[str, ...], parts: Parts) -> list[_Alt]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, dict) for v in value):
        raise PatternError(parts, "$or takes a list of at least two patterns (mappings)")
    found: list[_Alt] = []
    for i, item in enumerate(value):
        for key in item:
            if key in OPERATORS:
                raise PatternError((*parts, i, key), f"{key!r} is an operator, not a field: inside $or, put it "
                                                     "under a field, as in - data.x: {" + key + ": ...}")
        found.extend(_object(item, prefix, (*parts, i)))
    return found


def _field(key: Any, value: Any, prefix: tuple[str, ...], parts: Parts) -> list[_Alt]:
    names = key.split(".") if isinstance(key, str) else [""]
    if not all(_FIELD.match(name) for name in names):
        raise PatternError(parts, f"{key!r} is not a field path like data.order.region")
    path = (*prefix, *names)
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)) in OPERATORS):
        return _object(value, path, parts)
    return [[Leaf(path, _matchers(value, parts), value)]]


def _matchers(value: Any, parts: Parts) -> tuple[Matcher, ...]:
    if isinstance(value, dict):
        return (compile_operator(value, parts),)
    if not isinstance(value, list):
        return (Exact(_scalar(value, parts)),)
    if not value:
        raise PatternError(parts, "an empty list matches nothing")
    out: list[Matcher] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append(compile_operator(item, (*parts, i)))
        elif isinstance(item, list):
            raise PatternError((*parts, i), "a list inside a list: give the values in one list")
        else:
            out.append(Exact(_scalar(item, (*parts, i))))
    return tuple(out)


def _scalar(value: Any, parts: Parts) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return _integer(value, parts)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise PatternError(parts, f"compare with a string, number, boolean or null, not {value!r} (quote it)")


def _integer(value: int, parts: Parts) -> int:
    """`value` if JSON tools (and event-ruler) can hold it: a 64-bit integer; PatternError otherwise."""
    if not -INT64 <= value < INT64:
        raise PatternError(parts, f"{value} is outside the 64-bit integer range (-2**63 .. 2**63-1): no JSON event "
                                  "holds it exactly; quote it to compare a string, or use a smaller number")
    return value


def _branch(leaves: _Alt, index: int) -> Branch:
    seen: dict[tuple[str, ...], Leaf] = {}
    for leaf in leaves:
        if leaf.path in seen:
            raise PatternError((leaf.name,), f"{leaf.name} is given twice" + (" (in one $or alternative)" if index
                                                                            else ""))
        for other in seen:
            short, long = sorted((other, leaf.path), key=len)
            if long[:len(short)] == short:
                raise PatternError((leaf.name,), f"{'.'.join(short)} is tested both as a value and as an object")
        seen[leaf.path] = leaf
    return Branch(tuple(leaves), _trie(leaves, 0))


def _trie(leaves: list[Leaf], depth: int) -> Node:
    groups: dict[str, list[Leaf]] = {}
    for leaf in leaves:
        groups.setdefault(leaf.path[depth], []).append(leaf)
    fields: list[tuple[str, Leaf | Node]] = []
    for key, group in groups.items():
        fields.append((key, group[0] if len(group[0].path) == depth + 1 else _trie(group, depth + 1)))
    return Node(tuple(fields))


# -- operators -------------------------------------------------------------------------------------------------


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


def _affix(cls: type[Affix], what: str) -> Callable[[Any, Parts], Matcher]:
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


_MASK = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit takes '²' and '٣'


def _cidr(arg: Any, parts: Parts) -> Matcher:
    text = _string(arg, parts, "cidr")
    address_text, _, bits_text = text.partition("/")
    address = ip_value(address_text)
    if "/" not in text:
        raise PatternError(parts, f"{text!r} is not a network like 10.0.0.0/24 or 2001:db8::/32 (it needs its mask)")
    if address is None or not _MASK.fullmatch(bits_text):
        raise PatternError(parts, f"{text!r} is not a valid network like 10.0.0.0/24 or 2001:db8::/32 (no zone, "
                                  "no IPv4 written inside an IPv6 address)")
    width, bits = address.max_prefixlen, int(bits_text)
    if bits >= width:  # event-ruler refuses /32 and /128 (and more)
        mapped = " (an IPv4-mapped IPv6 address is read as its IPv4 address)" if ":" in address_text else ""
        raise PatternError(parts, f"{text!r}: the mask of an IPv{address.version} network must be below {width} "
                                  f"bits{mapped}; for one address, give it as an exact value")
    low = int(address)
    return Cidr(address.version, low, low | ((1 << (width - bits)) - 1), text)


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
        where = (*parts, i) if isinstance(arg, list) else parts
        if not (isinstance(value, str) or is_number(value)):
            raise PatternError(where, f"anything-but takes strings or numbers, not {_kind(value)}")
        if isinstance(value, int):
            _integer(value, where)
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
