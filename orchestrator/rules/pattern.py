"""③ A rule's `match:` pattern: compiled once at load time, evaluated against an event with an explanation.

The pattern language is AWS EventBridge's (and event-ruler's, which EventBridge is built on), written in YAML:

    match:
      data.region: eu                          # exact value; a list means any of: [eu, us]
      data.customer: {tier: [gold]}            # a nested object is the same as the dotted key data.customer.tier
      data.amount: {numeric: [">", 0]}         # one operator (see pattern_ops), or a list mixing values/operators
      data.email: [{suffix: "@example.com"}, {exists: false}]
      $or:                                     # at least two alternatives, each a pattern of its own
        - data.channel: [web]
        - data.priority: {numeric: [">=", 5]}

Every field of the pattern must hold (and); a field holds if any of its values/operators holds (or).

- **Arrays in the event**: a field holds if any element does. For arrays of objects the fields of one
  pattern object must hold within the same element (event-ruler's array consistency): {a: {x: [1], y: [2]}}
  does not match {a: [{x: 1}, {y: 2}]}.
- **`exists: false` in arrays**: the field is absent from the element the values of the same pattern object
  chose, or, when no value chose one, from every element (non-objects have no fields): see pattern_eval.
- **Missing fields**: every operator but `exists: false` needs the field present with a leaf value, so
  `anything-but` does not match a missing field; a field holding an object or an empty list has no leaf
  value (it "does not exist", as EventBridge's exists matching says).
- `null` matches JSON null, never a missing field; `anything-but` matches null.

`compile_pattern(match)` -> Pattern, or PatternError locating the problem. `Pattern.evaluate(view)` -> None
when the pattern holds, else the first Failure (path, value seen, value expected as written, reason).
`$or` is expanded into alternatives (its branches) as event-ruler does; at most MAX_BRANCHES.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..jsonutil import dumps
from .pattern_eval import Branch, Failure, Leaf, leaves_at
from .pattern_ops import Exact, PatternError
from .pattern_syntax import MAX_BRANCHES, compile_branches

__all__ = ["MAX_BRANCHES", "Branch", "Failure", "Leaf", "Pattern", "PatternError", "compile_pattern", "leaves_at"]


@dataclass(frozen=True)
class Pattern:
    """A compiled `match:` pattern; `source` is its canonical JSON (what equality compares)."""

    source: str
    branches: tuple[Branch, ...] = field(compare=False)
    empty: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", all(not branch.leaves for branch in self.branches))

    def holds(self, view: Mapping[str, Any]) -> bool:
        """Whether the pattern holds for `view` (what `evaluate` decides, without the explanation)."""
        branches = self.branches
        if len(branches) == 1:
            return branches[0].check(view) is None
        return any(branch.check(view) is None for branch in branches)

    def evaluate(self, view: Mapping[str, Any]) -> Failure | None:
        """None if the pattern holds for `view` (an event as a dict), else the first failed predicate."""
        if len(self.branches) == 1:
            return self.branches[0].check(view)
        failures = []
        for branch in self.branches:
            failure = branch.check(view)
            if failure is None:
                return None
            failures.append(failure)
        first = failures[0]
        if any(f.path != first.path for f in failures):
            return replace(first, of_alternatives=True)
        return first

    def paths(self) -> list[str]:
        """Every field path the pattern tests, in the order written (each once)."""
        return list(dict.fromkeys(leaf.name for branch in self.branches for leaf in branch.leaves))

    def describe(self) -> str:
        """One line: `data.region == "eu" and data.amount a number > 0`; alternatives in (... or ...)."""
        texts = [" and ".join(_describe_leaf(leaf) for leaf in branch.leaves) for branch in self.branches]
        return texts[0] if len(texts) == 1 else " or ".join(f"({t})" for t in texts)


def compile_pattern(match: Mapping[str, Any]) -> Pattern:
    """Compile a rule's `match:` mapping; PatternError (with its location) if EventBridge would refuse it."""
    branches = compile_branches(match)
    source = orjson.dumps(match, option=orjson.OPT_SORT_KEYS, default=repr).decode()
    return Pattern(source, branches)


def _describe_leaf(leaf: Leaf) -> str:
    exact = [m for m in leaf.matchers if isinstance(m, Exact)]
    if len(exact) == len(leaf.matchers):
        if len(exact) == 1:
            return f"{leaf.name} == {dumps(exact[0].value).decode()}"
        return f"{leaf.name} in [{', '.join(dumps(m.value).decode() for m in exact)}]"
    return f"{leaf.name}: {leaf.describe()}"
