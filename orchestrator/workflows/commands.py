"""⑤ What a shell task's values from data may be: arguments and environment values, never code or a program.

A shell task's options are argument templates (spec.py): `$lit` is written in the spec, anything else is
a slot filled when the task runs, from parameters, results or event data (slots.py). Checked when the
workflow is loaded (`check_shell_options`), so a project that breaks a rule never starts:

- `shell: true` runs a string with /bin/sh: the string is written out, data goes in `env:`, and a word
  that expands such a variable ("$NAME") is data for the rules below (never a program, code, ...).
- The program (the command, or its first element) is written out.
- A program that runs its arguments as a command (`env`, `sudo`, `xargs`, `ssh`, `timeout`, `npx`, ...)
  gets no value from data at all.
- A shell or interpreter (`sh`, `bash`, `python3.12`, `node`, `perl`, `awk`, `sed`, ...) runs code: its
  `-c`/`-e`-style code, its script, and every option before them are written out; values may follow as
  the script's own arguments (`["bash", "-c", "echo \"$1\"", "_", "{{ params.name }}"]`), never right
  after an option that takes code (`-e`, `-c`, `--eval`, ...).
- Options of other programs that run code (`find -exec`, `git -c`, `tar --to-command`, `rsync -e`, ...)
  take no value from data.
- `env:` names are written out, and data never sets one that changes what programs load or run (`PATH`,
  `LD_*`, `BASH_ENV`, `PYTHON*`, `NODE_OPTIONS`, `GIT_*`, `*_JAVA_OPTIONS`, ...).
- A relative program or script (`./run.sh`, `bash tools/x.sh`) runs from a `cwd` that is written out.

When the task runs (`argument_injection`, from the worker's catalog), a value from data that starts
with `-` is refused where the program would read it as an option: not after a written-out `--`, and not
as the value of a written-out option just before it (`["git", "clone", url]` with url `--upload-pack=...`).

This is GitHub's advice against script injection, enforced: pass values in `env:` and quote them ("$NAME").
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import WorkflowError

__all__ = ["ENV_HINT", "argument_injection", "check_shell_options"]

ENV_HINT = ("pass the values in env: (e.g. env: {NAME: \"{{ params.name }}\"}) and write \"$NAME\" in the command, "
            "as GitHub advises against script injection")

# Programs whose arguments are, or contain, another command to run.
WRAPPERS = frozenset({
    "env", "sudo", "doas", "su", "runuser", "nohup", "nice", "ionice", "chrt", "taskset", "numactl", "timeout",
    "stdbuf", "setsid", "chroot", "nsenter", "unshare", "xargs", "parallel", "exec", "eval", "command", "builtin",
    "time", "watch", "flock", "strace", "ltrace", "script", "expect", "ssh", "systemd-run", "docker", "podman",
    "kubectl", "tmux", "screen", "npx", "pnpx", "uvx", "pipx", "source", ".",
})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox"})
# Interpreters: the options after which the next element is code (or a script, module, code file).
_CODE_OPTIONS: dict[str, frozenset[str]] = {
    **{shell: frozenset({"-c", "--rcfile", "--init-file"}) for shell in _SHELLS},
    "python": frozenset({"-c", "-m"}), "pypy": frozenset({"-c", "-m"}), "ipython": frozenset({"-c", "-m"}),
    "perl": frozenset({"-e", "-E", "-M", "-m", "-x"}), "ruby": frozenset({"-e", "-r"}),
    "node": frozenset({"-e", "--eval", "-p", "--print", "-r", "--require", "--import"}),
    "deno": frozenset({"eval", "run"}), "bun": frozenset({"-e", "--eval", "-p", "--print"}),
    "php": frozenset({"-r", "-f", "-B", "-R", "-E", "-F", "-d", "-c"}), "lua": frozenset({"-e", "-l"}),
    "luajit": frozenset({"-e", "-l"}), "awk": frozenset({"-f", "-e", "--source", "-i", "--include"}),
    "sed": frozenset({"-e", "-f", "--expression", "--file"}), "gdb": frozenset({"-ex", "-x", "--command"}),
    "make": frozenset({"-f", "--file", "--eval", "-C", "--directory", "-I"}), "osascript": frozenset({"-e"}),
    "pwsh": frozenset({"-c", "-command", "-file", "-encodedcommand"}), "rscript": frozenset({"-e"}),
    "r": frozenset({"-e"}), "julia": frozenset({"-e", "-E", "--eval", "-L", "--load"}), "tclsh": frozenset(),
    "wish": frozenset(),
}
_CODE_OPTIONS.update({"nodejs": _CODE_OPTIONS["node"], "powershell": _CODE_OPTIONS["pwsh"],
                      **{awk: _CODE_OPTIONS["awk"] for awk in ("gawk", "mawk", "nawk")}})
# Interpreter options whose next element is a plain value (so it is not yet the script).
_VALUE_OPTIONS = frozenset({"-o", "+o", "-O", "+O", "-W", "-X", "-Q", "-I", "-F", "-v", "-l", "-j", "-t"})
# Other programs: options whose next element is run as code.
_RUNS_CODE: dict[str, frozenset[str]] = {
    "find": frozenset({"-exec", "-execdir", "-ok", "-okdir"}),
    "git": frozenset({"-c", "--upload-pack", "--receive-pack", "--exec", "--config", "-u", "--config-env"}),
    "tar": frozenset({"--to-command", "--checkpoint-action", "--use-compress-program", "-I", "--info-script",
                      "-F", "--new-volume-script"}),
    "rsync": frozenset({"-e", "--rsh", "--rsync-path"}), "zip": frozenset({"-TT", "--unzip-command"}),
}
_VERSION = re.compile(r"[0-9][0-9.]*$")  # python3.12, lua5.4, php8.2 -> python, lua, php
_RISKY_ENV = frozenset({
    "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "EDITOR",
    "VISUAL", "PAGER", "BROWSER", "SSH_ASKPASS", "SUDO_ASKPASS", "GCONV_PATH", "HOSTALIASES", "RESOLV_HOST_CONF",
    "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "LUA_INIT", "LUA_PATH", "LUA_CPATH", "PHPRC", "PHP_INI_SCAN_DIR",
})
_RISKY_ENV_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "GIT_", "NPM_CONFIG_", "PIP_", "LUA_INIT_")
_DATA: dict[str, Any] = {"$data": True}  # a word of a shell string that expands a variable set from data


def _literal(template: Mapping[str, Any]) -> bool:
    return "$lit" in template


def _name(program: str) -> str:
    name = posixpath.basename(program).lower()
    return _VERSION.sub("", name) or name


def check_shell_options(where: str, options: Mapping[str, Any]) -> None:
    """WorkflowError, naming the rule, when a shell task's options let data become code or a program."""
    command, env, shell = options.get("command", {}), options.get("env"), options.get("shell", {"$lit": False})
    if not _literal(shell) or not isinstance(shell["$lit"], bool):
        raise WorkflowError(f"{where}: shell must be written out as true or false")
    if shell["$lit"] and not (_literal(command) and isinstance(command["$lit"], str)):
        raise WorkflowError(f"{where}: a command run by /bin/sh (shell: true) may not hold values that are only known "
                            f"when the task runs, or data would become shell syntax: {ENV_HINT}")
    _check_env(where, env)
    data_vars = {name for name, value in ((env or {}).get("$dict") or {}).items() if not _literal(value)}
    for argv in _commands(command, shell["$lit"], data_vars):
        if not argv or not _literal(argv[0]):
            raise WorkflowError(f"{where}: the program to run (the command, or its first element) must be written "
                                "out, not come from parameters, results or a variable set from them")
        if isinstance(argv[0]["$lit"], str):
            script = _check_argv(where, argv[0]["$lit"], argv[1:])
            _check_cwd(where, argv[0]["$lit"], "/" in argv[0]["$lit"], options.get("cwd"))
            if script is not None:  # an interpreter opens its script from cwd unless the path is absolute
                _check_cwd(where, script, True, options.get("cwd"))


