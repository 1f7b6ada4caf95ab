"""Webhook signature checks: pure functions of the headers, the raw body, the secrets and the clock.

Each follows its provider's documented algorithm over the raw bytes, before anything parses them:

    github    X-Hub-Signature-256: sha256=<hex>        HMAC-SHA256(secret, body)
    stripe    Stripe-Signature: t=<unix>,v1=<hex>...   HMAC-SHA256(secret, "{t}.{body}"); any v1 may match
    slack     X-Slack-Signature: v0=<hex>              HMAC-SHA256(secret, "v0:{ts}:{body}"),
              X-Slack-Request-Timestamp: <unix>
    standard  webhook-id, webhook-timestamp,           HMAC-SHA256(base64-decoded secret after "whsec_",
              webhook-signature: v1,<base64> ...       "{id}.{ts}.{body}"); any v1 may match
    token     <header>: <secret>                       the secret itself (Authorization: Bearer <secret>)

Headers are parsed strictly (known prefix, exact hex/base64 length, bounded size); a timestamp further
than the tolerance from `now`, in either direction, is refused before any MAC is computed. Every
comparison uses `hmac.compare_digest` and every configured secret is tried (rotation). A failure raises
SignatureError, whose message says what is wrong and never contains a secret or an expected MAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import Scheme

__all__ = ["DEFAULT_TOKEN_HEADER", "SignatureError", "Verified", "standard_key", "verify"]

DEFAULT_TOKEN_HEADER = "X-Webhook-Token"
MAX_HEADER_CHARS = 4096
MAX_SIGNATURES = 16
_MAC_BYTES = 32  # SHA-256
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_TS = re.compile(r"[0-9]{1,15}")
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")


class SignatureError(ValueError):
    """The request is not authentic (HTTP 401). The message is safe to return to the caller."""


@dataclass(frozen=True)
class Verified:
    """What a successful check learned: the provider's delivery id and signed timestamp, when it has them."""

    delivery_id: str | None = None
    timestamp: int | None = None


def verify(scheme: Scheme, headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], *,
           now: float, tolerance_s: float = 300.0, header: str | None = None) -> Verified:
    """Check one request against `secrets` (any may match); raises SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    if scheme is Scheme.NONE:
        return Verified()
    if not secrets:
        raise SignatureError("this endpoint has no secret to verify with")
    if scheme is Scheme.GITHUB:
        return _github(lower, body, secrets)
    if scheme is Scheme.STRIPE:
        return _stripe(lower, body, secrets, now, tolerance_s)
    if scheme is Scheme.SLACK:
        return _slack(lower, body, secrets, now, tolerance_s)
    if scheme is Scheme.STANDARD:
        return _standard(lower, body, secrets, now, tolerance_s)
    return _token(lower, secrets, header or DEFAULT_TOKEN_HEADER)


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_`; ValueError if not base64."""
    text = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64")
    return key


def _required(headers: Mapping[str, str], name: str, hint: str = "") -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise SignatureError(f"missing {name} header{hint}")
    if len(value) > MAX_HEADER_CHARS:
        raise SignatureError(f"malformed {name} header: longer than {MAX_HEADER_CHARS} characters")
    return value.strip()


def _matches(given: Sequence[bytes], message: bytes, secrets: Sequence[bytes]) -> bool:
    """Whether any signature in `given` is HMAC-SHA256(secret, message) for any secret; constant time each."""
    found = False
    for secret in secrets:
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        for candidate in given:
            found |= hmac.compare_digest(expected, candidate)
    return found


def _timestamp(value: str, name: str, now: float, tolerance_s: float) -> int:
    if not _UNIX_TS.fullmatch(value):
        raise SignatureError(f"malformed {name}: expected a Unix time in seconds")
    ts = int(value)
    skew = now - ts
    if skew > tolerance_s:
        raise SignatureError(f"{name} is {skew:.0f} s old, over the tolerance of {tolerance_s:g} s "
                             "(a replayed or delayed request, or a clock that is off)")
    if -skew > tolerance_s:
        raise SignatureError(f"{name} is {-skew:.0f} s in the future, over the tolerance of {tolerance_s:g} s "
                             "(a clock that is off)")
    return ts


