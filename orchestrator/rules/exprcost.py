"""The cost limit of a CEL expression: a static bound from its structure, priced at run time with the
sizes of the values it is given.

What can make a CEL expression expensive. The library (common-expression-language, on the Rust `cel`
crate) has no user functions here that build collections (no `lists.range`, `repeat`, `split`,
`cel.bind`: see rules/expr.py), no loops and no recursion, so the only work that grows faster than the
size of the event is a comprehension: the macros `all`, `exists`, `exists_one`, `map` and `filter`.
Every other step (an operator, `size`, `matches`, `in`) is at most linear in its operands, and those
are bounded by the event size limit; but a comprehension repeats them per element. So we bound the
comprehensions:

- a comprehension iterates over its range: a literal list (`[1, 2, 3]`, exactly its element count) or
  any other list or map, whose length is at most R = (1 + P) * (N + T): N is the longest list or map in
  the values the expression reads (measured once per event), T the number of tokens of the expression
  (bounding any literal collection), and P its number of `+` operators (a list concatenation adds up
  at most P + 1 such lists; `map` and `filter` return at most as many elements as they visit);
- `all`, `exists` and `exists_one` cost one step per element, plus R per `in` test in their arguments
  (`x in data.list` scans a list); `map` and `filter` cost r(r+1)/2 steps more over r elements, because
  the library copies its accumulator on every append (quadratic: cel-rust issue 340; price them
  linearly once a release fixes that);
- a string operation in a comprehension's own body (STRING_OPS: `contains`, `startsWith`, `endsWith`,
  `matches`, `size`, `string`, `+`, comparisons, `in`, indexing) costs KIB_STEPS steps per KiB of the
  longest string it may touch, times (1 + P) (concatenations make longer strings): per element, the
  longest string under the paths the body reads from outside the comprehension (`data.description`;
  through an enclosing comprehension's variable, the event's longest string); once in all, the strings
  of the elements themselves (at most every string's characters together). So
  `data.tags.exists(t, data.description.contains(t))` costs about (tags) x (description KiB) x 10;
- a comprehension inside another's arguments runs once per outer element: its cost is multiplied by the
  outer ranges. The sum over all comprehensions is the expression's cost, in steps.

At compile time an expression is refused when its comprehensions nest deeper than
MAX_COMPREHENSION_NESTING, when a comprehension calls `matches` with a pattern that is not a string literal
(it would compile a regular expression, as long as the event allows, for every element), or when its cost with every non-literal range empty (a lower bound) already
exceeds MAX_COST_STEPS. At run time, before evaluating, its cost is priced with the actual N and the
evaluation is refused, with an error saying so, when it exceeds MAX_COST_STEPS. 100,000 steps is about
25 ms of this library's evaluation on one core: an `exists` over 100,000 elements, a `map` over ~440;
a KiB of string work (a `matches` or `contains`, the slowest) takes up to ~2.6 us, about KIB_STEPS steps.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["KIB_STEPS", "MAX_COMPREHENSION_NESTING", "MAX_COST_STEPS", "CostError", "CostModel", "Sizes", "cost_model",
           "largest", "measure"]

MAX_COST_STEPS = 100_000
MAX_COMPREHENSION_NESTING = 2
KIB_STEPS = 10  # steps per KiB of string a string operation touches
STRING_OPS = frozenset({"contains", "startsWith", "endsWith", "matches", "size", "string", "+", "==", "!=", "<", "<=",
                        ">", ">=", "in", "["})
_KEYWORDS = frozenset({"true", "false", "null", "in"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_QUADRATIC = frozenset({"map", "filter"})
_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<raw>(?:[rR][bB]?|[bB][rR])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*"))
  | (?P<string>[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>&&|\|\||==|!=|<=|>=|\.\?|[-+*/%!<>?:.,()\[\]{}])
""", re.VERBOSE | re.DOTALL)
_OPEN = {"(": ")", "[": "]", "{": "}"}
_VALUE_END = frozenset({")", "]", "}"})


class CostError(ValueError):
    """An expression that is, or would be over these values, too expensive to evaluate."""


@dataclass(frozen=True)
class _Comprehension:
    macro: str
    literal_size: int | None  # the element count of a literal-list range, else None (sized at run time)
    parent: int | None  # index of the comprehension whose arguments hold this one
    members: int = 0  # `in` tests directly in its arguments: each scans a list of up to R elements
    string_ops: int = 0  # STRING_OPS in its own arguments (not in a nested comprehension's)
    reads: tuple[int, ...] = ()  # the CostModel.paths its own arguments read from outside it
    reads_enclosing: bool = False  # ... and whether they read an enclosing comprehension's variable


@dataclass(frozen=True)
class Sizes:
    """What the values an expression reads measure: the longest list or map, the longest string and all
    strings' characters together, and the longest string under each of the model's `paths`."""

    longest: int
    string: int = 0
    strings: int = 0
    paths: tuple[int, ...] = ()


