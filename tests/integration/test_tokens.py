"""API tokens on a real Redis: created once and shown once, kept as hashes, listed, revoked."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
import redis.asyncio
from fastapi.security import HTTPAuthorizationCredentials

from orchestrator.api.auth import Principal, Verifier
from orchestrator.state.keys import Keys
from orchestrator.tokens import TokenError, TokenStore, digest, parse

from ..helpers import RedisServer


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
    ("0123456789ab", ["admin"], "looks like a token id"),
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


def test_revoking_by_id_never_takes_a_token_named_like_another_tokens_id(store: TokenStore, r: redis.Redis) -> None:
    leaked, record = store.create("leaked", ["admin"])
    r.hset("orch:tokens", record.id, "ffffffffffff")  # a name equal to that id, from before names were checked
    r.hset("orch:token:ffffffffffff", mapping={"name": record.id, "scopes": "runs:read", "created_at": "1",
                                              "digest": "0" * 64})
    assert store.revoke(record.id).name == "leaked"
    assert store.verify(leaked) is None


def test_the_last_use_is_kept_apart_from_the_record(store: TokenStore, r: redis.Redis) -> None:
    _, record = store.create("ci", ["runs:read"])
    r.hset("orch:tokens:used", record.id, "1795996737.5")
    (listed,) = store.list()
    assert listed.last_used_at == 1795996737.5 and b"last_used_at" not in r.hgetall(f"orch:token:{record.id}")
    r.hset("orch:tokens:used", record.id, "garbage")
    assert store.list()[0].last_used_at is None
    store.revoke("ci")
    assert not r.hexists("orch:tokens:used", record.id)


def test_an_api_user_that_cannot_note_the_last_use_still_authenticates(caplog: pytest.LogCaptureFixture) -> None:
    """An aclfile from before <p>:tokens:used existed gives the API read-only keys there: requests still pass."""
    server = RedisServer()
    try:
        admin = server.client()
        token, _ = TokenStore(admin, Keys()).create("ci", ["runs:read"])
        admin.execute_command("ACL", "SETUSER", "old-api", "on", ">pw", "%R~*", "-@all", "+@read", "+@connection")
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)

        async def verify() -> Principal:
            reader = redis.asyncio.Redis.from_url(server.url_for("old-api", "pw"))
            try:
                return await Verifier(reader, Keys()).principal(credentials, "runs:read")
            finally:
                await reader.aclose()

        with caplog.at_level(logging.WARNING):
            principal = asyncio.run(verify())

        assert principal.name == "ci"
        assert "could not note the use of token" in caplog.text and "orch redis-acl" in caplog.text
        admin.close()
    finally:
        server.stop()
