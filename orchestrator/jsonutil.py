"""JSON at every process boundary: strict parsing (no NaN, no BOM, bounded depth) and checked values."""

from __future__ import annotations

import math
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "JSONValueError", "check_json", "dumps", "loads"]

MAX_DEPTH = 64


class JSONValueError(ValueError):
    """A value that cannot cross a process boundary as JSON; `path` says where inside it."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes. Callers that take outside values run `check_json` first (orjson writes NaN as null)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Parse JSON strictly: NaN/Infinity, a BOM, invalid UTF-8 and more than 1024 levels are errors."""
    return orjson.loads(data)


def check_json(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise JSONValueError unless `value` is plain JSON: finite numbers, string keys, at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise JSONValueError(path, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise JSONValueError(path, "integer out of the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JSONValueError(path, f"{value} is not valid JSON (only finite numbers are)")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JSONValueError(path, f"object key {key!r} is not a string")
            check_json(item, f"{path}.{key}" if path else key, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise JSONValueError(path, f"{type(value).__name__} is not JSON (use dict, list, str, int, float, bool or None)")