@dataclass(frozen=True)
class CostModel:
    """The comprehensions of one expression, priced by `steps(sizes)` for the sizes of its input values."""

    comprehensions: tuple[_Comprehension, ...]
    tokens: int
    pluses: int
    paths: tuple[tuple[str, ...], ...] = ()  # the field paths comprehension bodies read (data.description)

    def steps(self, sizes: Sizes | int) -> int:
        """The expression's cost bound, in steps, over values of these sizes (an int: the longest list or map,
        and no strings)."""
        sizes = sizes if isinstance(sizes, Sizes) else Sizes(sizes)
        bound = (1 + self.pluses) * (sizes.longest + self.tokens)
        ranges = [c.literal_size if c.literal_size is not None else bound for c in self.comprehensions]
        total = 0
        for index, item in enumerate(self.comprehensions):
            size = ranges[index]
            per_kib = item.string_ops * (1 + self.pluses) * KIB_STEPS
            own = size * (1 + item.members * bound + per_kib * _kib(self._outside(item, sizes)))
            own += per_kib * _kib(sizes.strings)  # the elements' own strings, each touched once per operation
            if item.macro in _QUADRATIC:
                own += size * (size + 1) // 2
            outer, parent = 1, item.parent
            while parent is not None:
                outer *= ranges[parent]
                parent = self.comprehensions[parent].parent
            total += outer * own
        return total

    def _outside(self, item: _Comprehension, sizes: Sizes) -> int:
        """The longest string the comprehension's body reads from outside it, repeated for each element."""
        found = max((sizes.paths[i] for i in item.reads if i < len(sizes.paths)), default=0)
        return max(found, sizes.string) if item.reads_enclosing else found

    def check(self, sizes: Sizes | int, text: str) -> None:
        """CostError unless the expression is within MAX_COST_STEPS over values of these sizes."""
        sizes = sizes if isinstance(sizes, Sizes) else Sizes(sizes)
        steps = _steps(self, sizes)
        if steps > MAX_COST_STEPS:
            raise CostError(f"{text!r}: over this event it could take up to {steps:,} steps (limit "
                            f"{MAX_COST_STEPS:,}; its longest list or map has {sizes.longest:,} elements, its "
                            f"longest string {sizes.string:,} characters): iterate over shorter lists, avoid "
                            "string functions on long fields inside all/exists/map/filter, or nesting map/filter "
                            "over event lists")


def _kib(chars: int) -> int:
    return math.ceil(chars / 1024)


@functools.lru_cache(maxsize=1024)
def _steps(model: CostModel, sizes: Sizes) -> int:
    return model.steps(sizes)  # events of one shape repeat their sizes: price each size once


def cost_model(text: str) -> CostModel | None:
    """The cost model of `text` (None when it has no comprehension); CostError if it is too costly as
    written. The text must be a CEL expression the library has parsed (the scan trusts its brackets)."""
    tokens = _tokens(text)
    closing = _matching(tokens)
    found: list[_Comprehension] = []
    spans: list[tuple[int, int]] = []
    for i in range(len(tokens) - 2):
        if tokens[i] == "." and tokens[i + 2] == "(" and tokens[i + 1] in _MACROS and i > 0:
            found.append(_Comprehension(tokens[i + 1], _literal_size(tokens, closing, i - 1), _innermost(spans, i)))
            spans.append((i + 2, closing.get(i + 2, len(tokens))))
    if not found:
        return None
    for index, token in enumerate(tokens):
        if token == "in":
            inner = _innermost(spans, index)
            if inner is not None:
                found[inner] = replace(found[inner], members=found[inner].members + 1)
    _check_matches(tokens, closing, spans, text)
    found, paths = _string_work(tokens, spans, found)
    model = CostModel(tuple(found), len(tokens), tokens.count("+"), paths)
    _check_nesting(model, text)
    lower = CostModel(tuple(replace(c, literal_size=c.literal_size or 0, members=0) for c in found), 0, 0)
    if lower.steps(0) > MAX_COST_STEPS:
        raise CostError(f"{text!r} would take {lower.steps(0):,} steps over its literal lists alone "
                        f"(limit {MAX_COST_STEPS:,})")
    return model


def largest(values: Iterable[Any]) -> int:
    """The length of the longest list or map in `values` (JSON-like), at any depth."""
    return measure(values)[0]


def measure(values: Iterable[Any]) -> tuple[int, int, int]:
    """The longest list or map, the longest string, and every string's characters together (map keys too),
    in `values` (JSON-like), at any depth."""
    longest = string = strings = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            string, strings = max(string, len(value)), strings + len(value)
        elif isinstance(value, Mapping):
            longest = max(longest, len(value))
            stack.extend(value.values())
            stack.extend(key for key in value if isinstance(key, str))
        elif isinstance(value, list | tuple):
            longest = max(longest, len(value))
            stack.extend(value)
    return longest, string, strings


