"""`orch api`: serve the HTTP API in a role, with token authentication (or, on loopback only, none)."""

from __future__ import annotations

import ipaddress
import logging

import click

from .. import tracing
from ..connection import connect
from ..errors import OrchestratorError
from ..settings import Settings
from ..state.keys import Keys
from .common import die_with_parent, handle_errors, make_settings, project_option, setup_logging

log = logging.getLogger(__name__)

__all__ = ["api", "check_auth_mode", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback interface (127.0.0.0/8, ::1, localhost); 0.0.0.0 is every interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_mode(settings: Settings) -> None:
    """Refuse ORCH_API_AUTH=none unless the API listens on loopback only."""
    if settings.api_auth == "none" and not is_loopback(settings.api_host):
        raise OrchestratorError(
            f"ORCH_API_AUTH=none turns authentication off, so `orch api` only allows it on loopback, not on "
            f"{settings.api_host}: listen on 127.0.0.1, or keep tokens (`orch tokens create ...`)")


@click.command()
@project_option
@click.option("--host", default=None, help="Interface to listen on. Env: ORCH_API_HOST (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on. Env: ORCH_API_PORT (default 8000).")
@click.option("--role", type=click.Choice(["all", "operator", "hooks"]), default="all", show_default=True,
              help="all: every route; operator: all but /hooks; hooks: only /hooks/{name} and /healthz "
                   "(to expose webhooks without the operator API).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="API processes sharing the port, one core each (a supervisor restarts one that exits). "
                   "Env: ORCH_API_WORKERS (default 1).")
@click.option("--reuse-port", is_flag=True, hidden=True)  # a copy started by --workers
@handle_errors
def api(project: str | None, host: str | None, port: int | None, role: str, workers: int | None,
        reuse_port: bool) -> None:
    """Serve the HTTP API: POST /events, POST /hooks/{name}, GET /runs, /healthz, /metrics.

    Every route but /healthz and /hooks/* needs `Authorization: Bearer <token>` with the route's scope
    (`orch tokens create`); webhooks are authenticated by their signatures.
    """
    import os

    from executors.queues import RQQueueInspector
    from triggers.webhooks import load_hooks, resolve_all
    from triggers.webhooks.router import create_router, describe

    from ..api.app import create_app
    from ..api.server import serve
    from ..api.workers import port_socket, supervise

    settings = make_settings(project, api_host=host, api_port=port, api_workers=workers)
    setup_logging(settings.log_level, settings.log_format)
    check_auth_mode(settings)
    die_with_parent()
    hooks_router, lines = None, []
    if role != "operator":  # only the hooks: a broken rule or workflow must not take the API down
        hooks, locations = load_hooks(settings.project_dir)
        secrets = resolve_all(hooks, os.environ, project_root=settings.project_dir, locations=locations)
        hooks_router, lines = (create_router(hooks, secrets) if hooks else None), describe(hooks)
    if not reuse_port and settings.api_workers > 1:  # checked above once, not by each copy in turn
        argv = ["api", "--role", role, *(["--project", project] if project else [])]
        raise SystemExit(supervise(argv, settings.api_host, settings.api_port, settings.api_workers))
    tracing.configure("api")
    client = connect(settings, wait=True)
    app = create_app(settings, queues=RQQueueInspector(client, Keys(settings.key_prefix)), role=role,
                     hooks=hooks_router)
    auth = "no authentication (ORCH_API_AUTH=none)" if settings.api_auth == "none" else "tokens required"
    log.info("orch api (%s) listening on http://%s:%s; %s", role, settings.api_host, settings.api_port, auth)
    for line in lines:
        log.info("  %s", line)
    serve(app, host=settings.api_host, port=settings.api_port, log_level=settings.log_level.lower(),
          header_timeout_s=settings.api_header_timeout_s, body_timeout_s=settings.api_body_timeout_s,
          sock=port_socket(settings.api_host, settings.api_port, listen=True) if reuse_port else None)
