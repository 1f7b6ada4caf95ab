"""The web UI as a person uses it, in a real Chromium: sign in, watch runs finish, read a run's graph, a
failing task's traceback and logs, cancel a run with its button, and be refused steering with a
read-only token."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from ..e2e.conftest import Stack, create_token
from ..helpers import wait_for
from .conftest import shot, sign_in


def emit(stack: Stack, type: str, data: dict[str, Any]) -> str:
    event_id = f"ui-{uuid.uuid4().hex[:10]}"
    answer = stack.http().post("/events", content=json.dumps({
        "specversion": "1.0", "id": event_id, "source": "/ui-test", "type": type, "data": data}),
        headers={"content-type": "application/cloudevents+json"})
    assert answer.status_code == 202, answer.text
    return event_id


def run_of(stack: Stack, event_id: str) -> str:
    def found() -> str | None:
        runs = stack.http().get("/runs", params={"limit": 200}).json()
        return next((r["id"] for r in runs if r["event"]["id"] == event_id), None)

    run_id: str = wait_for(found, 60, f"a run for event {event_id}")
    return run_id


def test_the_runs_list_updates_as_a_run_finishes_and_a_run_shows_its_graph(ui_stack: Stack, page: Any) -> None:
    sign_in(page, ui_stack, "admin", name="ui-admin")
    page.evaluate("window.__stillTheSamePage = true")

    event_id = emit(ui_stack, "demo.requested", {"n": 3, "fail": False})
    run_id = run_of(ui_stack, event_id)

    row = page.locator(f'tr[data-run="{run_id}"]')
    row.wait_for()
    page.wait_for_selector(f'tr[data-run="{run_id}"][data-status="succeeded"]')
    assert page.evaluate("window.__stillTheSamePage") is True, "the list updated without reloading the page"
    shot(page, "runs")

    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/runs/{run_id}")
    page.wait_for_selector(".dag svg a.n")
    nodes = {a.get_attribute("data-node"): a.get_attribute("class") for a in page.locator(".dag svg a.n").all()}
    assert set(nodes) == {"prepare", "square", "check"}
    assert all("s-succeeded" in classes for classes in nodes.values()), nodes
    assert "×3" in (page.locator('.dag a.n[data-node="square"] text').text_content() or ""), "mapped: collapsed"
    assert page.locator(".gantt tbody tr").count() >= 5  # prepare, three squares, check
    shot(page, "run")


def test_a_failing_tasks_traceback_and_logs(ui_stack: Stack, page: Any) -> None:
    sign_in(page, ui_stack, "runs:read", name="ui-reader-logs")
    run_id = run_of(ui_stack, emit(ui_stack, "demo.requested", {"n": 2, "fail": True}))

    page.goto(f"{ui_stack.api}/ui/runs/{run_id}")
    page.wait_for_selector('#run-status:text("failed")')
    page.wait_for_selector('.dag svg a.n[data-node="check"].s-failed')
    page.click('table.tasks a:text-is("check")')

    page.wait_for_url(f"**/ui/runs/{run_id}/tasks/check")
    traceback = page.locator("pre.traceback").inner_text()
    assert "Traceback" in traceback and "ValueError: the numbers do not add up" in traceback
    logs = page.locator("pre.logs").inner_text()
    assert "checking 4 values" not in logs and "checking 2 values" in logs and "about to fail on purpose" in logs
    shot(page, "failed-task")


def test_cancel_a_running_run_with_its_button(ui_stack: Stack, page: Any) -> None:
    sign_in(page, ui_stack, "runs:read", "runs:steer", name="ui-operator")
    run_id = run_of(ui_stack, emit(ui_stack, "hold.requested", {"tag": "cancel-me"}))
    page.goto(f"{ui_stack.api}/ui/runs/{run_id}")
    page.wait_for_selector('.dag svg a.n[data-node="wait_here"].s-running')
    page.click('.dag svg a.n[data-node="wait_here"]')
    page.wait_for_url(f"**/ui/runs/{run_id}/tasks/wait_here")
    page.evaluate("window.__stillTheSamePage = true")
    page.wait_for_selector('pre.logs:has-text("still holding cancel-me (3 s)")')  # the log tails as it grows
    assert page.evaluate("window.__stillTheSamePage") is True
    shot(page, "task-logs-live")
    page.click(f'.crumbs a[href="/ui/runs/{run_id}"]')

    page.click("text=Cancel run")
    page.wait_for_url(f"**/ui/runs/{run_id}/confirm/cancel")
    page.click("#confirm")

    page.wait_for_url(f"**/ui/runs/{run_id}?steered=cancel")
    page.wait_for_selector('#run-status:text("cancelled")')
    assert "cancelled by ui-operator" in page.locator("#run-live pre.error").inner_text()
    assert ui_stack.http().get(f"/runs/{run_id}").json()["status"] == "cancelled"
    shot(page, "cancelled")


def test_a_read_only_token_is_refused_steering(ui_stack: Stack, page: Any) -> None:
    run_id = run_of(ui_stack, emit(ui_stack, "hold.requested", {"tag": "read-only"}))
    sign_in(page, ui_stack, "runs:read", name="ui-read-only")

    page.goto(f"{ui_stack.api}/ui/runs/{run_id}")
    page.wait_for_selector("#run-status")
    assert page.locator("text=Cancel run").count() == 0, "no steering buttons without runs:steer"

    answer = page.goto(f"{ui_stack.api}/ui/runs/{run_id}/confirm/cancel")
    assert answer is not None and answer.status == 403
    assert "lacks scope runs:steer" in page.locator("main").inner_text()
    posted = page.evaluate("""async (url) => (await fetch(url, {method: 'POST'})).status""",
                           f"{ui_stack.api}/ui/runs/{run_id}/cancel")
    assert posted == 403
    assert ui_stack.http().get(f"/runs/{run_id}").json()["status"] == "running"
    ui_stack.http().post(f"/runs/{run_id}/cancel")


def test_pages_read_without_javascript_and_fit_a_phone(ui_stack: Stack, browser: Any) -> None:
    run_id = run_of(ui_stack, emit(ui_stack, "demo.requested", {"n": 2, "fail": False}))
    wait_for(lambda: ui_stack.http().get(f"/runs/{run_id}").json()["status"] == "succeeded", 60, "the run to finish")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, ui_stack, "runs:read", name="ui-no-js")

        page.goto(f"{ui_stack.api}/ui/runs/{run_id}")

        levels = page.locator("ol.levels a.node")
        assert levels.count() == 3 and page.locator(".dag svg").count() == 0
        assert all("s-succeeded" in (levels.nth(i).get_attribute("class") or "") for i in range(3))
        assert "2 items · 2 succeeded" in levels.nth(1).inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, "no sideways scrolling on a phone"
        shot(page, "run-phone-no-js")
    finally:
        context.close()


def test_a_system_reader_sees_the_project_and_the_fleet(ui_stack: Stack, page: Any) -> None:
    assert httpx.post(f"{ui_stack.api}/hooks/open", json={"type": "ping"}, timeout=10).status_code == 202
    run_id = run_of(ui_stack, emit(ui_stack, "hold.requested", {"tag": "fleet"}))
    token = create_token(ui_stack.env, "ui-system", "system:read")
    page.goto(f"{ui_stack.api}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/rules")  # the first page it may see: it has no runs:read
    nav = page.locator("header nav a").all_inner_texts()
    assert nav == ["Rules", "Workflows", "Schedules", "Webhooks", "Watches", "Workers"]

    page.goto(f"{ui_stack.api}/ui/schedules")
    rows = page.locator("#schedule-march-sundays table.firings tbody tr")
    assert rows.count() == 5 and "-04:00" in rows.all_inner_texts()[-1] + rows.all_inner_texts()[-2]
    assert page.locator("#schedule-march-sundays tr.dst .badge").count() >= 1, "the DST move is marked"

    page.goto(f"{ui_stack.api}/ui/workflows/demo")
    page.wait_for_selector(".dag svg a.n")
    assert page.locator(".dag svg a.n").count() == 3

    page.goto(f"{ui_stack.api}/ui/webhooks")
    assert "accepted 1" in page.locator("tbody tr").first.inner_text()

    page.goto(f"{ui_stack.api}/ui/workers")
    link = f'a[href="/ui/runs/{run_id}/tasks/wait_here"]'
    page.locator(f"table.workers {link}").wait_for()
    assert "busy" in page.locator("table.workers tbody tr", has=page.locator(link)).inner_text()
    shot(page, "workers")
    ui_stack.http().post(f"/runs/{run_id}/cancel")


def test_an_event_shows_the_rules_it_matched_their_runs_and_why_another_did_not(ui_stack: Stack, page: Any) -> None:
    event_id = emit(ui_stack, "demo.requested", {"n": 1, "fail": False})
    run_id = run_of(ui_stack, event_id)
    sign_in(page, ui_stack, "events:read", "runs:read", name="ui-events")

    page.goto(f"{ui_stack.api}/ui/events")
    row = page.locator("table.events tbody tr", has=page.locator(f'code:text-is("{event_id}")'))
    assert "ui-demo" in row.inner_text()
    row.locator("a").first.click()

    page.wait_for_selector("table.decisions")
    matched = page.locator('table.decisions tr[data-rule="ui-demo"]')
    refused = page.locator('table.decisions tr[data-rule="ui-big-only"]')
    assert matched.get_attribute("data-outcome") == "matched" and run_id in matched.inner_text()
    assert refused.get_attribute("data-outcome") == "not_matched" and "data.n" in refused.inner_text()
    assert page.locator('table.decisions tr[data-rule="ui-hold"]').count() == 0, "rules of other types stay out"
    shot(page, "event")
    matched.locator("a", has_text=run_id).click()
    page.wait_for_url(f"**/ui/runs/{run_id}")
