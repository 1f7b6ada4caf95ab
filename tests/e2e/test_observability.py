"""deploy/observability against a live orch: every metric its Grafana dashboard and its alert rules use is
in a real `/metrics` scrape (after a workflow ran, so the histograms have samples), scraped with a
`metrics:read` token as Prometheus would; and `/metrics` still answers, with `orch_redis_up 0`, while
Redis is down.

The metric names are read out of the PromQL expressions with a PromQL parser (promql-parser): vector
selectors only, so functions, label names and Grafana's `$__rate_interval` never count as metrics.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.workflows.runs import derive_run_id

from ..helpers import ROOT, RedisServer, free_port, promtool, wait_for
from .conftest import Processes, Stack, create_token, orch_env, start_stack, stop_stack

pytestmark = pytest.mark.e2e

OBSERVABILITY = ROOT / "deploy" / "observability"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def dashboard_exprs(path: Path = OBSERVABILITY / "orch-dashboard.json") -> list[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))  # panels folded into a row

    dashboard = json.loads(path.read_text())
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]


def rule_exprs(path: Path = OBSERVABILITY / "alerts.yml") -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            assert name, f"a selector without a metric name in {expr!r}"
            names.add(name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape declares, with the suffixes its type gives its samples."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_metric_names_are_read_from_selectors_only() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, queue) (max by (queue, le) '
            '(rate(orch_task_wait_seconds_bucket{queue!="x"}[$__rate_interval])))) / on (queue) '
            'group_left () orch_queue_load and absent({__name__="orch_redis_up"}) > time() - 1')
    assert metric_names(expr) == {"orch_task_wait_seconds_bucket", "orch_queue_load", "orch_redis_up"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("observability"))
    yield running
    stop_stack(running)


def _run_an_order(stack: Stack) -> None:
    with Client(settings=Settings(redis_url=stack.redis.url), source="/e2e/observability") as client:
        event_id = client.emit("order.created", {"order_id": "O-1", "amount": 5, "items": ["pen"]})
    run_id = derive_run_id("process-new-orders", "/e2e/observability", event_id)

    def succeeded() -> bool:
        response = stack.http().get(f"/runs/{run_id}")
        return response.status_code == 200 and response.json()["status"] == "succeeded"

    wait_for(succeeded, 60, f"run {run_id} to succeed")


def _scrape(api: str, token: str) -> httpx.Response:
    return httpx.get(f"{api}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_every_metric_the_dashboard_and_the_alerts_use_is_in_a_live_scrape(stack: Stack) -> None:
    _run_an_order(stack)
    token = create_token(stack.env, "prometheus", "metrics:read")
    response = _scrape(stack.api, token)
    assert response.status_code == 200, response.text
    exported = exported_names(response.text)

    dashboard, rules = dashboard_exprs(), rule_exprs()
    assert len(dashboard) > 20 and len(rules) >= 8
    used = {name: expr for expr in [*dashboard, *rules] for name in metric_names(expr)}
    missing = {name: expr for name, expr in used.items() if name not in exported}
    assert not missing, f"metrics used but not exported: {missing}"
    for name in ("orch_event_to_run_seconds_bucket", "orch_task_wait_seconds_bucket", "orch_queue_load",
                 "orch_worker_busy_ratio", "orch_engine_last_seen_timestamp_seconds", "orch_redis_up"):
        assert name in used, f"{name} is neither on the dashboard nor in an alert"

    samples = {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples
               if not s.labels or set(s.labels) == {"workflow"}}
    assert samples["orch_redis_up"] == 1
    assert samples["orch_event_to_run_seconds_count"] == 1
    assert samples["orch_engine_last_seen_timestamp_seconds"] > 0
    assert samples["orch_worker_last_seen_timestamp_seconds"] > 0


def test_metrics_answers_orch_redis_up_0_while_redis_is_down(tmp_path: Path) -> None:
    server, port = RedisServer(), free_port()
    procs = Processes(orch_env(server.url, ROOT / "examples", ORCH_API_PORT=str(port)), tmp_path)
    api = f"http://127.0.0.1:{port}"
    try:
        scraper = create_token(procs.env, "prometheus", "metrics:read", "runs:read")
        stranger = create_token(procs.env, "late", "metrics:read")
        procs.start("api", "api")
        wait_for(lambda: _answers(api), 30, "orch api to answer")
        assert "orch_redis_up 1.0" in _scrape(api, scraper).text
        server.stop()

        response = _scrape(api, scraper)
        assert response.status_code == 200, response.text
        assert "orch_redis_up 0.0" in response.text
        assert "orch_workflow_runs_in_progress" not in response.text
        tool = promtool()
        if tool is not None:
            check = subprocess.run([tool, "check", "metrics"], input=response.text, capture_output=True, text=True,
                                   timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr
        # only metrics:read is served from the token seen before; a token never seen, or another route: 503
        assert _scrape(api, stranger).status_code == 503
        runs = httpx.get(f"{api}/runs", headers={"authorization": f"Bearer {scraper}"}, timeout=10)
        assert runs.status_code == 503
    finally:
        procs.stop_all()
        server.stop()


def _answers(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
