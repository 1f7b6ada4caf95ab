"""Webhook endpoints declared in a project's YAML (`hooks:`): the configuration model only.

    hooks:
      - name: github                      # POST /hooks/github
        verify: github                    # github | stripe | slack | standard | token | none
        secret_env: GITHUB_WEBHOOK_SECRET # or a list (rotation: any of them verifies); or secret_file:
        # secret_file: secrets/github.txt # one secret per line, relative to the project directory
        # header: X-Webhook-Token         # verify: token only: the header carrying the shared secret
        # tolerance_s: 300                # stripe, slack, standard: largest |now - signed timestamp|
        # max_body_bytes: 1048576         # larger bodies get 413
        # dedup_window_s: 604800          # how long a delivery id is remembered (github 7 d, others 24 h)
        # type: "shop.{{ body.kind }}"    # event type, subject, id from the request (Jinja2 sandbox)
        # subject: "{{ body.order.id }}"
        # id: "{{ headers['x-request-id'] }}"
        # source: /hooks/github           # the events' source, under /hooks/ (default /hooks/<name>)
        # enabled: true

There is no default scheme: an endpoint without a signature check says `verify: none`. The model holds
only the *names* of secrets (environment variables, a file); their values are read when `orch api`
starts (secrets.py), so `orch validate` needs none of them. Verification, mapping and the HTTP route
live beside this module. Each endpoint's event source is its own: rules on `source: /hooks/github`
rely on it meaning "verified by the github endpoint", so two endpoints may not share one (the check is
`SECTION.check`, run by the project loader).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.catalog.model import HookEntry
from orchestrator.events.sources import HOOKS, own_source_problem
from orchestrator.project import Location, Section, load_sections
from orchestrator.rules.templates import ParamsTemplate

__all__ = ["GITHUB_DEDUP_WINDOW_S", "HOOK_NAME", "MAX_HOOK_BODY_BYTES", "SECTION", "HookConfig", "Scheme",
           "load_hooks"]

HOOK_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
MAX_HOOK_BODY_BYTES = 25 * 1024 * 1024   # GitHub's own cap on payloads
GITHUB_DEDUP_WINDOW_S = 7 * 86400.0       # GitHub signs no timestamp: the body digest is the only replay guard
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"
_TEMPLATED = ("type", "subject", "id")


class Scheme(enum.StrEnum):
    """How an endpoint authenticates requests."""

    GITHUB = "github"      # X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
    STRIPE = "stripe"      # Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">
    SLACK = "slack"        # X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">
    STANDARD = "standard"  # Standard Webhooks: webhook-signature: v1,<base64 HMAC of "{id}.{ts}.{body}">
    TOKEN = "token"        # a shared secret in a header
    NONE = "none"          # no check at all: only when written explicitly

    @property
    def timestamped(self) -> bool:
        return self in (Scheme.STRIPE, Scheme.SLACK, Scheme.STANDARD)


_SCHEMES = ", ".join(s.value for s in Scheme)


class HookConfig(BaseModel):
    """One `POST /hooks/{name}` endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=HOOK_NAME, description="The endpoint is POST /hooks/<name>.")
    verify: Scheme = Field(default=None, validate_default=True,
                                  description=f"How requests are authenticated: {_SCHEMES}.")
    secret_env: str | list[str] | None = Field(
        default=None, description="Environment variable(s) holding the secret; several while rotating.")
    secret_file: Path | None = Field(
        default=None, description="File with one secret per line (relative to the project directory).")
    header: str | None = Field(default=None, pattern=_HEADER_NAME,
                               description="verify: token: the header with the secret (default X-Webhook-Token).")
    tolerance_s: float = Field(default=300.0, gt=0, le=86400,
                               description="Largest accepted |now - signed timestamp| (stripe, slack, standard).")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, le=MAX_HOOK_BODY_BYTES,
                                description="Largest accepted request body; larger ones get 413.")
    dedup_window_s: float | None = Field(
        default=None, gt=0, description="How long a delivery id is remembered (github: 7 days; others: 24 h).")
    type: str | None = Field(default=None, min_length=1, max_length=1024,
                             description="Template of the event type (default: from the provider).")
    subject: str | None = Field(default=None, min_length=1, max_length=1024,
                                description="Template of the event subject.")
    id: str | None = Field(default=None, min_length=1, max_length=1024,
                           description="Template of the event id, the dedup key (default: from the provider).")
    source: str | None = Field(default=None, min_length=1, max_length=1024,
                               description="The events' source, under /hooks/ (default /hooks/<name>).")
    enabled: bool = True
    description: str | None = None

    _templates: ParamsTemplate | None = PrivateAttr(default=None)

    @field_validator("verify", mode="before")
    @classmethod
    def _explicit_scheme(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"say how requests are verified: one of {_SCHEMES} "
                             "('none' accepts unsigned requests, so it must be written out)")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else value
        if names is None:
            return value
        if not names:
            raise ValueError("give at least one environment variable name")
        for name in names:
            if not re.match(_ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
        if len(set(names)) != len(names):
            raise ValueError("an environment variable is listed twice")
        return value

    @field_validator("secret_file", mode="before")
    @classmethod
    def _secret_path(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise ValueError("must be a file path")
        path = Path(value).expanduser()
        root = (info.context or {}).get("project_root")
        return path if path.is_absolute() or root is None else Path(root) / path

    @field_validator(*_TEMPLATED)
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            ParamsTemplate({str(info.field_name): value})  # TemplateCompileError is a ValueError
        return value

    @field_validator("source")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters")
        if value is not None and (problem := own_source_problem(value, HOOKS)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HookConfig:
        scheme = self.verify
        has_secret = self.secret_env is not None or self.secret_file is not None
        if scheme is Scheme.NONE and has_secret:
            _fail("secret_env" if self.secret_env is not None else "secret_file",
                  "verify: none checks nothing, so it takes no secret; choose a scheme that uses it")
        if scheme is not Scheme.NONE and not has_secret:
            _fail("verify", f"verify: {scheme} needs a secret: add secret_env: VAR (a list while rotating) "
                            "or secret_file: path")
        if self.header is not None and scheme is not Scheme.TOKEN:
            _fail("header", f"header only applies to verify: token, not {scheme}")
        if "tolerance_s" in self.model_fields_set and not scheme.timestamped:
            _fail("tolerance_s", f"tolerance_s only applies to schemes with a signed timestamp "
                                 f"(stripe, slack, standard), not {scheme}")
        if self.dedup_window_s is not None and scheme.timestamped and self.dedup_window_s < 2 * self.tolerance_s:
            _fail("dedup_window_s", f"must be at least twice tolerance_s ({self.tolerance_s:g}), "
                                    "or a replay inside the tolerance would pass")
        return self

    def model_post_init(self, context: Any) -> None:
        templates = {k: v for k in _TEMPLATED if (v := getattr(self, k)) is not None}
        self._templates = ParamsTemplate(templates) if templates else None

    @property
    def event_source(self) -> str:
        return self.source or f"/hooks/{self.name}"

    def catalog_entry(self) -> HookEntry:
        """What the project catalogue shows of this endpoint: never its secrets, nor where they are kept."""
        return HookEntry(name=self.name, path=f"/hooks/{self.name}", verify=self.verify.value,
                         source=self.event_source, enabled=self.enabled)

    @property
    def secret_envs(self) -> tuple[str, ...]:
        if self.secret_env is None:
            return ()
        return (self.secret_env,) if isinstance(self.secret_env, str) else tuple(self.secret_env)

    @property
    def templates(self) -> ParamsTemplate | None:
        """The compiled `type`/`subject`/`id` templates, if any."""
        return self._templates

    def dedup_window(self, default_s: float) -> float:
        """Seconds a delivery id is remembered: the configured window, else a safe default."""
        if self.dedup_window_s is not None:
            return self.dedup_window_s
        if self.verify is Scheme.GITHUB:
            return max(default_s, GITHUB_DEDUP_WINDOW_S)
        return max(default_s, 2 * self.tolerance_s)


def _fail(field: str, message: str) -> None:
    """Reject the model with `message` located at `field` (so errors point at the right YAML line)."""
    detail = InitErrorDetails(type=PydanticCustomError("value_error", "{message}", {"message": message}),
                              loc=(field,), input=None)
    raise ValidationError.from_exception_data("HookConfig", [detail])


def _unique_sources(hooks: Mapping[str, HookConfig]) -> list[tuple[str, str, str]]:
    """Endpoints whose event source another endpoint already has: (name, field, message)."""
    problems: list[tuple[str, str, str]] = []
    owner: dict[str, str] = {}
    for name in sorted(hooks):
        source = hooks[name].event_source
        if source in owner:
            problems.append((name, "source", f"source {source!r} is already the source of webhook "
                             f"{owner[source]!r}: each endpoint needs its own (rules trust a source to mean "
                             "that endpoint's verification); set source: to another /hooks/... path"))
        else:
            owner[source] = name
    return problems


SECTION = Section("hooks", HookConfig, check=_unique_sources)


def load_hooks(root: Path | str) -> tuple[dict[str, HookConfig], dict[str, Location]]:
    """Only the webhook endpoints of the project at `root`, and where each is declared; no Python is
    imported (what `orch api` serves; a broken rule or workflow module never takes the webhooks down)."""
    project = load_sections(root, [SECTION])
    return project.hooks, {name: where for (section, name), where in project.locations.items()
                           if section == SECTION.name}
