"""Webhooks end to end: `orch api` (with engine and a worker) on a project declaring one endpoint per scheme,
driven over real HTTP with requests signed here as each provider documents it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..helpers import RedisServer, free_port, promtool, wait_for
from ..projects import copy_examples
from .conftest import Processes, Stack, orch, orch_env, start_stack, stop_stack

pytestmark = pytest.mark.e2e

GITHUB_SECRET, GITHUB_OLD = "gh-secret-2026", "gh-secret-2025"
STRIPE_SECRET = "whsec_stripe_test_secret"
SLACK_SECRET = "slack-signing-secret"
STD_KEY = b"standard-webhooks-key-0123456789"
SHOP_TOKEN = "shop-token-abc"
SECRETS = {"GITHUB_WEBHOOK_SECRET": GITHUB_SECRET, "GITHUB_WEBHOOK_SECRET_OLD": GITHUB_OLD,
           "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET, "SLACK_SIGNING_SECRET": SLACK_SECRET,
           "STD_SECRET": "whsec_" + base64.b64encode(STD_KEY).decode(), "SHOP_TOKEN": SHOP_TOKEN}

TEST_HOOKS = """\
hooks:
  - {name: slack, verify: slack, secret_env: SLACK_SIGNING_SECRET}
  - {name: billing, verify: standard, secret_env: STD_SECRET}
  - name: shop
    verify: token
    secret_env: SHOP_TOKEN
    header: X-Shop-Token
    type: "shop.{{ body.kind }}"
    subject: "{{ body.order_id }}"
    id: "{{ headers['x-request-id'] }}"
    max_body_bytes: 2048
  - {name: open, verify: none}
  - {name: retired, verify: github, secret_env: NEVER_SET, enabled: false}
