"""Webhook endpoints: the `hooks:` model, secrets read at start, and the request -> event mapping."""

from __future__ import annotations

import hashlib
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import ValidationError

from orchestrator.cli.wiring import load_project
from orchestrator.errors import ConfigError
from orchestrator.events.envelope import Event
from triggers.webhooks import load_hooks
from triggers.webhooks.config import GITHUB_DEDUP_WINDOW_S, HookConfig, Scheme
from triggers.webhooks.mapping import Challenge, Rejected, build_event, parse_payload
from triggers.webhooks.secrets import resolve_all, resolve_secrets
from triggers.webhooks.verify import Verified

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def hook(**values: Any) -> HookConfig:
    return HookConfig.model_validate({"name": "h", **values}, context={"project_root": Path("/srv/proj")})


def errors(**values: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        hook(**values)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


# -- the model -----------------------------------------------------------------------------------------


def test_there_is_no_default_scheme() -> None:
    ((loc, message),) = errors(secret_env="S")

    assert loc == ("verify",) and "none" in message and "github" in message


@pytest.mark.parametrize("values, field, fragment", [
    ({"verify": "github"}, "verify", "needs a secret"),
    ({"verify": "none", "secret_env": "S"}, "secret_env", "takes no secret"),
    ({"verify": "github", "secret_env": "S", "header": "X-Key"}, "header", "only applies to verify: token"),
    ({"verify": "github", "secret_env": "S", "tolerance_s": 60}, "tolerance_s", "signed timestamp"),
    ({"verify": "stripe", "secret_env": "S", "dedup_window_s": 100}, "dedup_window_s", "twice tolerance_s"),
    ({"verify": "github", "secret_env": "1BAD"}, "secret_env", "not an environment variable name"),
    ({"verify": "github", "secret_env": []}, "secret_env", "at least one"),
    ({"verify": "github", "secret_env": "S", "type": "{{ body.x "}, "type", "template error"),
    ({"verify": "sha1", "secret_env": "S"}, "verify", "Input should be"),
    ({"verify": "token", "secret_env": "S", "max_body_bytes": 26 * 1024 * 1024}, "max_body_bytes", "less than"),
])
def test_inconsistent_endpoints_are_refused_at_the_field(values: dict[str, Any], field: str, fragment: str) -> None:
    found = errors(**values)

    assert any(loc == (field,) and fragment in message for loc, message in found), found


def test_defaults_secret_paths_and_dedup_windows() -> None:
    github = hook(verify="github", secret_env=["A", "B"], secret_file="secrets/gh.txt")
    stripe = hook(verify="stripe", secret_env="S", tolerance_s=600)
    token = hook(verify="token", secret_env="T", dedup_window_s=30)

    assert github.event_source == "/hooks/h" and github.secret_envs == ("A", "B")
    assert github.secret_file == Path("/srv/proj/secrets/gh.txt")
    assert github.dedup_window(86400) == GITHUB_DEDUP_WINDOW_S
    assert stripe.dedup_window(86400) == 86400 and stripe.dedup_window(100) == 1200
    assert token.dedup_window(86400) == 30


def test_a_hooks_section_with_mistakes_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hooks.yaml").write_text(textwrap.dedent("""\
        hooks:
          - name: gh
            verify: github
            secret_env: GH_SECRET
          - name: shop
            verify: token
            secret_env: SHOP_TOKEN
            tolerance_s: 30
          - name: nothing
            secret_env: X
        """))

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    found = {(i.line, i.field) for i in caught.value.issues}
    assert (8, "hooks[1].tolerance_s") in found
    assert any(field == "hooks[2].verify" for _, field in found)


@pytest.mark.parametrize("loader", [load_project, load_hooks], ids=["project", "api"])
def test_an_unsigned_endpoint_cannot_claim_the_source_of_a_signed_one(tmp_path: Path, loader: Any) -> None:
    """Rules on `source: /hooks/github` trust it to mean "verified by the github endpoint"."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hooks.yaml").write_text(textwrap.dedent("""\
        hooks:
          - name: github
            verify: github
            secret_env: GH_SECRET
          - name: open
            verify: none
            source: /hooks/github
        """))

    with pytest.raises(ConfigError) as caught:
        loader(tmp_path)

    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.field) == (tmp_path / "rules" / "hooks.yaml", 5, "hooks.open.source")
    assert "already the source of webhook 'github'" in issue.message


