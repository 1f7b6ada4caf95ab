"""Engine takeover time: SIGKILL an `orch engine` holding pending entries, time until another has processed them.

    .venv/bin/python bench/failover.py                       3 trials at the default settings and 3 fast ones
    .venv/bin/python bench/failover.py --trials 1 --configs fast
    .venv/bin/python bench/failover.py --configs idle-only   the fallback alone: the dead engine's heartbeat is
                                                             ignored (dead after 1 h), its entries wait for
                                                             ORCH_ENGINE_CLAIM_IDLE_S (60 s): the old behaviour
    .venv/bin/python bench/failover.py --json

Each trial: a redis-server of its own (loopback, free port, no persistence), two `orch engine` processes
(the victim and the survivor) on a one-rule project; 500 events emitted while the survivor is paused
(SIGSTOP), so that the victim reads them; as soon as it holds pending entries (XPENDING, polled) it gets
SIGKILL and the survivor SIGCONT. Its pending entries are
listed (frozen: it is dead), and the clock runs until none of them is pending in the group any more: the
survivor claimed them, made their runs and acknowledged them in its commit. A trial where the victim's
commit was already on its way (sent, run by Redis after the kill; the survivor took nothing over), or
where the survivor had the events (it was waiting in its read when paused), is discarded and run again. Reported: that time, and the
victim's heartbeat age at the kill (the takeover waits for ORCH_ENGINE_DEAD_AFTER_S since the last beat,
then up to one maintenance interval). The engines' own timings are what is measured: nothing is mocked.

The ledger under kills (3 engines, 5,000 tasks, 2 SIGKILLs) is tests/e2e/test_engine_failover.py with
ORCH_LEDGER_TASKS=5000.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` importable however this is started

from bench.common import free_port  # noqa: E402
from orchestrator import Client, Settings  # noqa: E402
from orchestrator.embedded_redis import find_redis_binary  # noqa: E402

CONFIGS: dict[str, dict[str, str]] = {
    "default": {},  # beat 5 s, dead after 15 s, maintenance every 5 s, claim idle 60 s
    "fast": {"ORCH_ENGINE_BEAT_S": "1", "ORCH_ENGINE_DEAD_AFTER_S": "3", "ORCH_ENGINE_MAINTENANCE_INTERVAL_S": "1"},
    "idle-only": {"ORCH_ENGINE_DEAD_AFTER_S": "3600"},
}
RULES = 'rules:\n  - {name: one, type: bench.one, workflow: one, params: {n: "{{ data.n }}"}}\n'
FLOWS = ("from orchestrator import task, workflow\n\n\n@task\ndef noop(n: int) -> int:\n    return n\n\n\n"
         "@workflow\ndef one(n: int):\n    noop(n)\n")
BURST = 500


def wait(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise SystemExit(f"timed out waiting for {what}")


class Trial:
    def __init__(self, root: Path, extra_env: dict[str, str]) -> None:
        self.root = root
        (root / "project" / "rules").mkdir(parents=True)
        (root / "project" / "workflows").mkdir()
        (root / "project" / "rules" / "rules.yaml").write_text(RULES)
        (root / "project" / "workflows" / "flows.py").write_text(FLOWS)
        port = free_port()
        self.redis = subprocess.Popen([find_redis_binary()[0], "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(root)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.r = redis.Redis.from_url(self.url)
        wait(self._pings, 10, "redis-server")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        self.env.update({"ORCH_REDIS_URL": self.url, "ORCH_PROJECT": str(root / "project"),
                         "ORCH_LIFECYCLE_EVENTS": "false", **extra_env})
        self.engines: list[subprocess.Popen[bytes]] = []

    def _pings(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.ConnectionError:
            return False

    def engine(self, name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", "orchestrator", "engine"], env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.engines.append(process)
        return process

    def consumer_of(self, pid: int) -> str:
        """The engine consumer name of process `pid`: `engine-<host>-<pid>-<4 hex>` (events.stream)."""
        prefix = f"engine-{socket.gethostname()}-{pid}-"
        return next(m.decode() for m in self.r.zrange("orch:engines", 0, -1) if m.decode().startswith(prefix))

    def pending_of(self, consumer: str) -> list[bytes]:
        rows = self.r.xpending_range("orch:events", "engine", "-", "+", 100_000, consumername=consumer)
        return [row["message_id"] for row in rows]

    def still_pending(self, ids: set[bytes]) -> bool:
        rows = self.r.xpending_range("orch:events", "engine", "-", "+", 100_000)
        return any(row["message_id"] in ids for row in rows)

    def run(self) -> dict[str, float]:
        victim, survivor = self.engine("victim"), self.engine("survivor")
        wait(lambda: self.r.zcard("orch:engines") == 2, 30, "two engines beating", 0.05)
        name = self.consumer_of(victim.pid)
        # the survivor is paused (SIGSTOP) while the events go in, so that the victim reads them, and resumed
        # as the victim is killed: a few milliseconds, far under a beat, so it is never thought dead itself
        os.kill(survivor.pid, signal.SIGSTOP)
        try:
            with Client(settings=Settings(redis_url=self.url), source="/bench/failover") as client:
                client.emit_many([{"type": "bench.one", "data": {"n": i}} for i in range(BURST)])
            # Redis may still hand them to the survivor if it was already waiting in its read when paused
            wait(lambda: self.r.xpending("orch:events", "engine")["pending"], 30, "an engine to read them", 0.0005)
            if not self.pending_of(name):
                return {}
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            os.kill(survivor.pid, signal.SIGCONT)
        victim.wait()
        beat = self.r.zscore("orch:engines", name)
        ids = set(self.pending_of(name))
        if not ids:  # it committed between the check and the kill: nothing to take over, try again
            return {}
        wait(lambda: not self.still_pending(ids), 600, "the survivor to process the victim's entries", 0.01)
        done = time.monotonic() - killed_at
        log = (self.root / "survivor.log").read_text(errors="replace")
        if "took over" not in log and "reclaimed" not in log:
            return {}  # the victim's commit was on its way when it died (Redis ran it after): nothing to take over
        beat_age = time.time() - (beat or 0) / 1000
        assert survivor.poll() is None
        return {"takeover_s": round(done, 2), "entries": len(ids),
                "beat_age_at_kill_s": round(beat_age - (time.monotonic() - killed_at), 2)}

    def close(self) -> None:
        for process in self.engines:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)
        self.r.close()
        self.redis.terminate()
        self.redis.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--configs", default="default,fast", help=f"comma-separated: {', '.join(CONFIGS)}")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep each trial's directory (engine logs)")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for config in args.configs.split(","):
        results: list[dict[str, float]] = []
        while len(results) < args.trials:
            root = Path(tempfile.mkdtemp(prefix="orch-bench-failover-"))
            trial = Trial(root, CONFIGS[config])
            try:
                result = trial.run()
            finally:
                trial.close()
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
            if result:
                results.append(result)
                print(f"{config}: {result}", file=sys.stderr)
        times = [r["takeover_s"] for r in results]
        report[config] = {"settings": CONFIGS[config], "trials": results, "takeover_s_median": statistics.median(times),
                          "takeover_s_max": max(times)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for config, found in report.items():
            print(f"{config:10} takeover median {found['takeover_s_median']:.2f} s, max {found['takeover_s_max']:.2f} s "
                  f"over {len(found['trials'])} trials  {found['settings'] or '(defaults)'}")


if __name__ == "__main__":
    main()
