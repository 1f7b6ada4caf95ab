"""Webhook signature schemes, each signed here independently with its provider's documented algorithm.

GitHub: X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(secret, body)).
Stripe: Stripe-Signature = "t={t},v1=" + hex(HMAC-SHA256(secret, f"{t}.{body}")).
Slack: X-Slack-Signature = "v0=" + hex(HMAC-SHA256(secret, f"v0:{ts}:{body}")).
Standard Webhooks: webhook-signature = "v1," + base64(HMAC-SHA256(b64decode(secret minus whsec_), f"{id}.{ts}.{body}")).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from triggers.webhooks.config import Scheme
from triggers.webhooks.verify import SignatureError, Verified, standard_key, verify

from ..helpers import ROOT

NOW = 1_750_000_000
BODY = b'{"action":"opened","number":7}'
OLD, NEW, OTHER = b"old-secret-0123456789", b"new-secret-9876543210", b"somebody-else"
STD_KEY = bytes(range(32))
STD_SECRET = "whsec_" + base64.b64encode(STD_KEY).decode()


def mac(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def github(secret: bytes, body: bytes = BODY) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + mac(secret, body).hex(), "X-GitHub-Delivery": "d-1",
            "X-GitHub-Event": "pull_request"}


def stripe(secret: bytes, t: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {"Stripe-Signature": f"t={t},v1={mac(secret, f'{t}.'.encode() + body).hex()}"}


def slack(secret: bytes, ts: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": "v0=" + mac(secret, f"v0:{ts}:".encode() + body).hex()}


def standard(key: bytes, ts: int = NOW, body: bytes = BODY, msg_id: str = "msg_1") -> dict[str, str]:
    signature = base64.b64encode(mac(key, f"{msg_id}.{ts}.".encode() + body)).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{signature}"}


def check(scheme: Scheme, headers: dict[str, str], secrets: list[bytes], body: bytes = BODY,
          now: float = NOW, header: str | None = None) -> Verified:
    return verify(scheme, headers, body, secrets, now=now, tolerance_s=300, header=header)


def refused(scheme: Scheme, headers: dict[str, str], secrets: list[bytes], body: bytes = BODY,
            now: float = NOW, header: str | None = None) -> str:
    with pytest.raises(SignatureError) as caught:
        check(scheme, headers, secrets, body, now, header)
    message = str(caught.value)
    for secret in secrets:
        assert secret.decode(errors="replace") not in message, "a secret must never appear in an error"
    return message


SIGNERS: dict[Scheme, Callable[[bytes], dict[str, str]]] = {
    Scheme.GITHUB: github, Scheme.STRIPE: stripe, Scheme.SLACK: slack,
}


# -- good signatures and rotation ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", list(SIGNERS))
def test_a_good_signature_passes_and_rotated_secrets_both_verify(scheme: Scheme) -> None:
    sign = SIGNERS[scheme]

    assert check(scheme, sign(NEW), [NEW])
    assert check(scheme, sign(OLD), [OLD, NEW]), "the old secret still verifies while rotating"
    assert check(scheme, sign(NEW), [OLD, NEW]), "so does the new one"
    refused(scheme, sign(OLD), [NEW])  # the old secret, once removed, is refused


@pytest.mark.parametrize("scheme", list(SIGNERS))
def test_a_wrong_secret_or_an_altered_body_is_refused(scheme: Scheme) -> None:
    sign = SIGNERS[scheme]

    assert "does not match" in refused(scheme, sign(OTHER), [OLD, NEW]) or \
        "matches" in refused(scheme, sign(OTHER), [OLD, NEW])
    refused(scheme, sign(NEW), [NEW], body=BODY + b" ")
    refused(scheme, sign(NEW), [NEW], body=BODY.replace(b"7", b"8"))


def test_github_returns_the_delivery_id_and_accepts_uppercase_hex_and_any_header_case() -> None:
    headers = {k.lower(): v.upper() if k == "X-Hub-Signature-256" else v for k, v in github(NEW).items()}
    headers["x-hub-signature-256"] = "sha256=" + headers["x-hub-signature-256"].split("=")[1]

    assert check(Scheme.GITHUB, headers, [NEW]) == Verified(delivery_id="d-1")


@pytest.mark.parametrize("headers, fragment", [
    ({}, "missing X-Hub-Signature-256"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40}, "legacy SHA-1"),
    ({"X-Hub-Signature-256": "sha1=" + "0" * 64}, "malformed"),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 63}, "malformed"),
    ({"X-Hub-Signature-256": "sha256=" + "g" * 64}, "malformed"),
    ({"X-Hub-Signature-256": mac(NEW, BODY).hex()}, "malformed"),
    ({"X-Hub-Signature-256": "sha256=" + hashlib.sha256(BODY).hexdigest()}, "does not match"),
])
def test_github_missing_or_malformed_headers_are_refused(headers: dict[str, str], fragment: str) -> None:
    assert fragment in refused(Scheme.GITHUB, headers, [NEW])


def test_a_mac_over_reserialised_json_is_refused() -> None:
    pretty = b'{"action": "opened", "number": 7}'

    refused(Scheme.GITHUB, github(NEW, pretty), [NEW])


# -- stripe --------------------------------------------------------------------------------------------


def test_stripe_accepts_any_v1_among_several_and_ignores_v0() -> None:
    t = NOW
    good = mac(NEW, f"{t}.".encode() + BODY).hex()
    header = f"t={t},v1={'0' * 64},v1={good},v0={'1' * 64}"

    assert check(Scheme.STRIPE, {"Stripe-Signature": header}, [NEW]) == Verified(timestamp=t)


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_stripe_stale_or_future_timestamps_are_refused_even_when_signed(offset: int) -> None:
    message = refused(Scheme.STRIPE, stripe(NEW, t=NOW + offset), [NEW])

    assert "tolerance of 300 s" in message
    assert ("old" in message) == (offset < 0)


def test_stripe_timestamps_inside_the_tolerance_pass() -> None:
    assert check(Scheme.STRIPE, stripe(NEW, t=NOW - 299), [NEW])
    assert check(Scheme.STRIPE, stripe(NEW, t=NOW + 299), [NEW])


@pytest.mark.parametrize("header, fragment", [
    ("", "missing Stripe-Signature"),
    ("v1=" + "0" * 64, "no timestamp"),
    (f"t={NOW}", "no v1 signature"),
    (f"t={NOW},v0={'0' * 64}", "no v1 signature"),
    (f"t=abc,v1={'0' * 64}", "malformed"),
    (f"t={NOW},v1=xyz", "malformed"),
    (f"t={NOW},t={NOW},v1={'0' * 64}", "more than one t="),
    (f"t={NOW};v1={'0' * 64}", "malformed"),
    ("t=1," + "v1=" + "0" * 5000, "longer than"),
])
def test_stripe_malformed_headers_are_refused(header: str, fragment: str) -> None:
    headers = {"Stripe-Signature": header} if header else {}

    assert fragment in refused(Scheme.STRIPE, headers, [NEW])


# -- slack ---------------------------------------------------------------------------------------------


def test_slack_checks_the_timestamp_and_the_signature() -> None:
    assert check(Scheme.SLACK, slack(NEW), [NEW]) == Verified(timestamp=NOW)
    assert "old" in refused(Scheme.SLACK, slack(NEW, ts=NOW - 301), [NEW])
    assert "future" in refused(Scheme.SLACK, slack(NEW, ts=NOW + 301), [NEW])


@pytest.mark.parametrize("drop, replace, fragment", [
    ("X-Slack-Signature", None, "missing X-Slack-Signature"),
    ("X-Slack-Request-Timestamp", None, "missing X-Slack-Request-Timestamp"),
    (None, ("X-Slack-Signature", "v1=" + "0" * 64), "malformed"),
    (None, ("X-Slack-Signature", "v0=" + "0" * 10), "malformed"),
    (None, ("X-Slack-Request-Timestamp", "yesterday"), "malformed"),
])
def test_slack_missing_or_malformed_headers_are_refused(drop: str | None, replace: tuple[str, str] | None,
                                                        fragment: str) -> None:
    headers = slack(NEW)
    if drop:
        del headers[drop]
    if replace:
        headers[replace[0]] = replace[1]

    assert fragment in refused(Scheme.SLACK, headers, [NEW])


# -- standard webhooks ---------------------------------------------------------------------------------


def test_standard_webhooks_key_is_the_base64_decoded_secret() -> None:
    assert standard_key(STD_SECRET) == STD_KEY
    assert standard_key(base64.b64encode(STD_KEY).decode()) == STD_KEY  # the prefix is optional
    with pytest.raises(ValueError, match="whsec_"):
        standard_key("whsec_not base64!")


def test_standard_webhooks_good_rotated_stale_and_bad() -> None:
    old_key = b"\x01" * 24

    assert check(Scheme.STANDARD, standard(STD_KEY), [STD_KEY]) == Verified(delivery_id="msg_1", timestamp=NOW)
    assert check(Scheme.STANDARD, standard(old_key), [old_key, STD_KEY])
    refused(Scheme.STANDARD, standard(old_key), [STD_KEY])
    assert "old" in refused(Scheme.STANDARD, standard(STD_KEY, ts=NOW - 301), [STD_KEY])
    assert "future" in refused(Scheme.STANDARD, standard(STD_KEY, ts=NOW + 301), [STD_KEY])
    # the raw secret string is not the key: a sender that forgot to decode it is refused
    refused(Scheme.STANDARD, standard(STD_SECRET.encode()), [STD_KEY])


def test_standard_webhooks_signs_the_id_and_accepts_any_of_several_signatures() -> None:
    headers = standard(STD_KEY)
    headers["webhook-id"] = "msg_2"
    refused(Scheme.STANDARD, headers, [STD_KEY])

    good = standard(STD_KEY)["webhook-signature"]
    several = {**standard(STD_KEY), "webhook-signature": f"v1a,{'A' * 86} v1,{base64.b64encode(b'x' * 32).decode()} {good}"}
    assert check(Scheme.STANDARD, several, [STD_KEY])


@pytest.mark.parametrize("name, value, fragment", [
    ("webhook-id", None, "missing webhook-id"),
    ("webhook-timestamp", None, "missing webhook-timestamp"),
    ("webhook-signature", None, "missing webhook-signature"),
    ("webhook-signature", "v1a,AAAA", "no v1 signature"),
    ("webhook-signature", "v1:abc", "malformed"),
    ("webhook-signature", "v1,not*base64", "not base64"),
    ("webhook-signature", "v1," + base64.b64encode(b"short").decode(), "not 32 bytes"),
    ("webhook-timestamp", "12.5", "malformed"),
    ("webhook-id", "has space", "malformed"),
])
def test_standard_webhooks_missing_or_malformed_headers_are_refused(name: str, value: str | None,
                                                                   fragment: str) -> None:
    headers = standard(STD_KEY)
    if value is None:
        del headers[name]
    else:
        headers[name] = value

    assert fragment in refused(Scheme.STANDARD, headers, [STD_KEY])


# -- token and none ------------------------------------------------------------------------------------


def test_token_in_a_configurable_header_with_rotation() -> None:
    assert check(Scheme.TOKEN, {"X-Webhook-Token": NEW.decode()}, [NEW]) == Verified()
    assert check(Scheme.TOKEN, {"x-deploy-key": OLD.decode()}, [OLD, NEW], header="X-Deploy-Key")
    assert "missing X-Webhook-Token" in refused(Scheme.TOKEN, {}, [NEW])
    assert "not hold a valid token" in refused(Scheme.TOKEN, {"X-Webhook-Token": "guess"}, [NEW])
    assert "not hold a valid token" in refused(Scheme.TOKEN, {"X-Webhook-Token": NEW.decode()[:-1]}, [NEW])
    refused(Scheme.TOKEN, {"X-Webhook-Token": OLD.decode()}, [NEW])


def test_token_in_the_authorization_header_is_a_bearer_token() -> None:
    assert check(Scheme.TOKEN, {"Authorization": f"Bearer {NEW.decode()}"}, [NEW], header="Authorization")
    assert "Bearer" in refused(Scheme.TOKEN, {"Authorization": NEW.decode()}, [NEW], header="Authorization")


def test_none_checks_nothing_and_an_endpoint_without_secrets_refuses_everything() -> None:
    assert check(Scheme.NONE, {}, []) == Verified()
    assert "no secret" in refused(Scheme.GITHUB, github(NEW), [])


def test_every_mac_comparison_is_constant_time() -> None:
    """No `==` between digests or signatures in the verification module (hmac.compare_digest only)."""
    tree = ast.parse((ROOT / "triggers" / "webhooks" / "verify.py").read_text())
    compared = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
                and not ast.unparse(node.left).startswith("len(")
                and any(word in ast.unparse(node) for word in ("digest", "signature", "secret", "expected"))]
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and ast.unparse(node.func) == "hmac.compare_digest"]

    assert compared == []
    assert len(calls) >= 2
