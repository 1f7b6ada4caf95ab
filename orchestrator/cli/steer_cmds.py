"""`orch runs cancel|retry|rerun|approve`: steer a run; the engine carries the request out."""

from __future__ import annotations

from typing import Any

import click

from ..connection import connect
from ..jsonutil import loads
from ..state.keys import Keys
from ..state.steer import Steered, SteeringError, request, wait_for
from ..state.store import RunStore
from .common import fail, handle_errors, make_settings, project_option

__all__ = ["add_steering_commands"]


def _steer(action: str, run_id: str, project: str | None, *, from_node: str | None, wait: bool, timeout_s: float,
           as_json: bool, node: str | None = None, data: Any = None) -> None:
    from .output import print_json, print_run

    settings = make_settings(project)
    client = connect(settings)
    store = RunStore(client, Keys(settings.key_prefix), retention_s=settings.run_retention_s)
    try:
        steered = request(client, Keys(settings.key_prefix), store, action, run_id, from_node=from_node, node=node,
                          data=data)
    except SteeringError as exc:
        fail(str(exc))
        return
    target = steered.new_run or steered.run
    if not as_json:
        click.echo(f"{action} of run {steered.run} requested" + (f": new run {target}" if steered.new_run else "")
                   + ("; waiting for it to finish..." if wait else "; waiting for the engine..."), err=True)
    try:
        run = wait_for(store, steered, timeout_s, finished=wait)
    except SteeringError as exc:  # another approval resolved the step first: this one was not applied
        fail(str(exc))
        return
    if run is None:
        _not_applied(steered, timeout_s)
        return
    if as_json:
        print_json({**steered.to_dict(), "status": str(run.status), "result": run.to_dict()})
    else:
        print_run(run.to_dict())


def _not_applied(steered: Steered, timeout_s: float) -> None:
    fail(f"the request was sent, but run {steered.new_run or steered.run} did not change within {timeout_s:g}s: "
         "is `orch engine` running for this project? It will be applied when the engine runs; "
         f"check with `orch runs show {steered.new_run or steered.run}`", code=3)


_wait = click.option("--wait", is_flag=True, help="Wait until the run has finished.")
_timeout = click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True,
                        help="How long to wait, in seconds.")
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def add_steering_commands(runs: click.Group) -> None:
    @runs.command("cancel")
    @click.argument("run_id")
    @_timeout
    @_json
    @project_option
    @handle_errors
    def cancel(run_id: str, timeout_s: float, as_json: bool, project: str | None) -> None:
        """Cancel a running run: its unfinished tasks are cancelled (running ones are told to stop)."""
        _steer("cancel", run_id, project, from_node=None, wait=False, timeout_s=timeout_s, as_json=as_json)

    @runs.command("retry")
    @click.argument("run_id")
    @_wait
    @_timeout
    @_json
    @project_option
    @handle_errors
    def retry(run_id: str, wait: bool, timeout_s: float, as_json: bool, project: str | None) -> None:
        """Run a failed or cancelled run's failed, cancelled and skipped tasks again (same run id)."""
        _steer("retry", run_id, project, from_node=None, wait=wait, timeout_s=timeout_s, as_json=as_json)

    @runs.command("rerun")
    @click.argument("run_id")
    @click.option("--from", "from_node", default=None, metavar="TASK",
                  help="Reuse the results of tasks that do not depend on TASK; run TASK and what follows.")
    @_wait
    @_timeout
    @_json
    @project_option
    @handle_errors
    def rerun(run_id: str, from_node: str | None, wait: bool, timeout_s: float, as_json: bool,
              project: str | None) -> None:
        """Start RUN_ID again as a new run (a new id, linked to the old one)."""
        _steer("rerun", run_id, project, from_node=from_node, wait=wait, timeout_s=timeout_s, as_json=as_json)

    @runs.command("approve")
    @click.argument("run_id")
    @click.option("--task", "node", required=True, metavar="TASK", help="The approval step to approve.")
    @click.option("--data", default=None, metavar="JSON", help="JSON the step gives as its result (default {}).")
    @_wait
    @_timeout
    @_json
    @project_option
    @handle_errors
    def approve(run_id: str, node: str, data: str | None, wait: bool, timeout_s: float, as_json: bool,
                project: str | None) -> None:
        """Approve a run's approval step that is waiting: the run goes on, with --data as the step's result."""
        try:
            value = loads(data) if data is not None else None
        except ValueError as exc:
            fail(f"--data is not JSON: {exc}")
            return
        _steer("approve", run_id, project, from_node=None, wait=wait, timeout_s=timeout_s, as_json=as_json,
               node=node, data=value)
