"""Reading webhook secrets when `orch api` starts: from environment variables and files, never shown.

Every variable an endpoint names must be set and non-empty, and a `secret_file` must hold at least one
secret (one per line; blank lines and lines starting with `#` are ignored; surrounding whitespace is
stripped). All secrets of an endpoint verify, which is how a secret is rotated: add the new one, update
the sender, remove the old one. A problem is a ConfigError naming the endpoint and the variable or
file, never the value, located at the endpoint's declaration (`locations`: name -> (YAML file, line), as
`load_hooks` returns them); `resolve_all` reports every endpoint's problems at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError, ConfigIssue

from .config import HookConfig, Scheme
from .verify import standard_key

__all__ = ["HookSecrets", "resolve_all", "resolve_secrets"]

_At = tuple[Path | None, int | None]  # where an issue is reported: the declaration, else the project


@dataclass(frozen=True)
class HookSecrets:
    """The keys of one endpoint and where they came from. Its repr shows the origins, never the keys."""

    keys: tuple[bytes, ...] = field(repr=False)
    origins: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"HookSecrets({len(self.keys)} secret(s) from {', '.join(self.origins) or 'nowhere'})"

    __str__ = __repr__


def resolve_secrets(config: HookConfig, environ: Mapping[str, str], project_root: Path | None = None, *,
                    location: _At | None = None) -> HookSecrets:
    """The secrets of one endpoint; ConfigError (naming the endpoint and the variable or file) if any is missing."""
    issues: list[ConfigIssue] = []
    found = _resolve(config, environ, project_root, location or (project_root, None), issues)
    if issues:
        raise ConfigError(issues)
    return found


def resolve_all(hooks: Mapping[str, HookConfig], environ: Mapping[str, str], project_root: Path | None = None, *,
                locations: Mapping[str, _At] | None = None) -> dict[str, HookSecrets]:
    """The secrets of every enabled endpoint; one ConfigError listing every problem."""
    issues: list[ConfigIssue] = []
    where = locations or {}
    out = {name: _resolve(config, environ, project_root, where.get(name, (project_root, None)), issues)
           for name, config in hooks.items() if config.enabled}
    if issues:
        raise ConfigError(issues)
    return out


def _resolve(config: HookConfig, environ: Mapping[str, str], root: Path | None, at: _At,
             issues: list[ConfigIssue]) -> HookSecrets:
    where = f"webhook endpoint {config.name!r} (POST /hooks/{config.name}, verify: {config.verify})"
    texts: list[tuple[str, str]] = []  # (origin, secret)
    for name in config.secret_envs:
        value = environ.get(name)
        if value is None or not value.strip():
            state = "is not set" if value is None else "is empty"
            issues.append(ConfigIssue(*at, f"hooks.{config.name}.secret_env",
                                      f"{where}: environment variable {name} {state}; set it to the endpoint's "
                                      "secret before starting orch api"))
            continue
        texts.append((f"${name}", value.strip()))
    if config.secret_file is not None:
        texts += _from_file(config, config.secret_file, root, at, where, issues)
    keys: list[bytes] = []
    for origin, text in texts:
        if config.verify is Scheme.STANDARD:
            try:
                keys.append(standard_key(text))
            except ValueError as exc:
                issues.append(ConfigIssue(*at, f"hooks.{config.name}", f"{where}: the secret in {origin} "
                                          f"is not usable: {exc}"))
        else:
            keys.append(text.encode())
    return HookSecrets(tuple(keys), tuple(dict.fromkeys(origin for origin, _ in texts)))


def _from_file(config: HookConfig, path: Path, root: Path | None, at: _At, where: str,
               issues: list[ConfigIssue]) -> list[tuple[str, str]]:
    if not path.is_absolute() and root is not None:
        path = root / path
    field_name = f"hooks.{config.name}.secret_file"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        issues.append(ConfigIssue(*at, field_name, f"{where}: cannot read secret_file {path}: {reason}"))
        return []
    secrets = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not secrets:
        issues.append(ConfigIssue(*at, field_name, f"{where}: secret_file {path} holds no secret "
                                  "(one per line; blank lines and # comments are ignored)"))
    return [(str(path), secret) for secret in secrets]
