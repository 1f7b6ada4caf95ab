"""The secured Sentinel setup of deploy/REDIS.md ("TLS and ACL users with Sentinel") really works, failover too.

One primary and one replica, TLS only, both on the aclfile of `orch redis-acl --secrets-dir` (the default
user off) plus the users an operator adds: the replica's (`masteruser`), the sentinels' (`sentinel
auth-user`) and an admin for the test's own checks. Three sentinels on TLS behind `requirepass`. `orch
engine` and `orch worker` each log in as their own role's user through `rediss+sentinel://ROLE-USER@...`,
with the password from ORCH_REDIS_PASSWORD_FILE; events come in as the api user. A run succeeds, an operator
forces `SENTINEL FAILOVER`, and a run started after it succeeds on the new primary.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator import Client
from orchestrator.connection import connect
from orchestrator.errors import RedisUnavailableError
from orchestrator.settings import Settings
from orchestrator.state.keys import Keys
from orchestrator.state.store import RunStore
from orchestrator.workflows.runs import derive_run_id

from ..helpers import RedisServer, tls_certificate, wait_for
from ..projects import make_project
from ..sentinel_topology import Secured, Sentinels, demoted, replica_in_sync
from .conftest import Processes, orch, orch_env

pytestmark = pytest.mark.e2e

RULES = """
rules:
  - {name: r, type: t.x, workflow: two, params: {n: "{{ data.n }}"}}
"""
WORKFLOWS = {"two": """
    from orchestrator import task, workflow

    @task
    def first(n: int) -> int:
        return n

    @task
    def second(n: int) -> int:
        return n + 1

    @workflow
    def two(n: int):
        second(first(n))
"""}
SOURCE = "/secured"
ADMIN = ("operator", secrets.token_urlsafe(16))  # what an operator keeps for themselves (REDIS.md)


@dataclass
class Secure:
    """The secured topology, orch's secrets (`orch redis-acl --secrets-dir`) and the running engine and worker."""

    primary: RedisServer
    replica: RedisServer
    sentinels: Sentinels
    procs: Processes
    secrets: Path
    project: Path

    def settings(self, role: str) -> Settings:
        """How `role` reaches Redis: its own user in the Sentinel URL, its password from its secret file."""
        return Settings(redis_url=self.sentinels.url_for(f"orch-{role}"), project=self.project,
                        redis_password_file=self.secrets / f"redis-password-{role}")

    def emit(self, n: int) -> str:
        with Client(settings=self.settings("api"), source=SOURCE) as client:
            return client.emit("t.x", {"n": n})

    def status(self, event: str) -> str:
        try:
            client = connect(self.settings("api"))  # the api user may read runs
        except RedisUnavailableError:
            return "unreachable"
        try:
            run = RunStore(client, Keys(), retention_s=600).get(derive_run_id("r", SOURCE, event))
        except redis.RedisError:
            return "unreachable"
        finally:
            client.close()
        return str(run.status) if run else "missing"

    def succeeds(self, event: str, what: str) -> None:
        try:
            wait_for(lambda: self.status(event) == "succeeded", 60, what, interval_s=0.2)  # a TLS login a poll
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status(event)}\nengine:\n{self.procs.log('engine')[-3000:]}"
                                 f"\nworker:\n{self.procs.log('worker')[-3000:]}") from None


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    env = orch_env(None, tmp_path)
    orch("redis-acl", "--secrets-dir", str(tmp_path / "secrets"), env=env)  # as deploy/REDIS.md says
    secured = Secured(tls_certificate(tmp_path, "127.0.0.1", "localhost"), secrets.token_urlsafe(16),
                      sentinel_user=("sentinel", secrets.token_urlsafe(16)),
                      replication_user=("replication", secrets.token_urlsafe(16)))
    aclfile = tmp_path / "users.acl"  # the operator's copy: orch's users, the nodes' own, and an admin
    aclfile.write_text((tmp_path / "secrets" / "users.acl").read_text() + secured.acl_lines()
                       + f"user {ADMIN[0]} on >{ADMIN[1]} ~* &* +@all\n")
    node = ["--aclfile", str(aclfile), *secured.data_node_args()]
    primary = RedisServer(*node, user=ADMIN[0], password=ADMIN[1], tls=secured.certificate)
    replica = RedisServer(*node, "--replicaof", "127.0.0.1", str(primary.port), user=ADMIN[0], password=ADMIN[1],
                          tls=secured.certificate)
    sentinels = Sentinels(primary, secured=secured)
    project = make_project(tmp_path / "project", rules=RULES, workflows=WORKFLOWS)
    procs = Processes(orch_env(None, project, ORCH_WORKER_HEARTBEAT_S="0.5"), tmp_path)
    found = Secure(primary, replica, sentinels, procs, tmp_path / "secrets", project)
    try:
        wait_for(lambda: replica_in_sync(replica), 30, "the replica to sync over TLS as the replication user")
        sentinels.ready(replica.port)
        for role in ("engine", "worker"):
            settings = found.settings(role)
            procs.start(role, role, ORCH_REDIS_URL=str(settings.redis_url),
                        ORCH_REDIS_PASSWORD_FILE=str(settings.redis_password_file))
        yield found
    finally:
        procs.stop_all()
        sentinels.stop()
        replica.stop()
        primary.stop()


def test_the_secured_sentinel_setup_runs_workflows_across_a_failover(secure: Secure) -> None:
    anonymous = redis.Redis(port=secure.primary.port, ssl=True, ssl_ca_certs=str(secure.primary.ca))
    with pytest.raises(redis.AuthenticationError):  # the default user is off: only orch's users get in
        anonymous.get("orch:runs")
    anonymous.close()

    secure.succeeds(secure.emit(1), "a run on the first primary to succeed")

    secure.sentinels.failover()
    wait_for(lambda: secure.sentinels.primary_port() == secure.replica.port and demoted(secure.primary), 60,
             "the failover to end: every sentinel names the new primary, the old one resynced from it over TLS")
    secure.succeeds(secure.emit(2), "a run emitted after the failover to succeed on the new primary")

    def logged_in() -> set[str]:
        client = secure.replica.client()
        try:
            return {c["user"] for c in client.client_list()}
        finally:
            client.close()
    wait_for(lambda: {"orch-engine", "orch-worker"} <= logged_in(), 30,
             "the engine and the worker on the new primary, each as its own role's user")
    for name, process in secure.procs.running.items():
        assert process.poll() is None, f"{name} exited:\n{secure.procs.log(name)}"
