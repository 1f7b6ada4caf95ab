"""`orch health` (the exec probe) and `--health-port` (the listener) of the long-running commands.

Kubernetes: prefer the listener, as an httpGet probe (no Python start-up per probe):

    orch engine --health-port 8081        (ORCH_HEALTH_HOST=0.0.0.0 in a pod)
    livenessProbe:  httpGet {path: /livez,  port: 8081}
    readinessProbe: httpGet {path: /readyz, port: 8081}

Compose (a slim image has no curl) or an exec probe: `orch health --role engine --port 8081` asks the
same listener on 127.0.0.1 and exits 0 (healthy) or 1 (not), printing one line; `--live` asks /livez
instead of /readyz; `--json` prints the listener's details. For `--role api` it asks the API's own
GET /healthz (port: ORCH_API_PORT): 200 means ready; with `--live`, any HTTP answer means live (a
503 only says Redis is away, which a restart would not fix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis

from .. import health as health_state
from ..errors import OrchestratorError
from ..health_http import HealthServer, ask
from ..settings import Settings
from .common import handle_errors, make_settings, project_option
from .output import print_json

__all__ = ["health", "health_port_option", "start_health"]

F = TypeVar("F", bound=Callable[..., Any])
ROLES = ("engine", "worker", "triggers", "api")


def health_port_option(fn: F) -> F:
    """Add `--health-port N` (default ORCH_HEALTH_PORT; 0: none)."""
    return click.option("--health-port", type=click.IntRange(0, 65535), default=None,
                        help="Serve GET /livez and /readyz on this port (plain HTTP, on ORCH_HEALTH_HOST, "
                             "default 127.0.0.1). Env: ORCH_HEALTH_PORT.")(fn)


def start_health(role: str, client: redis.Redis, settings: Settings, port: int | None,
                 **conditions: Callable[[], str | None]) -> HealthServer | None:
    """Start the health listener when a port is given (flag, else ORCH_HEALTH_PORT), with the role's
    readiness conditions (each returns what is wrong, or None)."""
    for name, check in conditions.items():
        health_state.require(name, check)
    port = settings.health_port if port is None else port
    if not port:
        return None
    try:
        return HealthServer(role, client, settings, port).start()
    except OSError as exc:
        raise OrchestratorError(f"{role}: the health listener cannot listen on {settings.health_host}:{port}: "
                                f"{exc.strerror or exc} (--health-port / ORCH_HEALTH_PORT)") from None


@click.command()
@project_option
@click.option("--role", type=click.Choice(ROLES), required=True, help="The process to probe.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Its health port (default ORCH_HEALTH_PORT; for api, ORCH_API_PORT).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where it listens.")
@click.option("--live", is_flag=True, help="Liveness (/livez) instead of readiness (/readyz).")
@click.option("--json", "as_json", is_flag=True, help="Print the details as JSON.")
@handle_errors
def health(project: str | None, role: str, port: int | None, host: str, live: bool, as_json: bool) -> None:
    """Exit 0 when the process is healthy (ready; with --live, live), 1 otherwise, with a one-line reason."""
    settings = make_settings(project)
    timeout_s = settings.health_redis_timeout_s + 1.0
    if role == "api":
        status, body = ask(f"http://{host}:{port or settings.api_port}/healthz", timeout_s)
        ok = status is not None if live else status == 200  # live: it answers, whatever Redis says
        redis_state: dict[str, Any] = body["redis"] if isinstance(body.get("redis"), dict) else {}
        reason = body.get("reason") or (f"HTTP {status}, Redis " +
                                        ("ok" if redis_state.get("ok") else f"unreachable ({redis_state.get('error')})"))
        body = {"role": "api", **body, "reason": reason}
    else:
        port = port or settings.health_port
        if not port:
            raise click.UsageError("no health port: pass --port, or set ORCH_HEALTH_PORT (the process's --health-port)")
        status, body = ask(f"http://{host}:{port}/{'livez' if live else 'readyz'}", timeout_s)
        ok = status == 200
    if as_json:
        print_json({**body, "ok": ok})
    else:
        click.echo(f"{role} {'live' if live else 'ready'}: {body.get('reason', '')}" if ok else
                   f"{role} not {'live' if live else 'ready'}: {body.get('reason', '')}")
    raise SystemExit(0 if ok else 1)