"""


def project_with_hooks(root: Path) -> Path:
    """The example project with its webhook endpoints enabled (and rotation on github), plus one per scheme."""
    project = copy_examples(root)
    example = project / "rules" / "hooks.yaml"
    text = example.read_text().replace("enabled: false", "enabled: true")
    text = text.replace("secret_env: GITHUB_WEBHOOK_SECRET ", "secret_env: [GITHUB_WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET_OLD] ")
    example.write_text(text)
    (project / "rules" / "test_hooks.yaml").write_text(TEST_HOOKS)
    return project


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = project_with_hooks(tmp_path_factory.mktemp("hooks") / "project")
    running = start_stack(tmp_path_factory.mktemp("hooks-logs"), project=project, workers=1, **SECRETS)
    yield running
    stop_stack(running)


# -- signing, as the providers document it -------------------------------------------------------------


def hexmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def github(body: bytes, event: str = "pull_request", delivery: str | None = None,
           secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hexmac(secret, body)}


def stripe(body: bytes, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {"Content-Type": "application/json",
            "Stripe-Signature": f"t={t},v1={hexmac(STRIPE_SECRET, f'{t}.'.encode() + body)}"}


def slack(body: bytes, ts: int | None = None, content_type: str = "application/json") -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": "v0=" + hexmac(SLACK_SECRET, f"v0:{ts}:".encode() + body)}


def standard(body: bytes, msg_id: str | None = None, ts: int | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    digest = hmac.new(STD_KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": "v1," + base64.b64encode(digest).decode()}


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def post(stack: Stack, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return stack.http().post(f"/hooks/{name}", content=body, headers=headers)


def events(stack: Stack, source: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = stack.http().get("/events", params={"limit": 1000}).json()
    return [e for e in found if e["source"] == source]


def pull_request(number: int, title: str = "Fix the docs") -> dict[str, Any]:
    return {"action": "opened", "number": number, "repository": {"full_name": "acme/app"},
            "pull_request": {"title": title, "user": {"login": "octocat"}}}


# -- each scheme, good ---------------------------------------------------------------------------------


def test_each_scheme_turns_a_signed_request_into_an_event_in_the_stream(hooked: Stack) -> None:
    gh_body = encode(pull_request(1))
    st_body = encode({"id": "evt_good", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}})
    sl_body = encode({"type": "event_callback", "event_id": "Ev-good", "event": {"type": "app_mention", "channel": "C1"}})
    std_body = encode({"type": "invoice.paid", "data": {"id": 7}})
    shop_body = encode({"kind": "order", "order_id": "A-1"})
    sent = [
        ("github", gh_body, github(gh_body, delivery="delivery-good"), "github.pull_request.opened",
         "github-" + hashlib.sha256(gh_body).hexdigest()),
        ("stripe", st_body, stripe(st_body), "stripe.invoice.paid", "evt_good"),
        ("slack", sl_body, slack(sl_body), "slack.app_mention", "Ev-good"),
        ("billing", std_body, standard(std_body, "msg_good"), "billing.invoice.paid", "msg_good"),
        ("shop", shop_body, {"X-Shop-Token": SHOP_TOKEN, "X-Request-Id": "req-good",
                             "Content-Type": "application/json"}, "shop.order", "req-good"),
        ("open", b'{"type": "ping"}', {"Content-Type": "application/json"}, "open.ping", None),
    ]
    for name, body, headers, event_type, event_id in sent:
        response = post(hooked, name, body, headers)

        assert response.status_code == 202, (name, response.text)
        reply = response.json()
        assert reply["type"] == event_type and reply["duplicate"] is False and reply["source"] == f"/hooks/{name}"
        (event,) = [e for e in events(hooked, f"/hooks/{name}") if e["id"] == reply["id"]]
        assert event["type"] == event_type and event["data"] == json.loads(body)
        assert event.get("githubdelivery") == ("delivery-good" if name == "github" else None)
        if event_id:
            assert reply["id"] == event_id
    assert [e["subject"] for e in events(hooked, "/hooks/shop")] == ["A-1"]


def test_a_rotated_github_secret_verifies_too(hooked: Stack) -> None:
    body = encode(pull_request(2))

    assert post(hooked, "github", body, github(body, secret=GITHUB_OLD)).status_code == 202
    assert post(hooked, "github", body, github(body, secret="retired")).status_code == 401


def test_slack_url_verification_is_answered_and_publishes_nothing(hooked: Stack) -> None:
    body = encode({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    before = len(events(hooked, "/hooks/slack"))

    response = post(hooked, "slack", body, slack(body))

    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert len(events(hooked, "/hooks/slack")) == before
    unsigned = post(hooked, "slack", body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and "challenge" not in unsigned.text


# -- refused -------------------------------------------------------------------------------------------


def test_bad_missing_and_stale_signatures_get_401_and_no_event(hooked: Stack) -> None:
    body = encode({"id": "evt_bad", "type": "invoice.paid", "action": "opened", "event_id": "Ev-bad"})
    stale, future = int(time.time()) - 400, int(time.time()) + 400  # clear of the 300 s tolerance on a slow box
    before = len(events(hooked, "/hooks/stripe")) + len(events(hooked, "/hooks/slack"))
    cases = [
        ("github", github(body, secret="wrong")),
        ("github", {**github(body), "X-Hub-Signature-256": "sha256=zz"}),
        ("github", {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "x"}),
        ("stripe", {**stripe(body), "Stripe-Signature": stripe(body)["Stripe-Signature"].replace("v1=", "v1=0")}),
        ("stripe", stripe(body, t=stale)),
        ("stripe", stripe(body, t=future)),
        ("slack", slack(body, ts=stale)),
        ("slack", {**slack(body), "X-Slack-Signature": "v0=" + "0" * 64}),
        ("billing", standard(body, ts=stale)),
        ("billing", {**standard(body), "webhook-id": "msg_other"}),
        ("shop", {"X-Shop-Token": "guess", "Content-Type": "application/json"}),
        ("shop", {"Content-Type": "application/json"}),
    ]
    for name, headers in cases:
        response = post(hooked, name, body, headers)

        assert response.status_code == 401, (name, headers, response.text)
        assert "error" in response.json()
        for secret in SECRETS.values():
            assert secret not in response.text
    assert "tolerance" in post(hooked, "stripe", body, stripe(body, t=stale)).json()["error"]
    assert len(events(hooked, "/hooks/stripe")) + len(events(hooked, "/hooks/slack")) == before


def test_a_replayed_delivery_is_a_2xx_duplicate_and_no_second_event(hooked: Stack) -> None:
    gh_body = encode(pull_request(3))
    st_body = encode({"id": "evt_replayed", "type": "invoice.paid"})
    std_body = encode({"type": "invoice.paid"})
    sl_body = b'{"type":"app_rate_limited","minute_rate_limited":1}'
    gh_headers, std_headers, sl_headers = github(gh_body), standard(std_body), slack(sl_body)
    for name, body, make in [("github", gh_body, lambda: gh_headers), ("stripe", st_body, lambda: stripe(st_body)),
                             ("billing", std_body, lambda: std_headers), ("slack", sl_body, lambda: sl_headers)]:
        replies = [post(hooked, name, body, make()) for _ in range(5)]

        assert [r.status_code for r in replies] == [202] * 5, name
        assert [r.json()["duplicate"] for r in replies] == [False, True, True, True, True], name
        assert len([e for e in events(hooked, f"/hooks/{name}") if e["id"] == replies[0].json()["id"]]) == 1


def test_a_captured_github_request_replayed_with_a_fresh_delivery_id_is_a_duplicate(hooked: Stack) -> None:
    body = encode(pull_request(5))
    first = post(hooked, "github", body, github(body, delivery="delivery-original"))
    # GitHub signs only the body: a replay may change X-GitHub-Delivery and X-GitHub-Event at will.
    fresh_id = post(hooked, "github", body, github(body, delivery="delivery-forged"))
    other_type = post(hooked, "github", body, github(body, event="issues", delivery="delivery-forged-2"))

    assert first.status_code == fresh_id.status_code == 202
    assert first.json()["duplicate"] is False and fresh_id.json()["duplicate"] is True
    assert fresh_id.json()["id"] == first.json()["id"]
    assert other_type.status_code == 422 and "X-GitHub-Event" in other_type.json()["error"]
    (event,) = [e for e in events(hooked, "/hooks/github") if e["id"] == first.json()["id"]]
    assert event["githubdelivery"] == "delivery-original"


def test_bad_bodies_unknown_endpoints_and_oversize(hooked: Stack) -> None:
    token = {"X-Shop-Token": SHOP_TOKEN, "Content-Type": "application/json", "X-Request-Id": str(uuid.uuid4())}

    assert post(hooked, "shop", b'{"kind": NaN}', token).status_code == 400
    assert post(hooked, "shop", b'{"kind": "x", "n": Infinity}', token).status_code == 400
    assert post(hooked, "shop", b"[1, 2]", token).status_code == 422
    assert post(hooked, "shop", b"{" + b'"a":{' * 80 + b"}" * 81, token).status_code == 422
    assert post(hooked, "shop", b'{"no_kind": 1}', token).status_code == 422  # the type template fails
    assert post(hooked, "shop", b"kind=x", {**token, "Content-Type": "text/plain"}).status_code == 415
    assert post(hooked, "shop", b'{"kind": NaN}', {**token, "X-Shop-Token": "bad"}).status_code == 401
    big = b'{"kind": "x", "pad": "' + b"x" * 4000 + b'"}'
    assert post(hooked, "shop", big, token).status_code == 413
    chunked = hooked.http().post("/hooks/shop", content=iter([big[:1000], big[1000:]]), headers=token)
    assert chunked.status_code == 413
    missing = post(hooked, "nope", b"{}", {"Content-Type": "application/json"})
    assert missing.status_code == 404 and "/hooks/github" in missing.json()["error"]
    assert {"github", "stripe", "slack", "billing", "shop", "open"} <= set(missing.json()["hooks"])
    disabled = post(hooked, "retired", b"{}", {"Content-Type": "application/json"})
    assert disabled.status_code == 404 and "disabled" in disabled.json()["error"]
    assert hooked.http().get("/hooks/github").status_code == 405


def test_requests_are_counted_in_metrics(hooked: Stack, tmp_path: Path) -> None:
    body = encode(pull_request(4))
    post(hooked, "github", body, github(body))
    post(hooked, "github", body, github(body, secret="wrong"))
    post(hooked, "nope", b"{}", {"Content-Type": "application/json"})

    # Another API process on the same Redis, which served none of these requests, reports them all.
    port = free_port()
    other = Processes({**hooked.env, "ORCH_API_PORT": str(port)}, tmp_path)
    try:
        other.start("api-2", "api")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 30, "a second orch api to answer")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                         headers={"authorization": f"Bearer {hooked.token}"}).text
    finally:
        other.stop_all()
    assert _sample(text, 'orch_webhook_requests_total{hook="github",result="accepted"}') >= 1
    assert _sample(text, 'orch_webhook_requests_total{hook="github",result="unauthorized"}') >= 1
    assert _sample(text, 'orch_webhook_requests_total{hook="(unknown)",result="unknown_hook"}') >= 1
    assert _sample(text, 'orch_webhook_requests_total{hook="shop",result="duplicate"}') == 0  # shown from the start

    assert 'orch_webhook_requests_total{hook="github",result="accepted"}' in text
    assert 'orch_webhook_requests_total{hook="github",result="unauthorized"}' in text
    assert 'orch_events_received_total{result="accepted",trigger="webhook"}' in text
    tool = promtool()
    if tool:
        check = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


# -- through the engine --------------------------------------------------------------------------------


def test_a_github_pull_request_starts_the_example_workflow(hooked: Stack) -> None:
    body = encode(pull_request(42, title="Fix typo in the docs"))
    response = post(hooked, "github", body, github(body))
    assert response.status_code == 202

    def finished() -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = hooked.http().get("/runs", params={"workflow": "review_pull_request"}).json()
        return [r for r in runs if r["event"]["id"] == response.json()["id"] and r["status"] == "succeeded"]

    (run,) = wait_for(finished, 20, "the review_pull_request run to succeed")
    detail = hooked.http().get(f"/runs/{run['id']}").json()
    results = {t["node"]: t["result"] for t in detail["tasks"]}
    assert detail["rule"] == "review-opened-pull-requests"
    assert results["thank_author"] == "acme/app#42: thanks @octocat! labels: docs, bug"


# -- start-up and Redis ----------------------------------------------------------------------------------


def test_orch_api_refuses_to_start_when_a_secret_is_missing(hooked: Stack) -> None:
    env = {k: v for k, v in hooked.env.items() if k != "STRIPE_WEBHOOK_SECRET"}
    env["ORCH_API_PORT"] = str(free_port())

    result = orch("api", env=env, check=False, timeout=30)

    assert result.returncode != 0
    assert "'stripe'" in result.stderr and "STRIPE_WEBHOOK_SECRET is not set" in result.stderr
    declared = hooked.project / "rules" / "hooks.yaml"
    line = declared.read_text().splitlines().index("  - name: stripe") + 1
    assert f"{declared}:{line}: hooks.stripe.secret_env: " in result.stderr
    assert SHOP_TOKEN not in result.stderr + result.stdout


def test_redis_down_gets_503_with_retry_after(tmp_path: Path) -> None:
    server = RedisServer()
    port = free_port()
    procs = Processes(orch_env(server.url, project_with_hooks(tmp_path / "project"), ORCH_API_PORT=str(port),
                               **SECRETS), tmp_path)
    try:
        procs.start("api", "api")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/healthz"), 30, "orch api to answer")
        server.stop()
        body = encode({"id": "evt_down", "type": "invoice.paid"})

        response = httpx.post(f"{base}/hooks/stripe", content=body, headers=stripe(body), timeout=10)

        assert response.status_code == 503 and response.headers["retry-after"]
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 503 and health.headers["retry-after"]
        assert str(server.port) not in health.text, "public: the answer does not map the network"
        assert health.json()["redis"] == {"ok": False, "error": "ConnectionError"}
        assert str(server.port) in procs.log("api"), "the log says which Redis did not answer"
    finally:
        procs.stop_all()
        if server.process.poll() is None:
            server.stop()


def _sample(text: str, series: str) -> float:
    values = [float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(series + " ")]
    assert len(values) == 1, (series, text)
    return values[0]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
