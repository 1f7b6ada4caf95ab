"""Rule field paths that can never match, found by `orch validate`. Pure: the caller reads the files and
the recorded events.

Two sources of truth about what an event of a type holds:

- **An event schema the project declares**: `schemas/<event type>.json` in the project, a JSON Schema
  (draft 2020-12) of the event's `data` (what CloudEvents' `dataschema` names). A rule path `data.a.b`
  is absent when the schema declares the object's `properties` (or `patternProperties`) without `a`,
  and its `additionalProperties` is not `true` or a schema. Walked: `properties`, `patternProperties`,
  `additionalProperties`, `items` / `prefixItems` (a numeric part indexes, any other part looks into
  every element), local `$ref`s (`#/$defs/...`), and `allOf` / `anyOf` / `oneOf` (present in any
  branch). An object that declares no properties at all is open: everything may be there.
- **Recorded events**: a path absent from every recorded event of a rule's types (when there is one).

Both are warnings, not errors: a schema may be incomplete, and the recorded events may not show every
shape. Paths outside `data` (`source`, `subject`, extensions) are not checked against a schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .model import Rule
from .pattern_ops import Exists

__all__ = ["PathWarning", "rule_paths", "schema_has_path", "unreachable_paths", "value_has_path"]

_MAX_REF_HOPS = 32


@dataclass(frozen=True)
class PathWarning:
    rule: str
    path: str
    message: str


def rule_paths(rule: Rule) -> list[str]:
    """The event field paths a rule's pattern needs present: a condition that accepts `exists: false` holds
    without its field, so its path is left out."""
    paths = [leaf.name for branch in rule.pattern.branches for leaf in branch.leaves
             if not any(isinstance(m, Exists) and not m.present for m in leaf.matchers)]
    return list(dict.fromkeys(paths))


def schema_has_path(schema: Any, parts: list[str], root: Any = None,
                    _seen: frozenset[tuple[int, int]] = frozenset()) -> bool:
    """Whether data valid under `schema` (a JSON Schema) can hold a value at `parts`. A schema that refers back
    to itself (`anyOf: [{$ref: "#"}]`, `items: {$ref: "#"}`) is followed once per remaining path: a second
    visit of the same subschema for the same path can find nothing the first did not."""
    root = schema if root is None else root
    node = _resolve(schema, root)
    if not parts or node is True:
        return True
    if not isinstance(node, Mapping) or (id(node), len(parts)) in _seen:
        return False
    seen = _seen | {(id(node), len(parts))}
    branches = [b for key in ("allOf", "anyOf", "oneOf") for b in node.get(key) or []]
    if any(schema_has_path(branch, parts, root, seen) for branch in branches):
        return True
    head, rest = parts[0], parts[1:]
    if _is_array(node):
        items = node.get("prefixItems") or []
        if head.isdigit():
            item = items[int(head)] if int(head) < len(items) else node.get("items", True)
            return schema_has_path(item, rest, root, seen)
        return any(schema_has_path(item, parts, root, seen) for item in [*items, node.get("items", True)])
    properties = node.get("properties") or {}
    patterns = node.get("patternProperties") or {}
    if head in properties:
        return schema_has_path(properties[head], rest, root, seen)
    matching = [s for pattern, s in patterns.items() if _search(pattern, head)]
    if matching:
        return any(schema_has_path(s, rest, root, seen) for s in matching)
    extra = node.get("additionalProperties")
    if extra is True or isinstance(extra, Mapping):
        return schema_has_path(extra, rest, root, seen)
    if not properties and not patterns and extra is None:
        return not _is_scalar(node) and not branches  # an open object, or an untyped schema
    return False


def value_has_path(value: Any, parts: list[str]) -> bool:
    """Whether a JSON value holds something at `parts` (in a list: the index, or any element)."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        return head in value and value_has_path(value[head], rest)
    if isinstance(value, list):
        if head.isdigit():
            return int(head) < len(value) and value_has_path(value[int(head)], rest)
        return any(value_has_path(item, parts) for item in value)
    return False


def unreachable_paths(rules: Iterable[Rule], schemas: Mapping[str, Any],
                      recorded: Iterable[Mapping[str, Any]]) -> list[PathWarning]:
    """Warnings for rule paths absent from the schemas (event type -> schema of its data) of every type a
    rule listens to, or from every recorded event (CloudEvent dicts) of those types."""
    events = list(recorded)
    found: list[PathWarning] = []
    for rule in rules:
        types = [t for t in schemas if any(fnmatchcase(t, p) for p in rule.types)]
        seen = [e for e in events if any(fnmatchcase(str(e.get("type", "")), p) for p in rule.types)]
        for path in rule_paths(rule):
            parts = path.split(".")
            if types and parts[0] == "data" and not any(schema_has_path(schemas[t], parts[1:]) for t in types):
                found.append(PathWarning(rule.name, path, f"{path} is not in the schema of "
                                         f"{_names(types)} (schemas/<type>.json): this condition can never hold"))
            if seen and not any(value_has_path(e, parts) for e in seen):
                found.append(PathWarning(rule.name, path, f"{path} is absent from all {len(seen)} recorded "
                                         f"events of {_names(sorted({str(e.get('type')) for e in seen}))}"))
    return found


def _resolve(node: Any, root: Any) -> Any:
    for _ in range(_MAX_REF_HOPS):
        if not isinstance(node, Mapping) or not isinstance(node.get("$ref"), str):
            return node
        ref = node["$ref"]
        if not ref.startswith("#"):
            return True  # a remote schema: not read here, so anything may be there
        target: Any = root
        for part in [p.replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/") if p]:
            target = target.get(part) if isinstance(target, Mapping) else None
        node = target if target is not None else True
    return True


def _is_array(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "array" or (isinstance(kind, list) and "array" in kind) or "items" in node or "prefixItems" in node


def _is_scalar(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    return bool(kinds) and not {"object", "array"} & set(kinds)


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True  # a pattern Python cannot read: assume it may match


def _names(types: list[str]) -> str:
    return ", ".join(types[:3]) + (f" and {len(types) - 3} more" if len(types) > 3 else "")
