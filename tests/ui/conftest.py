"""Browser tests of the web UI: Playwright for Python driving Debian's Chromium against a real orch
deployment (Redis, `orch api`, engine, workers in their own processes).

Playwright's own browser downloads are not used: the browser is `chromium` on PATH (the Makefile installs
Debian's package) or ORCH_TEST_CHROMIUM. Without one, these tests skip and say why, loudly.
Screenshots are saved as artifacts in ORCH_UI_ARTIFACTS (default .cache/ui-artifacts).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..e2e.conftest import Stack, create_token, start_stack, stop_stack
from ..helpers import wait_for
from ..projects import make_project

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ORCH_UI_ARTIFACTS", ROOT / ".cache" / "ui-artifacts"))


def _chromium() -> str | None:
    for candidate in (os.environ.get("ORCH_TEST_CHROMIUM"), shutil.which("chromium"), str(ROOT / ".cache/tools/chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    REASON = ("BROWSER TESTS SKIPPED: no Chromium found (install Debian's `chromium` package, which `make test` "
              "tries, or set ORCH_TEST_CHROMIUM to a Chromium binary)")
    warnings.warn(REASON, stacklevel=1)
    pytest.skip(REASON, allow_module_level=True)

RULES = """
schedules:
  - {name: march-sundays, cron: "30 2 * 3 0", timezone: America/New_York}
hooks:
  - {name: open, verify: none}
rules:
  - {name: ui-demo, type: demo.requested, workflow: demo, params: {n: "{{ data.n }}", fail: "{{ data.fail }}"}}
  - {name: ui-big-only, type: demo.requested, match: {data.n: [100]}, workflow: demo, params: {n: "{{ data.n }}"}}
  - {name: ui-hold, type: hold.requested, workflow: hold, params: {tag: "{{ data.tag }}"}}
"""
WORKFLOWS = {"demo": '''
    from pathlib import Path

    from orchestrator import task, workflow
    from orchestrator.context import current


    @task
    def prepare(n: int) -> list:
        current().logger.info("preparing %d items", n)
        return list(range(n))


    @task
    def square(x: int) -> int:
        return x * x


    @task
    def check(values: list, fail: bool) -> int:
        current().logger.info("checking %d values", len(values))
        if fail:
            current().logger.warning("about to fail on purpose")
            raise ValueError("the numbers do not add up")
        return sum(values)


    @workflow
    def demo(n: int, fail: bool = False):
        squares = square.map(prepare(n))
        check(squares, fail)
''', "hold": '''
    import time

    from orchestrator import task, workflow
    from orchestrator.context import current


    @task(timeout_s=600)
    def wait_here(tag: str) -> str:
        current().logger.info("holding %s until cancelled", tag)
        for second in range(1, 601):
            time.sleep(1)
            current().logger.info("still holding %s (%d s)", tag, second)
        return tag


    @task
    def after(value: str) -> str:
        return value


    @workflow
    def hold(tag: str):
        after(wait_here(tag))
'''}


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = make_project(tmp_path_factory.mktemp("ui") / "project", rules=RULES, workflows=WORKFLOWS)
    running = start_stack(tmp_path_factory.mktemp("ui-stack"), project=project, workers=2)
    yield running
    for run in running.http().get("/runs", params={"status": "running", "limit": 1000}).json():
        running.http().post(f"/runs/{run['id']}/cancel")  # held tasks stop, so the workers can
    wait_for(lambda: not running.http().get("/runs", params={"status": "running"}).json(), 60, "the runs to stop")
    stop_stack(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it is open,
    which later tests (asyncio.run) must not find."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    context.close()


def shot(page: Any, name: str) -> Path:
    """Save a screenshot artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, stack: Stack, *scopes: str, name: str) -> str:
    token = create_token(stack.env, name, *scopes)
    page.goto(f"{stack.api}/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/runs")
    return token
