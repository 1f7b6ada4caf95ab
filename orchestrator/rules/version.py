"""The rule-set version: a short digest of what decides which runs events start. Pure.

    ruleset_version(configs, workflows)   12 hex digits over the canonical rule configs (each rule's
                                          validated config as JSON, ordered by rule name) and each
                                          workflow's spec digest (WorkflowSpec.digest, by name)

The same rules and workflows give the same version on every host and in every process (the JSON is
canonical: sorted keys, defaults written out); changing a rule, adding or removing one, or changing a
workflow's graph gives another. Every run records the version that started it (Run.ruleset), and every
engine runs the version Redis names as active (engine/reload.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .model import RuleConfig

__all__ = ["canonical_config", "ruleset_version"]

VERSION_DIGEST_BYTES = 6


def canonical_config(config: RuleConfig) -> dict[str, Any]:
    """A rule's validated config as JSON data, every field written out (what travels through Redis)."""
    return config.model_dump(mode="json", by_alias=True)


def ruleset_version(configs: Iterable[Mapping[str, Any]], workflows: Mapping[str, str]) -> str:
    """The version of rules `configs` (canonical_config of each) over `workflows` (name -> spec digest)."""
    rules = sorted(configs, key=lambda c: str(c.get("name", "")))
    body = orjson.dumps({"rules": rules, "workflows": dict(sorted(workflows.items()))},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=VERSION_DIGEST_BYTES).hexdigest()
