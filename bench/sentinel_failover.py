"""What a Sentinel failover loses and duplicates, measured with real processes (not part of `make bench`).

    .venv/bin/python bench/sentinel_failover.py                        2,000 events, SIGKILL the primary
    .venv/bin/python bench/sentinel_failover.py --how failover         SENTINEL FAILOVER (old primary left up)
    .venv/bin/python bench/sentinel_failover.py --min-replicas 1       primaries refuse writes without a replica
    .venv/bin/python bench/sentinel_failover.py --events 500 --json

One primary, one replica, three sentinels (quorum 2, down-after 1 s) on loopback; `orch engine` and two
`orch worker` processes on the redis+sentinel:// URL; a one-task workflow whose task appends its event's
number to a ledger file. An emitter publishes --events events one at a time through `Client` (retrying an
event whose emit raised, with the same id), and half-way through the primary is failed over. At the end:

  acknowledged  events whose emit returned
  lost          acknowledged events with no succeeded run when everything has settled
  duplicated    events whose task ran more than once (ledger lines > 1)
  missing_task  acknowledged events whose task never ran
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import Client  # noqa: E402
from orchestrator.connection import client_from_url  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.state.keys import Keys  # noqa: E402
from orchestrator.state.store import RunStore  # noqa: E402
from orchestrator.workflows.runs import derive_run_id  # noqa: E402
from tests.e2e.conftest import Processes, orch_env  # noqa: E402
from tests.helpers import RedisServer, wait_for  # noqa: E402
from tests.projects import make_project  # noqa: E402
from tests.sentinel_topology import Sentinels, replica_in_sync  # noqa: E402

SOURCE = "/bench-failover"
RULES = """
rules:
  - {name: r, type: t.x, workflow: one, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"one": """
    import os
    from orchestrator import task, workflow

    @task
    def note(n: int) -> int:
        with open(os.environ["LEDGER"], "a") as ledger:
            ledger.write(f"{n}\\n")
        return n

    @workflow
    def one(n: int):
        note(n)
"""}


def emit_all(settings: Settings, count: int, acked: list[int], half: threading.Event, give_up_s: float) -> None:
    """Emit each event until accepted; stop emitting when one is refused for `give_up_s`."""
    with Client(settings=settings, source=SOURCE) as client:
        for n in range(count):
            deadline = time.monotonic() + give_up_s
            while True:
                try:
                    client.emit("t.x", {"n": n}, id=f"ev-{n}")
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        half.set()
                        return
                    time.sleep(0.05)
            acked.append(n)
            if n == count // 2:
                half.set()


def succeeded(url: str, count: int) -> set[int]:
    client = client_from_url(url)
    try:
        store = RunStore(client, Keys(), retention_s=3600)
        done = set()
        for n in range(count):
            run = store.get(derive_run_id("r", SOURCE, f"ev-{n}"))
            if run is not None and str(run.status) == "succeeded":
                done.add(n)
        return done
    finally:
        client.close()


def measure(count: int, how: str, min_replicas: int, max_lag_s: int, give_up_s: float = 30) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-failover-"))
    extra = ("--min-replicas-to-write", str(min_replicas), "--min-replicas-max-lag", str(max_lag_s)) \
        if min_replicas else ()
    primary = RedisServer(*extra)
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port), *extra)
    sentinels = Sentinels(primary)
    ledger = tmp / "ledger"
    project = make_project(tmp / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(sentinels.url, project, LEDGER=str(ledger)), tmp)
    try:
        wait_for(lambda: replica_in_sync(replica), 30, "the replica to sync")
        sentinels.ready(replica.port)
        wait_for(lambda: int(primary.client().info("replication").get("min_slaves_good_slaves", 1)) >= 1, 30,
                 "the primary to count its replica as good")
        for name, args in (("engine", ("engine",)), ("worker1", ("worker",)), ("worker2", ("worker",))):
            procs.start(name, *args)
        settings = Settings(redis_url=sentinels.url, project=project)
        with Client(settings=settings, source=SOURCE) as warm:  # the engine and workers are up and serving
            warm.emit("t.x", {"n": -1}, id="warm")
        wait_for(lambda: ledger.exists(), 120, "the warm-up run's task")
        acked: list[int] = []
        half = threading.Event()
        emitter = threading.Thread(target=emit_all, args=(settings, count, acked, half, give_up_s), daemon=True)
        started = time.monotonic()
        emitter.start()
        half.wait()
        failed_at = time.monotonic()
        if how == "kill":
            os.kill(primary.process.pid, signal.SIGKILL)
        else:
            sentinels.failover()
        wait_for(lambda: sentinels.primary_port() == replica.port, 120, "the sentinels to switch")
        switched_s = time.monotonic() - failed_at
        emitter.join()
        settled = settle(sentinels.url, count, acked)
        ran = collections.Counter(int(line) for line in ledger.read_text().split() if line != "-1")
        return {
            "events": count, "how": how, "min_replicas_to_write": min_replicas, "max_lag_s": max_lag_s,
            "acknowledged": len(acked), "succeeded": len(settled),
            "lost": len(set(acked) - settled), "missing_task": len(set(acked) - set(ran)),
            "duplicated": sum(1 for c in ran.values() if c > 1), "extra_executions": sum(c - 1 for c in ran.values()),
            "switch_s": round(switched_s, 1), "total_s": round(time.monotonic() - started, 1),
        }
    finally:
        procs.stop_all()
        sentinels.stop()
        replica.stop()
        if primary.process.poll() is None:
            primary.stop()


def settle(url: str, count: int, acked: list[int], quiet_s: float = 30.0) -> set[int]:
    """The succeeded events once every acknowledged one has succeeded, or once nothing changed for `quiet_s`."""
    last, since = -1, time.monotonic()
    while True:
        try:
            done = succeeded(url, count)
        except redis.RedisError:
            done = set()
        if set(acked) <= done:
            return done
        if len(done) != last:
            last, since = len(done), time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return done
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--how", choices=("kill", "failover"), default="kill")
    parser.add_argument("--min-replicas", type=int, default=0, help="min-replicas-to-write on the primaries")
    parser.add_argument("--max-lag-s", type=int, default=3, help="min-replicas-max-lag, with --min-replicas")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers and processes on the way out
    result = measure(args.events, args.how, args.min_replicas, args.max_lag_s)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>22}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
