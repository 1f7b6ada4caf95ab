"""The `shell` kind: run a command; its output goes to the attempt's logs and result.

Options (the task's keyword arguments):

    command   a list of strings (run as is, no shell) or a string: split like a shell would (shlex) and
              run without a shell, or given to `/bin/sh -c` when `shell` is true
    shell     run a string command with /bin/sh (default false: no globbing, pipes or `$VAR`)
    env       variables to add to the command's environment (values: strings or numbers)
    cwd       the working directory (default: the worker's)

The environment is the worker's minus every `ORCH_*` variable (the worker's own configuration, which may
hold the Redis password), plus the attempt's identity - `ORCH_RUN_ID`, `ORCH_WORKFLOW`, `ORCH_NODE`,
`ORCH_ATTEMPT`, `ORCH_IDEMPOTENCY_KEY` - and its W3C trace context as `TRACEPARENT` / `TRACESTATE` (the
OpenTelemetry convention for child processes), plus `env`. A command that needs orch's Redis (`orch emit`)
gets `ORCH_REDIS_URL` through `env`.

The result is `{"exit_code": 0, "stdout": "...", "stderr": "..."}`, each output its last
`OUTPUT_TAIL_BYTES` bytes (UTF-8, undecodable bytes replaced); every line also goes to the logs,
prefixed `stdout: ` / `stderr: `. A non-zero exit fails with ShellExitError. The command runs in a new
session (its own process group): at the time limit the whole group gets SIGTERM, then SIGKILL after
`KILL_GRACE_S`, and the attempt fails with TaskTimeout. When the command exits, what it left running
in its group is stopped the same way (SIGKILL after `LEFTOVER_GRACE_S`): a task's processes never
outlive it (`setsid` escapes this).
"""

from __future__ import annotations

import codecs
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

import psutil

from orchestrator.context import TaskCancelled, TaskTimeout

from ..attempt import Attempt, LogBuffer
from .errors import InvalidTaskOptions, ShellExitError

__all__ = ["KILL_GRACE_S", "OUTPUT_TAIL_BYTES", "ShellOptions", "command_env", "run_shell"]

OUTPUT_TAIL_BYTES = 32 * 1024
KILL_GRACE_S = 2.0
LEFTOVER_GRACE_S = 0.5  # after the command exits, how long its leftovers may hold the pipes open
READ_BYTES = 65536


@dataclass(frozen=True)
class ShellOptions:
    """A shell task's options, checked."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None

    @classmethod
    def parse(cls, args: list[Any], kwargs: Mapping[str, Any]) -> ShellOptions:
        if args:
            raise InvalidTaskOptions("a shell task takes keyword options only (command, shell, env, cwd)")
        unknown = sorted(set(kwargs) - {"command", "shell", "env", "cwd"})
        if unknown:
            raise InvalidTaskOptions(f"unknown shell option(s) {', '.join(unknown)} (options: command, shell, env, cwd)")
        use_shell = kwargs.get("shell", False)
        if not isinstance(use_shell, bool):
            raise InvalidTaskOptions("shell option 'shell' must be true or false")
        command = kwargs.get("command")
        if isinstance(command, str) and command.strip():
            argv = ["/bin/sh", "-c", command] if use_shell else shlex.split(command)
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            if use_shell:
                raise InvalidTaskOptions("shell: true takes a command string, not a list")
            argv = list(command)
        else:
            raise InvalidTaskOptions("shell option 'command' must be a non-empty string or list of strings")
        env = kwargs.get("env") or {}
        if not isinstance(env, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
                for k, v in env.items()):
            raise InvalidTaskOptions("shell option 'env' must map names to strings or numbers")
        cwd = kwargs.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise InvalidTaskOptions("shell option 'cwd' must be a string")
        return cls(argv=argv, env={k: str(v) for k, v in env.items()}, cwd=cwd)


def command_env(base: Mapping[str, str], attempt: Attempt, extra: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: `base` without ORCH_*, the attempt's identity, then `extra`."""
    ctx = attempt.ctx
    env = {k: v for k, v in base.items() if not k.startswith("ORCH_") and k not in ("TRACEPARENT", "TRACESTATE")}
    env.update(ORCH_RUN_ID=ctx.run_id, ORCH_WORKFLOW=ctx.workflow, ORCH_NODE=ctx.node,
               ORCH_ATTEMPT=str(ctx.attempt), ORCH_IDEMPOTENCY_KEY=ctx.key)
    env.update({name.upper(): value for name, value in (ctx.trace.extensions() if ctx.trace else {}).items()})
    env.update(extra)
    return env


