"""A Sentinel-managed Redis on loopback: one primary, one replica, three sentinels, all real redis-servers.

Plain (TCP, default user), or secured as deploy/REDIS.md, "TLS and ACL users with Sentinel", sets it up:
every node TLS-only with one certificate, the data nodes on an aclfile, the sentinels behind `requirepass`
and logging in to the data nodes as their own ACL user. Used by the failover e2e tests and by
bench/sentinel_failover.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import redis

from orchestrator.embedded_redis import find_redis_binary

from .helpers import Certificate, RedisServer, free_port, wait_for

SERVICE = "mymaster"


@dataclass(frozen=True)
class Secured:
    """What secures a topology: one certificate for every node (its CA is what clients trust), the
    sentinels' `requirepass` (the URL's `sentinel_password`), and the ACL users the nodes log in to the data
    nodes with: the sentinels' (`sentinel auth-user`) and the replicas' (`masteruser`)."""

    certificate: Certificate
    sentinel_password: str
    sentinel_user: tuple[str, str]  # (name, password)
    replication_user: tuple[str, str]

    def data_node_args(self) -> list[str]:
        """redis-server arguments of a data node besides its TLS port and files (RedisServer's) and its
        aclfile: TLS to its primary, and `masteruser`/`masterauth` on every one, since a demoted primary
        becomes a replica too."""
        name, password = self.replication_user
        return ["--tls-replication", "yes", "--masteruser", name, "--masterauth", password]

    def acl_lines(self) -> str:
        """The aclfile lines an operator adds for the nodes' own users, with the permissions deploy/REDIS.md
        lists (the sentinels': those of Redis's Sentinel documentation)."""
        (sentinel, sentinel_pw), (replication, replication_pw) = self.sentinel_user, self.replication_user
        return (f"user {replication} on >{replication_pw} resetchannels -@all +psync +replconf +ping\n"
                f"user {sentinel} on >{sentinel_pw} &__sentinel__:hello -@all +multi +slaveof +ping +exec "
                "+subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill\n")


class Sentinels:
    """Three `redis-server --sentinel` processes watching `primary` (quorum 2, down after 1 s)."""

    def __init__(self, primary: RedisServer, count: int = 3, secured: Secured | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-test-sentinel-"))
        self.secured = secured
        binary, _ = find_redis_binary()
        self.ports = [free_port() for _ in range(count)]
        self.processes = []
        for port in self.ports:
            config = self.dir / f"sentinel-{port}.conf"
            config.write_text("\n".join([*self._listen(port), f"dir {self.dir}", f"logfile sentinel-{port}.log",
                                         f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2",
                                         f"sentinel down-after-milliseconds {SERVICE} 1000",
                                         f"sentinel failover-timeout {SERVICE} 10000", *self._auth()]) + "\n")
            self.processes.append(subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, start_new_session=True))
        self.url = self.url_for()

    def _listen(self, port: int) -> list[str]:
        if not self.secured:
            return [f"port {port}", "bind 127.0.0.1"]
        cert = self.secured.certificate
        return ["port 0", f"tls-port {port}", "bind 127.0.0.1", f"tls-cert-file {cert.cert}",
                f"tls-key-file {cert.key}", f"tls-ca-cert-file {cert.ca}", "tls-auth-clients no",
                "tls-replication yes"]  # Sentinel calls the data nodes and its peers over TLS only with this

    def _auth(self) -> list[str]:
        if not self.secured:
            return []
        user, password = self.secured.sentinel_user
        return [f"requirepass {self.secured.sentinel_password}", f"sentinel auth-user {SERVICE} {user}",
                f"sentinel auth-pass {SERVICE} {password}"]

    def url_for(self, user: str = "") -> str:
        """The `redis+sentinel://` URL of the service (`rediss+sentinel://`, with the CA and the sentinels'
        password, when secured); `user` names the data nodes' ACL user, its password left to
        ORCH_REDIS_PASSWORD_FILE."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        login = f"{quote(user, safe='')}@" if user else ""
        if not self.secured:
            return f"redis+sentinel://{login}{hosts}/{SERVICE}/0"
        query = urlencode({"ssl_ca_certs": self.secured.certificate.ca,
                           "sentinel_password": self.secured.sentinel_password})
        return f"rediss+sentinel://{login}{hosts}/{SERVICE}/0?{query}"

    def client(self, index: int = 0) -> redis.Redis:
        if not self.secured:
            return redis.Redis(port=self.ports[index], decode_responses=True)
        return redis.Redis("127.0.0.1", self.ports[index], decode_responses=True, ssl=True,
                           ssl_ca_certs=str(self.secured.certificate.ca), password=self.secured.sentinel_password)

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


def demoted(server: RedisServer) -> bool:
    """`server` is now a replica, in sync with the new primary."""
    client = server.client()
    try:
        info = client.info("replication")
        return bool(info["role"] == "slave" and info.get("master_link_status") == "up")
    except redis.RedisError:
        return False
    finally:
        client.close()