def test_a_default_source_counts_too(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hooks.yaml").write_text(
        "hooks:\n  - {name: open, verify: none, source: /hooks/stripe}\n"
        "  - {name: stripe, verify: stripe, secret_env: S}\n")

    with pytest.raises(ConfigError, match="'/hooks/stripe' is already the source of webhook 'open'"):
        load_project(tmp_path)


def test_validating_a_project_does_not_need_the_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GH_SECRET", raising=False)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hooks.yaml").write_text("hooks:\n  - {name: gh, verify: github, secret_env: GH_SECRET}\n")

    project = load_project(tmp_path)

    assert list(project.hooks) == ["gh"] and project.hooks["gh"].verify is Scheme.GITHUB


# -- secrets -------------------------------------------------------------------------------------------


def test_secrets_come_from_every_variable_and_the_file_and_are_never_shown(tmp_path: Path) -> None:
    (tmp_path / "gh.txt").write_text("# rotated 2026-01\nfile-one\n\n  file-two  \n")
    config = HookConfig.model_validate({"name": "gh", "verify": "github", "secret_env": ["NEW", "OLD"],
                                        "secret_file": "gh.txt"}, context={"project_root": tmp_path})

    found = resolve_secrets(config, {"NEW": "env-new\n", "OLD": "env-old"})

    assert found.keys == (b"env-new", b"env-old", b"file-one", b"file-two")
    assert "env-new" not in repr(found) and "file-one" not in str(found)
    assert "$NEW" in repr(found) and "gh.txt" in repr(found)