def _github(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> Verified:
    name = "X-Hub-Signature-256"
    if "x-hub-signature-256" not in headers and "x-hub-signature" in headers:
        raise SignatureError(f"only the legacy SHA-1 X-Hub-Signature was sent; orch requires {name}")
    value = _required(headers, name, " (set a secret on the GitHub webhook)")
    prefix, _, digest = value.partition("=")
    if prefix != "sha256" or not _HEX_SHA256.fullmatch(digest):
        raise SignatureError(f"malformed {name} header: expected sha256=<64 hex digits>")
    if not _matches([bytes.fromhex(digest)], body, secrets):
        raise SignatureError(f"{name} does not match the body (wrong secret, or the body was altered)")
    delivery = headers.get("x-github-delivery")
    return Verified(delivery_id=delivery.strip() if delivery else None)


def _stripe(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], now: float,
            tolerance_s: float) -> Verified:
    name = "Stripe-Signature"
    value = _required(headers, name)
    stamp: str | None = None
    signatures: list[bytes] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {name} header: expected t=<unix>,v1=<hex>")
        if key == "t":
            if stamp is not None:
                raise SignatureError(f"malformed {name} header: more than one t=")
            if not _UNIX_TS.fullmatch(item):
                raise SignatureError(f"malformed {name} header: t must be a Unix time in seconds")
            stamp = item
        elif key == "v1":
            if not _HEX_SHA256.fullmatch(item):
                raise SignatureError(f"malformed {name} header: v1 must be 64 hex digits")
            signatures.append(bytes.fromhex(item))
    if stamp is None:
        raise SignatureError(f"malformed {name} header: no timestamp (t=)")
    if not signatures:
        raise SignatureError(f"{name} header has no v1 signature")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(f"malformed {name} header: more than {MAX_SIGNATURES} signatures")
    ts = _timestamp(stamp, f"{name} timestamp", now, tolerance_s)
    if not _matches(signatures, stamp.encode() + b"." + body, secrets):
        raise SignatureError(f"no v1 signature in {name} matches (wrong secret, or the body was altered)")
    return Verified(timestamp=ts)


def _slack(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], now: float,
           tolerance_s: float) -> Verified:
    name = "X-Slack-Signature"
    stamp = _required(headers, "X-Slack-Request-Timestamp")
    value = _required(headers, name)
    version, _, digest = value.partition("=")
    if version != "v0" or not _HEX_SHA256.fullmatch(digest):
        raise SignatureError(f"malformed {name} header: expected v0=<64 hex digits>")
    ts = _timestamp(stamp, "X-Slack-Request-Timestamp", now, tolerance_s)
    if not _matches([bytes.fromhex(digest)], b"v0:" + stamp.encode() + b":" + body, secrets):
        raise SignatureError(f"{name} does not match (wrong signing secret, or the body was altered)")
    return Verified(timestamp=ts)


def _standard(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], now: float,
              tolerance_s: float) -> Verified:
    msg_id = _required(headers, "webhook-id")
    stamp = _required(headers, "webhook-timestamp")
    value = _required(headers, "webhook-signature")
    if not _WEBHOOK_ID.fullmatch(msg_id):
        raise SignatureError("malformed webhook-id header: 1-256 printable characters without spaces")
    signatures: list[bytes] = []
    for entry in value.split():
        version, sep, encoded = entry.partition(",")
        if not sep:
            raise SignatureError("malformed webhook-signature header: expected 'v1,<base64>' entries")
        if version != "v1":
            continue  # v1a (ed25519) and future versions: not ours to check
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("malformed webhook-signature header: a v1 signature is not base64") from None
        if len(signature) != _MAC_BYTES:
            raise SignatureError("malformed webhook-signature header: a v1 signature is not 32 bytes")
        signatures.append(signature)
    if not signatures:
        raise SignatureError("webhook-signature header has no v1 signature (only v1, HMAC-SHA256, is supported)")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(f"malformed webhook-signature header: more than {MAX_SIGNATURES} signatures")
    ts = _timestamp(stamp, "webhook-timestamp", now, tolerance_s)
    if not _matches(signatures, f"{msg_id}.{stamp}.".encode() + body, secrets):
        raise SignatureError("no v1 signature in webhook-signature matches (wrong secret, or the body was altered)")
    return Verified(delivery_id=msg_id, timestamp=ts)


def _token(headers: Mapping[str, str], secrets: Sequence[bytes], header: str) -> Verified:
    value = _required(headers, header)
    if header.lower() == "authorization":
        kind, _, value = value.partition(" ")
        if kind.lower() != "bearer" or not value.strip():
            raise SignatureError("malformed Authorization header: expected 'Bearer <token>'")
        value = value.strip()
    # Compare digests, so the comparison takes the same time whatever the lengths.
    given = hashlib.sha256(value.encode()).digest()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, hashlib.sha256(secret).digest())
    if not found:
        raise SignatureError(f"the {header} header does not hold a valid token")
    return Verified()
