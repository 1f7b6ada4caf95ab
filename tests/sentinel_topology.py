"""A Sentinel-managed Redis on loopback: one primary, one replica, three sentinels, all real redis-servers.

Used by the failover e2e test and by bench/sentinel_failover.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from orchestrator.embedded_redis import find_redis_binary

from .helpers import RedisServer, free_port, wait_for

SERVICE = "mymaster"


class Sentinels:
    """Three `redis-server --sentinel` processes watching `primary` (quorum 2, down after 1 s)."""

    def __init__(self, primary: RedisServer, count: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-test-sentinel-"))
        binary, _ = find_redis_binary()
        self.ports = [free_port() for _ in range(count)]
        self.processes = []
        for port in self.ports:
            config = self.dir / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile sentinel-{port}.log\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n")
            self.processes.append(subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, start_new_session=True))
        self.url = f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.ports)}/{SERVICE}/0"

    def client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.ports[index], decode_responses=True)

    def primary_port(self) -> int:
        """The primary's port as every sentinel reports it in SENTINEL MASTERS (what redis-py asks), or 0 while
        they disagree. During a failover get-master-addr-by-name already names the promoted replica; MASTERS
        switches only when the failover ends."""
        ports = set()
        for index in range(len(self.ports)):
            client = self.client(index)
            try:
                ports |= {int(m["port"]) for m in client.execute_command("SENTINEL", "MASTERS")}
            except redis.RedisError:
                return 0
            finally:
                client.close()
        return ports.pop() if len(ports) == 1 else 0

    def ready(self, replica_port: int) -> None:
        """Wait until every sentinel knows the replica (in sync) and the two other sentinels."""
        def knows(index: int) -> bool:
            client = self.client(index)
            try:
                replicas = client.execute_command("SENTINEL", "replicas", SERVICE)
                others = client.execute_command("SENTINEL", "sentinels", SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            synced = [r for r in replicas if int(r["port"]) == replica_port and r["master-link-status"] == "ok"
                      and "s_down" not in r["flags"]]
            return bool(synced) and len(others) == len(self.ports) - 1
        for index in range(len(self.ports)):
            wait_for(lambda i=index: knows(i), 30, f"sentinel {index} to know the replica and its peers")

    def failover(self) -> None:
        """SENTINEL FAILOVER, as an operator forces one (no agreement needed)."""
        client = self.client()
        try:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        finally:
            client.close()

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def replica_in_sync(replica: RedisServer) -> bool:
    client = replica.client()
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()
