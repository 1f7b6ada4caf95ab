"""Every Lua script sits in orchestrator/state/scripts/, is listed in the registry, and says what it takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.state import lua

SCRIPTS = Path(lua.__file__).parent / "scripts"


def test_every_script_file_is_registered_and_every_registered_script_exists() -> None:
    on_disk = {p.stem for p in SCRIPTS.glob("*.lua")}
    assert on_disk == set(lua.NAMES)


def test_no_lua_outside_the_one_place() -> None:
    root = Path(lua.__file__).resolve().parents[2]
    stray = [p for package in ("orchestrator", "executors", "triggers") for p in (root / package).rglob("*.lua")
             if SCRIPTS not in p.parents]
    assert stray == []


@pytest.mark.parametrize("name", lua.NAMES)
def test_header_states_keys_argv_and_the_reply(name: str) -> None:
    text = (SCRIPTS / f"{name}.lua").read_text()
    assert text.startswith(f"--[[ {name}.lua: ")
    header = text.split("]]", 1)[0]
    assert "KEYS" in header and "ARGV" in header and "Returns" in header


@pytest.mark.parametrize("name", lua.NAMES)
def test_includes_are_resolved(name: str) -> None:
    text = lua.source(name)
    assert "--@include" not in text


def test_the_publish_step_is_written_once() -> None:
    step = "redis.call('XADD', stream, '*', 'e', payload)"
    users = [n for n in lua.NAMES if "publish_one(" in (SCRIPTS / f"{n}.lua").read_text()]
    assert sorted(users) == ["fire_tick", "publish"]
    assert all(step in lua.source(n) for n in users)
    assert not any("'XADD'" in (SCRIPTS / f"{n}.lua").read_text() for n in users)


def test_unknown_script_is_refused() -> None:
    with pytest.raises(KeyError, match="no Lua script"):
        lua.source("nope")