def _string_work(tokens: list[str], spans: list[tuple[int, int]],
                 found: list[_Comprehension]) -> tuple[list[_Comprehension], tuple[tuple[str, ...], ...]]:
    """Each comprehension with the string operations of its own arguments and the paths they read from
    outside it; and those paths."""
    paths: dict[tuple[str, ...], int] = {}
    own = [_innermost(spans, index) for index in range(len(tokens))]
    variables = [tokens[start + 1] if _is_name(tokens[start + 1]) else "" for start, _ in spans]
    out = []
    for i, item in enumerate(found):
        ops = sum(1 for index, token in enumerate(tokens) if own[index] == i and token in STRING_OPS)
        reads, enclosing = set(), False
        for index, token in enumerate(tokens):
            if own[index] != i or not _is_name(token) or tokens[index - 1] == "." or token == variables[i]:
                continue
            if index + 1 < len(tokens) and tokens[index + 1] == "(":
                continue  # a function (size(...)), not a value
            if token in _enclosing_variables(found, variables, i):
                enclosing = True
                continue
            reads.add(paths.setdefault(_path(tokens, index), len(paths)))
        out.append(replace(item, string_ops=ops, reads=tuple(sorted(reads)), reads_enclosing=enclosing))
    return out, tuple(paths)


def _enclosing_variables(found: list[_Comprehension], variables: list[str], index: int) -> set[str]:
    names, parent = set(), found[index].parent
    while parent is not None:
        names.add(variables[parent])
        parent = found[parent].parent
    return names


def _path(tokens: list[str], index: int) -> tuple[str, ...]:
    """The dotted field path starting at token `index` (data . description), up to a call or an index."""
    parts = [tokens[index]]
    while (index + 3 < len(tokens) and tokens[index + 1] == "." and _is_name(tokens[index + 2])
           and tokens[index + 3] != "("):
        parts.append(tokens[index + 2])
        index += 2
    return tuple(parts)


def _is_name(token: str) -> bool:
    return (token[:1].isalpha() or token[:1] == "_") and token not in _KEYWORDS


def _check_matches(tokens: list[str], closing: dict[int, int], spans: list[tuple[int, int]], text: str) -> None:
    """CostError for a `matches` inside a comprehension whose pattern is not one string literal."""
    for index, token in enumerate(tokens):
        if token != "matches" or index + 1 >= len(tokens) or tokens[index + 1] != "(":
            continue
        if _innermost(spans, index) is None:
            continue
        end = closing.get(index + 1, len(tokens))
        args = tokens[index + 2:end]
        pattern = args if tokens[index - 1] == "." else args[args.index(",") + 1:] if "," in args else args
        if pattern != ["'"]:
            raise CostError(f"{text!r} calls matches() inside a comprehension (all, exists, exists_one, map, "
                            "filter) with a pattern that is not a string literal: it would compile a regular "
                            "expression from the event for every element; write the pattern as a literal")


def _innermost(spans: list[tuple[int, int]], index: int) -> int | None:
    """The comprehension whose argument span holds token `index` most closely (spans nest, in order)."""
    return next((j for j in range(len(spans) - 1, -1, -1) if spans[j][0] < index < spans[j][1]), None)


def _check_nesting(model: CostModel, text: str) -> None:
    for item in model.comprehensions:
        depth, parent = 1, item.parent
        while parent is not None:
            depth, parent = depth + 1, model.comprehensions[parent].parent
        if depth > MAX_COMPREHENSION_NESTING:
            raise CostError(f"{text!r} nests comprehensions (all, exists, exists_one, map, filter) {depth} deep; "
                            f"at most {MAX_COMPREHENSION_NESTING} are allowed")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    for found in _TOKEN.finditer(text):
        kind = found.lastgroup
        if kind == "space":
            continue
        out.append("'" if kind in ("raw", "string", "number") else found.group())
    return out


def _matching(tokens: list[str]) -> dict[int, int]:
    """Index of each opening bracket -> index of its closing one."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for index, token in enumerate(tokens):
        if token in _OPEN:
            stack.append(index)
        elif token in _VALUE_END and stack:
            pairs[stack.pop()] = index
    return pairs


def _literal_size(tokens: list[str], closing: dict[int, int], end: int) -> int | None:
    """The element count of the literal list ending at `end` (the receiver of a macro), else None."""
    if tokens[end] != "]":
        return None
    start = next((o for o, c in closing.items() if c == end), None)
    if start is None or (start > 0 and (tokens[start - 1] in _VALUE_END or _is_value(tokens[start - 1]))):
        return None  # an index (`data.items[0]`), not a literal list
    depth, commas = 0, 0
    for token in tokens[start + 1:end]:
        if token in _OPEN:
            depth += 1
        elif token in _VALUE_END:
            depth -= 1
        elif token == "," and depth == 0:
            commas += 1
    if end == start + 1:
        return 0
    return commas if tokens[end - 1] == "," else commas + 1


def _is_value(token: str) -> bool:
    return token == "'" or (token[:1].isalpha() or token[:1] == "_") and token not in ("in",)
