"""Named fault points for crash tests: `ORCH_FAULTPOINT=<name>:<n>` makes the process exit hard
(`os._exit(137)`, like kill -9) the n-th time it passes `<name>`. Inert when the variable is unset.
"""

from __future__ import annotations

import os

__all__ = ["hit"]

_spec = os.environ.get("ORCH_FAULTPOINT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _name else 0


def hit(name: str) -> None:
    """Pass the fault point `name`; exits the process when it is the armed one and its count runs out."""
    global _remaining
    if _remaining and name == _name:
        _remaining -= 1
        if _remaining == 0:
            os._exit(137)
