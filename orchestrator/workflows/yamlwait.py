"""④ Wait steps in YAML workflows (yamlflows.py): `wait:` and `approve:` (workflows/waiting.py).

    - name: payment
      needs: [reserve]
      wait:
        event: payment.received                       # the exact event type
        match: {data.currency: EUR}                   # a rule's match: pattern
        correlate: "data.order_id == params.order_id" # CEL over event, data, params, results, trigger
        timeout_s: 3600
        on_timeout: fail                              # or {default: {paid: false}}
    - name: go_ahead
      needs: [payment]
      approve: {timeout_s: 86400}                     # or `approve: true`, or wait: {approval: true}

Each `results.<task>` the correlation reads is a dependency, like `needs:`. Problems are `Invalid` at
the option they are about.
"""

from __future__ import annotations

from typing import Any

from ..errors import WorkflowError, did_you_mean
from .waiting import WAIT_KEYS, WAIT_KIND, check_wait, correlation_refs
from .yamlcheck import Invalid, Parts, Scope, unknown_task

__all__ = ["approve_step", "wait_step"]

_Call = tuple[str, str, dict[str, Any], dict[str, Any]]


def wait_step(item: dict[str, Any], parts: Parts, scope: Scope) -> _Call:
    """`wait:` as a node call: kind wait, no arguments, its options in `wait`."""
    here = (*parts, "wait")
    config = item["wait"]
    if not isinstance(config, dict):
        raise Invalid(here, "wait: is a mapping: event, match, correlate, timeout_s, on_timeout (or approval: true)")
    return _checked(dict(config), here, scope)


def approve_step(item: dict[str, Any], parts: Parts, scope: Scope) -> _Call:
    """`approve:` (true, or a mapping of timeout_s and on_timeout) as an approval step."""
    here = (*parts, "approve")
    config = item["approve"]
    if config is True or config is None:
        config = {}
    if not isinstance(config, dict) or set(config) - {"timeout_s", "on_timeout"}:
        raise Invalid(here, "approve: is true, or a mapping with timeout_s and on_timeout")
    return _checked({**config, "approval": True}, here, scope)


def _checked(config: dict[str, Any], here: Parts, scope: Scope) -> _Call:
    for key in config:
        if key not in WAIT_KEYS:
            raise Invalid((*here, key), f"unknown wait option{did_you_mean(key, WAIT_KEYS)} "
                                        f"(options: {', '.join(WAIT_KEYS)})")
    try:
        check_wait("", config)
    except WorkflowError as exc:
        message = str(exc).removeprefix(": ")
        about = next((k for k in ("match", "correlate", "on_timeout", "timeout_s", "event") if message.startswith(k)
                      or f" {k}" in message.split(":")[0]), None)
        raise Invalid((*here, about) if about in config else here, message) from None
    for ref in sorted(correlation_refs(config.get("correlate"))):
        if ref not in scope.tasks:
            raise Invalid((*here, "correlate"), unknown_task(ref, scope.tasks, "results."))
        scope.refs.add(ref)
    options = {k: v for k, v in config.items() if v is not None and not (k == "approval" and v is False)}
    return WAIT_KIND, WAIT_KIND, {}, {"wait": options}
