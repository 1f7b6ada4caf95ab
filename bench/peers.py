"""Phase 4: the peers (RQ, Celery, Dramatiq) measured by ../shared/peers/run.sh with the same N, for the
report's ratios.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import ROOT, BenchError, log
from bench.stack import signal_group

PEERS = Path(os.environ.get("ORCH_BENCH_PEERS", ROOT.parent / "shared" / "peers" / "run.sh"))
ALL_PEERS = "rq-simple,rq-fork,celery,dramatiq"



def run_peers(only: str, n: int, tmp: Path, limit_s: float = 3600) -> list[dict[str, Any]]:
    if not PEERS.exists():
        raise BenchError(f"peers: {PEERS} not found")
    log(f"peers: {PEERS} --only {only} --n {n} (builds its venv in /tmp the first time)")
    out_path, err_path = tmp / "peers.out", tmp / "peers.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([str(PEERS), "--only", only, "--json", "--n", str(n)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    t0 = time.monotonic()
    try:
        while True:
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                log(f"peers: measuring {only}: {elapsed:.0f} s")
                if elapsed > limit_s:
                    raise BenchError(f"peers: no result after {limit_s:.0f} s") from None
    finally:
        if proc.poll() is None:
            _stop_tree(proc)
    lines = out_path.read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"peers: exit code {proc.returncode}: {' | '.join(tail)}")
    rows: list[dict[str, Any]] = json.loads(lines[-1])
    for row in rows:
        if "error" in row:
            log(f"peers: {row['peer']}: {row['error']}")
    return rows


def _stop_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop the peers script: SIGINT lets it stop its workers and Redis; then kill what is left."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    signal_group(proc, signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