def _commands(command: Mapping[str, Any], shell: bool, data_vars: set[str]) -> list[Sequence[Any]]:
    """The simple commands to check, each a list of templates (a string written out is split as it will be
    when it runs; with shell: true at |, ;, && and the like, and words expanding data variables marked)."""
    if "$list" in command:
        return [list(command["$list"])]
    written = command.get("$lit")
    if isinstance(written, list):
        return [[{"$lit": item} for item in written]]
    if not isinstance(written, str):
        return [[command]]
    try:
        if not shell:
            return [[{"$lit": item} for item in shlex.split(written)] or [command]]
        lexer = shlex.shlex(written, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        return [[command]]  # unbalanced quotes: the task fails with that when it runs
    commands: list[list[Any]] = [[]]
    target = False  # the word after `>`, `<`, `>>`, ... names a file, not a command
    for word in words:
        if word and set(word) <= set("|&;()<>"):
            target = bool(set(word) & set("<>"))
            if not target:
                commands.append([])
        elif target:
            target = False
        else:
            commands[-1].append(_DATA if _expands(word, data_vars) else {"$lit": word})
    return [c for c in commands if c]


def _expands(word: str, data_vars: set[str]) -> bool:
    return any(re.search(rf"\$(\{{)?{re.escape(name)}(?![A-Za-z0-9_])", word) for name in data_vars)


def _check_argv(where: str, program: str, args: Sequence[Any]) -> str | None:
    """Check a command's arguments; the script an interpreter runs, if it names one."""
    name, shown = _name(program), posixpath.basename(program)
    if name in WRAPPERS and not all(_literal(a) for a in args):
        raise WorkflowError(f"{where}: `{shown}` runs its arguments as a command, so none of them may come from "
                            f"parameters or results: {ENV_HINT}")
    if name in _CODE_OPTIONS:
        return _check_interpreter(where, name, shown, args)
    code_options = _RUNS_CODE.get(name, frozenset())
    for before, arg in zip(args, args[1:], strict=False):
        if not _literal(arg) and _literal(before) and before["$lit"] in code_options:
            raise WorkflowError(f"{where}: `{shown} {before['$lit']}` runs its value as code, so it may not come "
                                f"from parameters or results: {ENV_HINT}")
    return None


def _check_interpreter(where: str, name: str, shown: str, args: Sequence[Any]) -> str | None:
    """Data may only follow the code or script, as its arguments, and never right after a code option."""
    code_options = _CODE_OPTIONS[name]
    program_seen, takes, script = False, "", None  # takes: "code" or "value", what the next element is
    for arg in args:
        if not _literal(arg):
            if not program_seen or takes:
                raise WorkflowError(f"{where}: `{shown}` runs code: its code or script, and the options before them, "
                                    "must be written out; values may only follow, as the script's arguments: "
                                    f"{ENV_HINT}")
            continue
        text = str(arg["$lit"])
        if takes:
            program_seen = program_seen or takes == "code"
            takes = ""
        elif text in code_options or (name in _SHELLS and re.fullmatch(r"-[a-zA-Z]*c[a-zA-Z]*", text)):
            takes = "code"
        elif text in _VALUE_OPTIONS:
            takes = "value"
        elif not text.startswith("-") or text == "-":
            if not program_seen:
                script = text
            program_seen = True
    return script


def _check_cwd(where: str, path: str, from_cwd: bool, cwd: Any) -> None:
    """A path opened from cwd (a program with a `/`, an interpreter's script) needs a written-out cwd."""
    if from_cwd and not path.startswith("/") and cwd is not None and not _literal(cwd):
        raise WorkflowError(f"{where}: {path!r} is a relative path, so cwd must be written out (data would "
                            "choose which program runs)")


def _check_env(where: str, env: Any) -> None:
    if env is None:
        return
    if not _literal(env) and "$dict" not in env:
        raise WorkflowError(f"{where}: env must be a mapping written out (its values may come from parameters or "
                            "results, its names may not)")
    for name, value in (env.get("$dict") or {}).items():
        upper = name.upper()
        if not _literal(value) and (upper in _RISKY_ENV or upper.startswith(_RISKY_ENV_PREFIXES)):
            raise WorkflowError(f"{where}: env.{name} changes which program runs or what it loads, so its value "
                                "must be written out, not come from parameters or results")


def argument_injection(template: Mapping[str, Any], argv: Sequence[Any]) -> str | None:
    """Why a bound command could read a value from data as an option, or None. `template` is the node's
    `command` template and `argv` the command bound from it (the same length when it is a `$list`)."""
    if "$list" not in template:
        return None
    ended = False  # a written-out `--` ends the options
    for index, (slot, value) in enumerate(zip(template["$list"], argv, strict=False)):
        if _literal(slot):
            ended = ended or slot["$lit"] == "--"
            continue
        before = template["$list"][index - 1] if index else None
        after_option = before is not None and _literal(before) and str(before["$lit"]).startswith("-")
        if isinstance(value, str) and value.startswith("-") and not ended and not after_option:
            return (f"argument {index} of the command, a value from data, starts with '-' and would be read as an "
                    f"option ({value[:40]!r}): put a written-out \"--\" before it in the command")
    return None
