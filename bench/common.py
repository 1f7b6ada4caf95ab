"""What every bench phase shares: the paths, the bench project's rules and events, the key prefix, the
error a phase raises, logging to stderr and the peers' percentile.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "project"
RESULTS = ROOT / "bench" / "results"
ORCH = Path(sys.executable).parent / "orch"

RULE = "bench-noop"          # bench/project/rules/bench.yaml: one no-op task
EVENT_TYPE = "bench.noop"
TASK_NODE = "noop"
CHAIN_RULE = "bench-chain"   # a -> b, two no-op tasks
CHAIN_EVENT = "bench.chain"
FANOUT_RULE = "bench-fanout"  # items -> work.map(items) -> fan_in
FANOUT_EVENT = "bench.fanout"
ENGINES = ("fast", "rq")     # orch worker (the fast path), orch worker --engine rq (RQ's SimpleWorker)
SOURCE = "/bench"
PREFIX = "orch"              # the default key prefix, so keys read as documented in state/keys.py
POLL_S = 0.002               # the peers poll their done counter every 2 ms too


class BenchError(RuntimeError):
    """A phase could not complete; the message says why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The peers' percentile: sorted(values)[int(n * q)], clamped."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