class _Output:
    """One of the command's streams: a bounded tail for the result, whole lines for the logs."""

    def __init__(self, label: str, logs: LogBuffer) -> None:
        self.label, self.logs = label, logs
        self.tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        self.tail += chunk
        if len(self.tail) > OUTPUT_TAIL_BYTES:
            del self.tail[:-OUTPUT_TAIL_BYTES]
        lines = (self._partial + self._decoder.decode(chunk, final=not chunk)).split("\n")
        self._partial = lines.pop()
        if len(self._partial) > 4 * READ_BYTES:  # a very long line without a newline: log it in pieces
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            self.logs.add(f"{self.label}: {line.rstrip(chr(13))}")

    def close(self) -> None:
        self.feed(b"")
        if self._partial:
            self.logs.add(f"{self.label}: {self._partial}")
            self._partial = ""

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the process group; False if it has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # only a zombie group leader is left (macOS); nothing to stop
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group."""
    if not _signal_group(pgid, 0):
        return False
    # Zombies keep a group "signalable"; where PID 1 does not reap orphans they never go away.
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def _stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stop what is left of the command's process group (SIGTERM, SIGKILL after `grace_s`); reap it."""
    if _signal_group(process.pid, signal.SIGTERM):
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            process.poll()  # reap the leader as soon as it exits, so only live members keep the group
            if not _group_alive(process.pid):
                break
            time.sleep(0.02)
        else:
            _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _pump(process: subprocess.Popen[bytes], outputs: dict[int, _Output], deadline: float,
          cancelled: threading.Event) -> bool:
    """Read the command's output until both pipes close; False if the deadline (or a cancel) came first."""
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline or cancelled.is_set():
                return False
            if exited_at is None and process.poll() is not None:
                _stop_group(process, LEFTOVER_GRACE_S)  # what it left behind may hold the pipes open
                exited_at = time.monotonic()
            elif exited_at is not None and now - exited_at > LEFTOVER_GRACE_S:
                return True  # held open by a process outside the group (setsid): stop reading
            for key, _ in selector.select(min(0.1, deadline - now)):
                chunk = os.read(key.fd, READ_BYTES)
                if chunk:
                    outputs[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fd)
    return True


def run_shell(attempt: Attempt) -> dict[str, Any]:
    """Run the attempt's command to completion (or its time limit); see the module docstring."""
    options = ShellOptions.parse(attempt.args, attempt.kwargs)
    ctx = attempt.ctx
    ctx.logger.info("running %s", shlex.join(options.argv))
    deadline = time.monotonic() + attempt.timeout_s
    process = subprocess.Popen(options.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=options.cwd, start_new_session=True,
                               env=command_env(os.environ, attempt, options.env))
    pipes = cast(tuple[IO[bytes], IO[bytes]], (process.stdout, process.stderr))
    out, err = _Output("stdout", attempt.logs), _Output("stderr", attempt.logs)
    try:
        finished = _pump(process, {pipes[0].fileno(): out, pipes[1].fileno(): err}, deadline, attempt.cancelled)
        if finished:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                finished = False
    finally:
        # on the time limit (or any error): the whole group; after a normal exit: what it left running
        _stop_group(process, KILL_GRACE_S if process.poll() is None else LEFTOVER_GRACE_S)
        for pipe in pipes:
            pipe.close()
        out.close()
        err.close()
    if not finished and attempt.cancelled.is_set():
        raise TaskCancelled(f"task {ctx.node!r}: {shlex.join(options.argv)[:200]} was stopped "
                            f"({(attempt.cancel_reason or ['its run was cancelled'])[0]}); its process group was killed")
    if not finished:
        raise TaskTimeout(f"task {ctx.node!r}: {shlex.join(options.argv)[:200]} exceeded its time limit of "
                          f"{attempt.timeout_s:g}s; its process group was killed")
    code = process.returncode
    result = {"exit_code": code, "stdout": out.text(), "stderr": err.text()}
    if code != 0:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        last = err.text().strip().splitlines()[-3:] or out.text().strip().splitlines()[-3:]
        raise ShellExitError(f"{shlex.join(options.argv)[:200]} {how}" + (f": {' | '.join(last)}" if last else ""),
                             exit_code=code)
    return result
