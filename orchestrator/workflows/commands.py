"""⑤ What a shell task's values from data may be: arguments and environment values, never code or a program.

A shell task's options are argument templates (spec.py): `$lit` is written in the spec, anything else is
a slot filled when the task runs, from parameters, results or event data (slots.py). Checked when the
workflow is loaded, so a project that breaks a rule never starts:

- `shell: true` runs a string with /bin/sh: the string must be written out (data goes in `env:`).
- The program (the command, or its first element) is written out.
- A program that runs its arguments as a command (`env`, `sudo`, `xargs`, `ssh`, `timeout`, ...) gets no
  value from data at all: data there could name the program or be parsed as a command.
- A shell or interpreter (`sh`, `bash`, `python`, `node`, `perl`, `awk`, ...) runs its first operand as
  code or as a script: that operand, and the options before it, are written out. Values may follow as
  the script's own arguments (`["bash", "-c", "echo \"$1\"", "_", "{{ params.name }}"]`).
- `env:` names are written out, and data never sets one that changes how programs load or run
  (`PATH`, `LD_PRELOAD`, `BASH_ENV`, `PYTHONPATH`, `NODE_OPTIONS`, ...).
- A relative program path (`./run.sh`) runs from a `cwd` that is written out.

This is GitHub's advice against script injection, enforced: pass values in `env:` and quote them ("$NAME").
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import WorkflowError

__all__ = ["ENV_HINT", "check_shell_options"]

ENV_HINT = ("pass the values in env: (e.g. env: {NAME: \"{{ params.name }}\"}) and write \"$NAME\" in the command, "
            "as GitHub advises against script injection")

# Programs whose arguments are, or contain, another command to run.
WRAPPERS = frozenset({
    "env", "sudo", "doas", "su", "runuser", "nohup", "nice", "ionice", "chrt", "taskset", "numactl", "timeout",
    "stdbuf", "setsid", "chroot", "nsenter", "unshare", "xargs", "parallel", "exec", "eval", "command", "builtin",
    "time", "watch", "flock", "strace", "ltrace", "script", "expect", "ssh", "systemd-run", "docker", "podman",
    "kubectl", "tmux", "screen",
})
# Programs whose first operand is code (inline, or a script file).
INTERPRETERS = frozenset({
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox", "perl", "ruby", "node",
    "nodejs", "deno", "bun", "php", "lua", "luajit", "tclsh", "wish", "rscript", "r", "osascript", "pwsh",
    "powershell", "awk", "gawk", "mawk", "nawk", "sed", "make", "gdb",
})
_PYTHON = re.compile(r"^(python|pypy)[0-9.]*$")
# Environment variables that make a program load or run something else.
_RISKY_ENV = frozenset({
    "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "PYTHONPATH",
    "PYTHONSTARTUP", "PYTHONHOME", "PYTHONWARNINGS", "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB",
    "RUBYOPT", "RUBYLIB", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_CONFIG_GLOBAL", "EDITOR", "VISUAL",
    "PAGER", "BROWSER", "SSH_ASKPASS", "SUDO_ASKPASS", "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF", "JAVA_TOOL_OPTIONS",
})
_RISKY_ENV_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_")


def _literal(template: Mapping[str, Any]) -> bool:
    return "$lit" in template


def check_shell_options(where: str, options: Mapping[str, Any]) -> None:
    """WorkflowError, naming the rule, when a shell task's options let data become code or a program."""
    command, env, shell = options.get("command", {}), options.get("env"), options.get("shell", {"$lit": False})
    if not _literal(shell) or not isinstance(shell["$lit"], bool):
        raise WorkflowError(f"{where}: shell must be written out as true or false")
    if shell["$lit"] and not (_literal(command) and isinstance(command["$lit"], str)):
        raise WorkflowError(f"{where}: a command run by /bin/sh (shell: true) may not hold values that are only known "
                            f"when the task runs, or data would become shell syntax: {ENV_HINT}")
    argv = _argv(command)
    if not argv or not _literal(argv[0]):
        raise WorkflowError(f"{where}: the program to run (the command, or its first element) must be written "
                            "out, not come from parameters or results")
    if isinstance(argv[0]["$lit"], str):
        _check_argv(where, argv[0]["$lit"], argv[1:])
        _check_cwd(where, argv[0]["$lit"], options.get("cwd"))
    _check_env(where, env)


def _argv(command: Mapping[str, Any]) -> Sequence[Any]:
    """The command's elements as templates (a string written out is split as it will be when it runs)."""
    if "$list" in command:
        return list(command["$list"])
    written = command.get("$lit")
    if isinstance(written, list):
        return [{"$lit": item} for item in written]
    if isinstance(written, str):
        try:
            return [{"$lit": item} for item in shlex.split(written)] or [command]
        except ValueError:
            return [command]  # unbalanced quotes: the task fails with that when it runs
    return [command]


def _check_argv(where: str, program: str, args: Sequence[Any]) -> None:
    name = posixpath.basename(program).lower()
    if name in WRAPPERS and not all(_literal(a) for a in args):
        raise WorkflowError(f"{where}: `{name}` runs its arguments as a command, so none of them may come from "
                            f"parameters or results: {ENV_HINT}")
    if name in INTERPRETERS or _PYTHON.match(name):
        for arg in args:
            if not _literal(arg):
                raise WorkflowError(f"{where}: `{name}` runs its first operand as code (a script, or `-c`/`-e` "
                                    "text): it and the options before it must be written out; values may only "
                                    f"follow it, as the script's arguments: {ENV_HINT}")
            text = arg["$lit"]
            if not (isinstance(text, str) and text.startswith("-") and text != "-"):
                return  # the first operand, written out: what follows is data for the script


def _check_cwd(where: str, program: str, cwd: Any) -> None:
    relative = "/" in program and not program.startswith("/")
    if relative and cwd is not None and not _literal(cwd):
        raise WorkflowError(f"{where}: the program {program!r} is a relative path, so cwd must be written out "
                            "(data would choose which program runs)")


def _check_env(where: str, env: Any) -> None:
    if env is None:
        return
    if not _literal(env) and "$dict" not in env:
        raise WorkflowError(f"{where}: env must be a mapping written out (its values may come from parameters or "
                            "results, its names may not)")
    for name, value in (env.get("$dict") or {}).items():
        if not _literal(value) and (name.upper() in _RISKY_ENV or name.upper().startswith(_RISKY_ENV_PREFIXES)):
            raise WorkflowError(f"{where}: env.{name} changes which program runs or what it loads, so its value "
                                "must be written out, not come from parameters or results")
