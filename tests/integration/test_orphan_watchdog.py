"""A process started by `orch dev` stops with it even when its graceful stop hangs (cli.common.die_with_parent):
the death of `orch dev` sends SIGTERM, and the watchdog ends the process ORPHAN_GRACE_S later if that did not.
The supervisor here plays `orch dev` (it sets ORCH_DEV_PARENT_PID and ORCH_DEV_ROOT_PID as `orch dev` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from ..helpers import wait_for

# a supervisor that starts one child with ORCH_DEV_PARENT_PID set to itself, says its pid, and waits
_SUPERVISOR = textwrap.dedent("""
    import os, subprocess, sys, time
    env = {**os.environ, "ORCH_DEV_PARENT_PID": str(os.getpid()), "ORCH_DEV_ROOT_PID": str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env)
    print(child.pid, flush=True)
    time.sleep(600)
""")

# a child whose graceful stop hangs: its SIGTERM handler only says so (stderr is the test's log)
_HANGING_CHILD = textwrap.dedent("""
    import signal, sys, time
    from orchestrator.cli.common import die_with_parent
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM: ignored", file=sys.stderr, flush=True))
    print("ready", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
""")


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_child_whose_stop_hangs_still_exits_soon_after_its_supervisor_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with open(log, "wb") as out:
        supervisor = subprocess.Popen([sys.executable, "-c", _SUPERVISOR, _HANGING_CHILD], stdout=subprocess.PIPE,
                                      stderr=out, cwd=Path(__file__).parents[2], start_new_session=True)
    assert supervisor.stdout is not None
    with supervisor.stdout:
        child = psutil.Process(int(supervisor.stdout.readline()))
    try:
        wait_for(lambda: "ready" in log.read_text(), 30, "the child to start")
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        wait_for(lambda: _gone(child), 60, "the orphaned child to exit")
    finally:
        if not _gone(child):
            child.kill()
    text = log.read_text()
    assert "SIGTERM: ignored" in text and "did not stop within 10 s" in text, text
