"""JSON for RQ job data and results (RQ's default is pickle, which runs code on load: never used here)."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONSerializer"]


class JSONSerializer:
    """RQ serializer protocol (`dumps`/`loads`) over orjson; tuples become lists."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    @staticmethod
    def loads(data: bytes) -> Any:
        return orjson.loads(data)
