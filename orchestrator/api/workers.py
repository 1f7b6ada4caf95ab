"""`orch api --workers N`: N API processes on one port, as gunicorn runs its workers.

One process serves requests on one core: a webhook's signature check, parsing and publishing are
Python work, so a single `orch api` tops out at one core however many the machine has. With
`--workers N` the `orch api` process holds the port and starts N copies of itself (`orch api ...
--reuse-port`, each with its own Redis connections and event loop), each listening on its own
SO_REUSEPORT socket, so that the kernel spreads connections across them. (One shared listening socket
does not: an asyncio server accepts every waiting connection at once, so one copy took all 16 of the
bench's keep-alive connections and the other none.) The supervisor:

- restarts a copy that exits while the API is running, after a backoff that doubles (0.5 s up to
  30 s) while copies keep dying young;
- on SIGTERM or SIGINT sends SIGTERM to every copy (each finishes its requests, uvicorn's graceful
  shutdown), SIGKILLs those still running after 15 s or on a second signal, and exits 0 when all
  stopped cleanly;
- holds the port meanwhile (bound, not listening: the kernel gives it no connection), so no other
  program takes it while a copy restarts, and refuses to start on a port anything else holds. Two
  supervisors' held sockets can both bind one port while neither has a copy listening yet (both set
  SO_REUSEADDR), so on Linux a supervisor also holds an abstract Unix socket named after the port,
  which only one process can bind and the kernel frees when it dies.

Each copy keeps its own in-process metrics (request and ingest latency histograms, process_*): a
scrape of `/metrics` reads one copy. The Redis-backed metrics are whole. A copy killed outright loses
the connections waiting in its accept queue (Linux moves them only with net.ipv4.tcp_migrate_req).

The copies are subprocesses, not forks: nothing (Redis connections, threads, the event loop) is shared
by accident. Each is in its own session and dies with the supervisor (`cli.common.die_with_parent`, as
a pool's workers do).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from ..backoff import Backoff
from ..errors import OrchestratorError

__all__ = ["hold_port", "port_socket", "supervise"]

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 30.0  # a copy that lived this long resets the restart backoff
TICK_S = 0.1
STOP_GRACE_S = 15.0  # uvicorn's graceful shutdown (10 s, api/server.py) and a margin


def port_socket(host: str, port: int, *, listen: bool, exclusive_check: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, listening when `listen` (a copy's) or only
    holding the port (the supervisor's); OrchestratorError when the port is taken. With `exclusive_check`
    it first binds without SO_REUSEPORT, which fails if anything holds the port: another `orch api
    --workers` would otherwise join the same SO_REUSEPORT group and take half the connections."""
    family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    try:
        if exclusive_check:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise OrchestratorError(f"orch api cannot listen on {host}:{port}: {exc.strerror or exc}; is another "
                                "process using the port? Choose another with --port or ORCH_API_PORT") from exc
    if listen:
        sock.listen(2048)
    return sock


@dataclass
class _Copy:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    due: float = 0.0


class _Supervisor:
    def __init__(self, argv: Sequence[str], workers: int) -> None:
        self._argv = [*argv, "--reuse-port"]
        self._copies = [_Copy(i) for i in range(workers)]
        self._backoff = Backoff(initial_s=0.5, max_s=30.0, jitter=0.0)
        self._stopping: int | None = None  # the signal that stops the API
        self._force = False  # a second signal: no grace

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        while self._stopping is None:
            now = time.monotonic()
            for copy in self._copies:
                self._tend(copy, now)
            time.sleep(TICK_S)
        return self._stop()

    def _tend(self, copy: _Copy, now: float) -> None:
        if copy.process is not None and copy.process.poll() is not None:
            code, lived = copy.process.returncode, now - copy.started
            if lived >= HEALTHY_AFTER_S:
                self._backoff.reset()
            copy.process, copy.due = None, now + self._backoff.next_s()
            log.warning("orch api: worker %d exited (%s) after %.1fs; restarting it", copy.index, code, lived)
        if copy.process is None and now >= copy.due:
            env = {**os.environ, "ORCH_DEV_PARENT_PID": str(os.getpid())}  # it dies with us (cli.common)
            copy.process = subprocess.Popen([sys.executable, "-m", "orchestrator", *self._argv], env=env,
                                            start_new_session=True)
            copy.started = now

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping is not None:  # a second signal: stop the copies at once
            self._force = True
        self._stopping = signum

    def _stop(self) -> int:
        """SIGTERM to every copy (each finishes its requests; Ctrl-C included, so that a clean stop exits 0),
        SIGKILL to those still running after the grace, or at once on a second signal."""
        running = [c.process for c in self._copies if c.process is not None and c.process.poll() is None]
        log.info("orch api: %s: stopping %d worker(s)", signal.Signals(self._stopping or signal.SIGTERM).name,
                 len(running))
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.poll() is None for p in running) and time.monotonic() < deadline and not self._force:
            time.sleep(TICK_S)
        for process in running:
            if process.poll() is None:
                process.kill()
        codes = [process.wait() for process in running]
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1  # uvicorn re-raises SIGTERM


def hold_port(host: str, port: int) -> tuple[socket.socket, socket.socket | None]:
    """The supervisor's hold on (host, port): its bound socket (port 0 resolved), and on Linux the lock
    only one supervisor of that port can have, whatever its address; OrchestratorError when it is taken."""
    held = port_socket(host, port, listen=False, exclusive_check=True)
    if not sys.platform.startswith("linux"):
        return held, None
    bound_port = held.getsockname()[1]
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:  # by port, not address: copies on 0.0.0.0:P and 127.0.0.1:P would share connections too
        lock.bind(f"\0orch-api-workers:{bound_port}")
    except OSError as exc:
        lock.close()
        held.close()
        raise OrchestratorError(f"orch api cannot listen on {host}:{bound_port}: another `orch api --workers` "
                                "holds it; stop it, or choose another port with --port or ORCH_API_PORT") from exc
    return held, lock


def supervise(argv: Sequence[str], host: str, port: int, workers: int) -> int:
    """Run `workers` copies of `orch api <argv> --host H --port P --reuse-port` until stopped; the exit code.
    Port 0 is resolved once here, so every copy listens on the same port."""
    held, lock = hold_port(host, port)
    try:
        port = held.getsockname()[1]
        log.info("orch api: %d worker processes on %s:%d", workers, host, port)
        return _Supervisor([*argv, "--host", host, "--port", str(port)], workers).run()
    finally:
        held.close()
        if lock is not None:
            lock.close()