@pytest.mark.parametrize("environ, fragment", [
    ({}, "environment variable GH_SECRET is not set"),
    ({"GH_SECRET": "  "}, "environment variable GH_SECRET is empty"),
])
def test_an_empty_secret_is_a_config_error_naming_the_endpoint_and_variable(environ: dict[str, str],
                                                                            fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(hook(verify="github", secret_env="GH_SECRET"), environ)

    (issue,) = caught.value.issues
    assert fragment in issue.message and "'h'" in issue.message and "/hooks/h" in issue.message
    assert issue.field == "hooks.h.secret_env"


def test_a_missing_or_empty_secret_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    missing = HookConfig.model_validate({"name": "a", "verify": "slack", "secret_file": "nope.txt"},
                                        context={"project_root": tmp_path})
    empty = HookConfig.model_validate({"name": "b", "verify": "slack", "secret_file": "empty.txt"},
                                      context={"project_root": tmp_path})

    with pytest.raises(ConfigError) as caught:
        resolve_all({"a": missing, "b": empty}, {})

    messages = [i.message for i in caught.value.issues]
    assert "cannot read secret_file" in messages[0] and "nope.txt" in messages[0]
    assert "holds no secret" in messages[1] and "'b'" in messages[1]


def test_standard_secrets_must_be_base64_and_disabled_endpoints_need_none() -> None:
    bad = hook(verify="standard", secret_env="STD")
    off = HookConfig.model_validate({"name": "off", "verify": "github", "secret_env": "UNSET", "enabled": False})

    with pytest.raises(ConfigError, match="not usable") as caught:
        resolve_all({"h": bad, "off": off}, {"STD": "whsec_***not-base64***"})
    assert "not-base64" not in str(caught.value)
    assert resolve_all({"h": bad, "off": off}, {"STD": "whsec_AAAA"})["h"].keys == (b"\x00\x00\x00",)


# -- mapping -------------------------------------------------------------------------------------------


def event_of(config: HookConfig, data: dict[str, Any], headers: dict[str, str] | None = None,
             verified: Verified | None = None, body: bytes = b"{}") -> Event:
    out = build_event(config, headers or {}, data, body, verified or Verified(), NOW)
    assert isinstance(out, Event)
    return out


def test_github_events_are_typed_by_header_and_action_and_keyed_by_a_digest_of_the_body() -> None:
    config = hook(verify="github", secret_env="S")
    data = {"action": "opened", "repository": {"full_name": "acme/app"}, "pull_request": {"number": 7}}
    body = json.dumps(data).encode()

    event = event_of(config, data, {"X-GitHub-Event": "pull_request"}, Verified(delivery_id="d-42"), body)
    push = event_of(config, {"ref": "main", "commits": []}, {"x-github-event": "push"}, Verified(delivery_id="d-43"))
    undelivered = event_of(config, data, {"X-GitHub-Event": "pull_request"}, body=body)

    assert (event.type, event.source, event.subject) == ("github.pull_request.opened", "/hooks/h", "acme/app")
    assert event.id == "github-" + hashlib.sha256(body).hexdigest() == undelivered.id
    assert event.extensions == {"githubdelivery": "d-42"} and undelivered.extensions == {}
    assert event.data == data and event.time == NOW
    assert push.type == "github.push" and push.subject is None and push.id != event.id


def test_a_replayed_github_body_with_a_fresh_delivery_id_keeps_its_event_id() -> None:
    config = hook(verify="github", secret_env="S")
    data = {"action": "opened", "pull_request": {"number": 7}}
    body = json.dumps(data).encode()

    first = event_of(config, data, {"X-GitHub-Event": "pull_request"}, Verified(delivery_id="d-1"), body)
    replay = event_of(config, data, {"X-GitHub-Event": "pull_request"}, Verified(delivery_id="forged-2"), body)

    assert replay.id == first.id and replay.extensions == {"githubdelivery": "forged-2"}


@pytest.mark.parametrize("kind, data", [("push", {"action": "opened", "pull_request": {}}),
                                        ("pull_request", {"ref": "main", "commits": []}),
                                        ("issues", {"action": "opened", "pull_request": {}})])
def test_an_x_github_event_the_body_contradicts_is_refused(kind: str, data: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as caught:
        event_of(hook(verify="github", secret_env="S"), data, {"X-GitHub-Event": kind})

    assert caught.value.status == 422 and caught.value.field == "x-github-event" and kind in str(caught.value)


def test_stripe_events_use_the_body_type_and_id() -> None:
    config = hook(verify="stripe", secret_env="S")
    data = {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_9"}}}

    event = event_of(config, data)

    assert (event.type, event.id, event.subject) == ("stripe.checkout.session.completed", "evt_1", "cs_9")
    with pytest.raises(Rejected, match="not a Stripe event"):
        event_of(config, {"type": "x"})


def test_slack_challenge_events_commands_and_a_derived_id() -> None:
    config = hook(verify="slack", secret_env="S")

    challenge = build_event(config, {}, {"type": "url_verification", "challenge": "c-1"}, b"", Verified(), NOW)
    mention = event_of(config, {"type": "event_callback", "event_id": "Ev1",
                                "event": {"type": "app_mention", "channel": "C1"}})
    command = event_of(config, {"command": "/deploy", "text": "prod"}, verified=Verified(timestamp=1), body=b"a")
    again = event_of(config, {"command": "/deploy", "text": "prod"}, verified=Verified(timestamp=1), body=b"a")
    later = event_of(config, {"command": "/deploy", "text": "prod"}, verified=Verified(timestamp=2), body=b"a")

    assert challenge == Challenge({"challenge": "c-1"})
    assert (mention.type, mention.id, mention.subject) == ("slack.app_mention", "Ev1", "C1")
    assert (command.type, command.subject) == ("slack.command", "/deploy")
    assert command.id == again.id != later.id


def test_generic_endpoints_default_to_name_and_body_type_and_templates_override() -> None:
    plain = hook(verify="standard", secret_env="S")
    mapped = hook(verify="token", secret_env="S", type="shop.{{ body.kind }}", subject="{{ body.order.id }}",
                  id="{{ headers['x-request-id'] }}")

    typed = event_of(plain, {"type": "invoice.paid"}, verified=Verified(delivery_id="msg_1"))
    untyped = event_of(plain, {"x": 1}, verified=Verified(delivery_id="msg_2"))
    event = event_of(mapped, {"kind": "order", "order": {"id": 12}}, {"X-Request-Id": "r-1"})

    assert (typed.type, typed.id) == ("h.invoice.paid", "msg_1")
    assert untyped.type == "h"
    assert (event.type, event.subject, event.id) == ("shop.order", "12", "r-1")


def test_a_template_that_fails_is_a_422_and_never_sees_the_token() -> None:
    config = hook(verify="token", secret_env="S", subject="{{ headers['x-webhook-token'] }}")

    with pytest.raises(Rejected) as caught:
        event_of(config, {"a": 1}, {"X-Webhook-Token": "s3cret"})

    assert caught.value.status == 422 and "s3cret" not in str(caught.value)
    with pytest.raises(Rejected, match="has no attribute"):
        event_of(hook(verify="none", type="{{ body.missing.deeper }}"), {"a": 1})


@pytest.mark.parametrize("content_type, body, status", [
    ("application/json", b'{"a": NaN}', 400),
    ("application/json", b'{"a": Infinity}', 400),
    ("application/json", b"{not json", 400),
    ("application/json", b"", 400),
    ("application/json", b"[1, 2]", 422),
    ("application/json", b'"text"', 422),
    ("application/json", b'{"a":' * 100 + b"1" + b"}" * 100, 422),
    ("text/plain", b"{}", 415),
    ("application/x-www-form-urlencoded", b"a=1", 415),
])
def test_bad_bodies_get_the_right_status(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(Rejected) as caught:
        parse_payload(hook(verify="token", secret_env="S"), content_type, body)

    assert caught.value.status == status


def test_github_and_slack_forms_carry_json_in_payload_or_fields() -> None:
    github = hook(verify="github", secret_env="S")
    slack = hook(verify="slack", secret_env="S")

    assert parse_payload(github, "application/x-www-form-urlencoded",
                         urlencode({"payload": '{"zen": "ok"}'}).encode()) == {"zen": "ok"}
    assert parse_payload(slack, "application/x-www-form-urlencoded; charset=utf-8",
                         b"command=%2Fdeploy&text=prod") == {"command": "/deploy", "text": "prod"}
    assert parse_payload(github, "application/json; charset=utf-8", b'{"a": 1}') == {"a": 1}
    assert parse_payload(github, None, b'{"a": 1}') == {"a": 1}
    with pytest.raises(Rejected, match="payload"):
        parse_payload(github, "application/x-www-form-urlencoded", b"a=1")


# -- what orch api loads, and where secret errors point -------------------------------------------------


def broken_project(root: Path) -> Path:
    """Hooks beside a workflow module that raises on import and a rule naming no workflow."""
    (root / "rules").mkdir(parents=True)
    (root / "workflows").mkdir()
    (root / "workflows" / "broken.py").write_text("import pathlib\n"
                                                  "pathlib.Path(__file__).with_name('imported').touch()\n"
                                                  "raise RuntimeError('this module must not be imported')\n")
    (root / "rules" / "rules.yaml").write_text("rules:\n  - {name: r, type: t, workflow: nowhere}\nbogus: 1\n")
    (root / "rules" / "hooks.yaml").write_text(textwrap.dedent("""\
        # endpoints
        hooks:
          - name: gh
            verify: github
            secret_env: GH_SECRET
          - name: files
            verify: slack
            secret_file: secrets/slack.txt
        """))
    return root


def test_load_hooks_reads_only_the_hooks_and_imports_no_workflow(tmp_path: Path) -> None:
    root = broken_project(tmp_path)

    hooks, locations = load_hooks(root)

    assert list(hooks) == ["gh", "files"] and hooks["files"].secret_file == root / "secrets" / "slack.txt"
    assert locations == {"gh": (root / "rules" / "hooks.yaml", 3), "files": (root / "rules" / "hooks.yaml", 6)}
    assert not (root / "workflows" / "imported").exists()
    with pytest.raises(ConfigError):
        load_project(root)  # the whole project is broken, for the roles that need it
    assert (root / "workflows" / "imported").exists()


def test_load_hooks_reports_problems_in_hooks_sections(tmp_path: Path) -> None:
    root = broken_project(tmp_path)
    (root / "rules" / "more.yaml").write_text("hooks:\n  - {name: gh, verify: github, secret_env: OTHER}\n")

    with pytest.raises(ConfigError) as caught:
        load_hooks(root)

    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.field) == (root / "rules" / "more.yaml", 2, "hooks[0].name")


def test_a_missing_secret_names_the_file_and_line_that_declare_the_endpoint(tmp_path: Path) -> None:
    root = broken_project(tmp_path)
    hooks, locations = load_hooks(root)

    with pytest.raises(ConfigError) as caught:
        resolve_all(hooks, {}, project_root=root, locations=locations)

    env, file = caught.value.issues
    assert (env.file, env.line, env.field) == (root / "rules" / "hooks.yaml", 3, "hooks.gh.secret_env")
    assert (file.file, file.line, file.field) == (root / "rules" / "hooks.yaml", 6, "hooks.files.secret_file")
    assert str(env).startswith(f"{root / 'rules' / 'hooks.yaml'}:3: hooks.gh.secret_env: ")


@pytest.mark.parametrize(("source", "ok"), [("/hooks/github-main", True), ("/schedules/nightly", False),
                                            ("/watches/inbox", False), ("/github", False)])
def test_a_hook_source_stays_under_hooks(source: str, ok: bool) -> None:
    if ok:
        assert hook(verify="none", source=source).event_source == source
        return
    ((loc, message),) = errors(verify="none", source=source)
    assert loc == ("source",) and "must start with /hooks/" in message
