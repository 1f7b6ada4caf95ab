"""`orch api --workers N` holds its port for its lifetime, and a second one on the same port is refused even
before any copy listens: two supervisors' held sockets (bound, SO_REUSEADDR, not listening) could both bind
it, and their copies would then share one SO_REUSEPORT group and split the connections."""

from __future__ import annotations

import sys

import pytest

from orchestrator.api.workers import hold_port
from orchestrator.errors import OrchestratorError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor's lock is Linux's")


def test_a_second_supervisor_is_refused_while_the_first_holds_the_port_and_welcome_after() -> None:
    held, lock = hold_port("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with pytest.raises(OrchestratorError, match=f"cannot listen on 127.0.0.1:{port}: another `orch api"):
            hold_port("127.0.0.1", port)
        with pytest.raises(OrchestratorError, match="another `orch api"):  # its copies would share connections too
            hold_port("0.0.0.0", port)  # noqa: S104
    finally:
        held.close()
        assert lock is not None
        lock.close()
    again, lock_again = hold_port("127.0.0.1", port)
    again.close()
    assert lock_again is not None
    lock_again.close()
