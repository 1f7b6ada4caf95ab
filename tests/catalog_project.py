"""A project with one of everything the catalogue shows: rules (one with conditions, one fed by a schedule),
Python and YAML workflows (retries, a time limit, a mapped task, a concurrency limit), a schedule, a
webhook with a secret, a file watch; and a task that blocks on a Redis list until a test releases it."""

from __future__ import annotations

from pathlib import Path

from .projects import make_project

HOOK_SECRET_ENV = "SHOP_HOOK_SECRET_NAME_NOT_FOR_THE_CATALOGUE"

RULES = f"""
rules:
  - name: hold
    type: hold.requested
    workflow: hold
    params: {{gate: "{{{{ data.gate }}}}"}}
  - name: eu-orders
    type: [order.created, order.updated]
    source: /shop/*
    match: {{data.region: eu, data.channel: [web, app]}}
    workflow: batch
    params: {{ids: ["{{{{ data.id }}}}"], limit: 3}}
  - name: nightly-report
    type: schedule.fired
    source: /schedules/nightly
    workflow: greet
    params: {{people: ["night"]}}
  - name: shop-hooks
    type: "shop.*"
    source: /hooks/shop
    workflow: greet
    params: {{people: ["hook"]}}
    enabled: false
  - name: csv-files
    type: file.added
    workflow: greet
    params: {{people: ["{{{{ data.path }}}}"]}}
schedules:
  - {{name: nightly, cron: "30 2 * * *", timezone: Europe/Berlin, catchup: latest, overlap: skip}}
hooks:
  - {{name: shop, verify: token, secret_env: {HOOK_SECRET_ENV}, header: X-Shop-Token}}
watches:
  - {{name: inbox, path: inbox, include: ["*.csv"], exclude: ["tmp/**"]}}
"""

WORKFLOWS = {"flows": """
    import os

    import redis

    from orchestrator import task, workflow

    @task
    def wait_for_gate(gate: str) -> str:
        client = redis.Redis.from_url(os.environ["CATALOG_TEST_REDIS_URL"])
        try:
            client.blpop([gate], timeout=120)
        finally:
            client.close()
        return gate

    @task(retries={"max_retries": 2}, timeout_s=30)
    def fetch(id: str) -> dict:
        return {"id": id}

    @task
    def total(items: list, limit: int) -> int:
        return len(items[:limit])

    @workflow(concurrency=2)
    def hold(gate: str):
        wait_for_gate(gate)

    @workflow(timeout_s=600)
    def batch(ids: list, limit: int = 10):
        fetched = fetch.map(ids)
        total(fetched, limit)
"""}

YAML_WORKFLOWS = """
workflows:
  - name: greet
    params: [people]
    tasks:
      - name: hello
        shell: ["echo", "{{ item }}"]
        map: "{{ params.people }}"
      - name: done
        shell: ["echo", "{{ results.hello | length }}"]
        when: "params.people | length > 0"
"""


def catalog_project(root: Path) -> Path:
    project = make_project(root, rules=RULES, workflows=WORKFLOWS)
    (project / "workflows" / "greet.yaml").write_text(YAML_WORKFLOWS)
    (project / "inbox").mkdir(exist_ok=True)
    return project
