"""API tokens on a real Redis: created once and shown once, kept as hashes, listed, revoked."""

from __future__ import annotations

import pytest
import redis

from orchestrator.state.keys import Keys
from orchestrator.tokens import TokenError, TokenStore, digest, parse


@pytest.fixture
def store(r: redis.Redis) -> TokenStore:
    return TokenStore(r, Keys())


def test_a_token_is_verified_by_its_hash_and_allows_its_scopes(store: TokenStore, r: redis.Redis) -> None:
    token, record = store.create("ci", ["events:write", "runs:read"])

    assert parse(token) == record.id and record.digest == digest(token)
    found = store.verify(token)
    assert found is not None and found.name == "ci"
    assert found.allows("events:write") and found.allows("runs:read") and not found.allows("runs:steer")
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify("orch_0123456789ab_" + "x" * 43) is None and store.verify("ci") is None
    assert token.encode() not in b"".join(r.hvals(Keys().token(record.id)))


def test_admin_allows_every_scope(store: TokenStore) -> None:
    token, _ = store.create("root", ["admin"])
    found = store.verify(token)
    assert found is not None and all(found.allows(s) for s in ("events:write", "runs:steer", "metrics:read"))


@pytest.mark.parametrize(("name", "scopes", "fragment"), [
    ("ci", ["runs:write"], "unknown scope(s) runs:write"),
    ("ci", [], "no scope given"),
    ("bad name", ["admin"], "token name 'bad name'"),
])
def test_bad_requests_say_what_to_do(store: TokenStore, name: str, scopes: list[str], fragment: str) -> None:
    with pytest.raises(TokenError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        store.create(name, scopes)


def test_names_are_unique_and_revoking_by_name_or_id_ends_a_token(store: TokenStore) -> None:
    first, record = store.create("deploy", ["runs:steer"])
    with pytest.raises(TokenError, match="a token named 'deploy' exists: revoke it first"):
        store.create("deploy", ["runs:steer"])
    second_token, second = store.create("backup", ["runs:read"])

    assert [r.name for r in store.list()] == ["backup", "deploy"]
    store.revoke("deploy")
    store.revoke(second.id)

    assert store.verify(first) is None and store.verify(second_token) is None and store.list() == []
    with pytest.raises(TokenError, match="no token named 'deploy'"):
        store.revoke("deploy")
    assert record.name == "deploy"
