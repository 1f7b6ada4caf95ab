"""Named fault points for crash tests: `ORCH_FAULTPOINT=<name>:<n>` makes the process exit hard
(`os._exit(137)`, like kill -9) the n-th time it passes `<name>`; `<name>:<n>:stall` instead freezes the
thread that passes it (a stuck loop, for the health checks' tests). Inert when the variable is unset.
"""

from __future__ import annotations

import os
import threading

__all__ = ["hit"]

_spec = os.environ.get("ORCH_FAULTPOINT", "")
_name, _, _rest = _spec.partition(":")
_count, _, _mode = _rest.partition(":")
_remaining = int(_count or 1) if _name else 0


def hit(name: str) -> None:
    """Pass the fault point `name`; exits the process (or stalls) when it is the armed one and its count runs out."""
    global _remaining
    if _remaining and name == _name:
        _remaining -= 1
        if _remaining == 0:
            if _mode == "stall":
                threading.Event().wait()  # for ever: only this thread stops
            os._exit(137)
