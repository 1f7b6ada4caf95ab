"""③ A value cut down to a small JSON-safe summary, for the engine's decision records (events/decisions.py).

A record says which value an event had where a rule's condition failed, and what the rule expected: both
come from outside (event data, rule files, or bytes read back from Redis) and may be of any size. A
summary keeps what a person needs to see why a rule did not fire and bounds the rest:

    strings           at most STR_MAX_CHARS characters (a cut string ends with "…")
    lists             the first ITEMS_MAX items, then "… N more" (a list of ITEMS_MAX + 1 is kept whole:
                      summarizing a summary changes nothing)
    objects           the first ITEMS_MAX keys (each at most KEY_MAX_CHARS), then "…": "N more keys" (idem)
    nesting           containers below DEPTH_MAX levels become "<list of N>" / "<object of N keys>"
    numbers           integers outside 64 bits and non-finite floats become their text
    anything else     its repr, cut like a string (bytes, objects, the MISSING marker)

Pure: no Redis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["DEPTH_MAX", "ITEMS_MAX", "KEY_MAX_CHARS", "STR_MAX_CHARS", "cut", "summarize", "summarize_mapping"]

STR_MAX_CHARS = 80
KEY_MAX_CHARS = 40
ITEMS_MAX = 5
DEPTH_MAX = 2


def cut(text: str, limit: int = STR_MAX_CHARS) -> str:
    """`text`, at most `limit` characters: a longer one ends with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(value: Any, depth: int = 0) -> Any:
    """`value` as a bounded JSON-safe value (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return cut(value) if isinstance(value, str) else value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else cut(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        if depth >= DEPTH_MAX:
            return f"<list of {len(value)}>"
        if len(value) <= ITEMS_MAX + 1:
            return [summarize(item, depth + 1) for item in value]
        return [summarize(item, depth + 1) for item in value[:ITEMS_MAX]] + [f"… {len(value) - ITEMS_MAX} more"]
    if isinstance(value, Mapping):
        if depth >= DEPTH_MAX:
            return f"<object of {len(value)} keys>"
        return summarize_mapping(value, depth)
    return cut(repr(value))


def summarize_mapping(value: Mapping[Any, Any], depth: int = 0) -> dict[str, Any]:
    """A mapping's first ITEMS_MAX items, keys as cut strings, values summarized one level deeper."""
    whole = len(value) <= ITEMS_MAX + 1
    out: dict[str, Any] = {}
    for key, item in list(value.items())[: ITEMS_MAX + 1 if whole else ITEMS_MAX]:
        out[cut(key if isinstance(key, str) else repr(key), KEY_MAX_CHARS)] = summarize(item, depth + 1)
    if not whole:
        out["…"] = f"{len(value) - ITEMS_MAX} more keys"
    return out
