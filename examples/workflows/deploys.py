"""After a deploy: check the service's health over HTTP, then record it with a shell command.

    health (http, retried) ──> record (shell) ──> summarize_deploy

The URL comes from the event, so the http task only reaches what the egress policy allows: globally
routable addresses, plus ORCH_HTTP_ALLOW. To check the API `make run` serves on 127.0.0.1:8000, allow
loopback for the workers (`ORCH_HTTP_ALLOW=127.0.0.1 make run`), then:
    orch emit deploy.finished --project examples --data '{"service": "api", "url": "http://127.0.0.1:8000/healthz"}'
Without it the health task fails at once with DestinationRefused, saying so.
"""

from orchestrator import call_http, run_shell, task, workflow


@task
def summarize_deploy(service: str, health: dict, recorded: dict) -> str:
    return f"{service}: HTTP {health['status']}, {recorded['stdout'].strip()}"


@workflow(timeout_s=120)
def check_deploy(service: str, url: str):
    # a 5xx, 408, 429 or a connection error is retried (3 times); another non-2xx fails the task at once
    health = call_http("health", url, retries={"max_retries": 3, "backoff_s": 1}, timeout_s=10)
    recorded = run_shell("record", ["echo", "deploy of", service, "checked"], after=[health], timeout_s=10)
    summarize_deploy(service, health, recorded)
