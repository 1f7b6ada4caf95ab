"""The admin token `orch dev` makes for its project, kept in `.orch/token` (mode 0600).

`orch dev` reuses the token in that file while Redis still knows it (the embedded Redis keeps its data
between runs), and otherwise replaces the project's `dev` token with a new one. Other commands for the
same project find it there (`token_file`), as they find the embedded Redis through `.orch/redis.json`.
"""

from __future__ import annotations

from pathlib import Path

from ..connection import client_from_url
from ..private_files import read_private, write_private
from ..settings import Settings
from ..state.keys import Keys
from ..tokens import ADMIN, TokenError, TokenStore

__all__ = ["DEV_TOKEN_NAME", "dev_token", "project_token", "token_file"]

DEV_TOKEN_NAME = "dev"


def token_file(settings: Settings) -> Path:
    return settings.state_dir / "token"


def project_token(settings: Settings) -> str | None:
    """The dev token `orch dev` made for this project, if there is one."""
    return read_private(token_file(settings))


def dev_token(settings: Settings, url: str) -> str:
    """An admin token for the project: the one in `.orch/token` if Redis still knows it, else a new one."""
    client = client_from_url(url)
    try:
        store = TokenStore(client, Keys(settings.key_prefix))
        kept = project_token(settings)
        if kept and store.verify(kept) is not None:
            return kept
        try:
            store.revoke(DEV_TOKEN_NAME)
        except TokenError:
            pass  # there was none
        token, _ = store.create(DEV_TOKEN_NAME, [ADMIN])
    finally:
        client.close()
    write_private(token_file(settings), token + "\n")
    return token
