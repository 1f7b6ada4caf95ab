"""A schema-driven fuzzer against a live `orch api`: no server error, and every answer as documented.

Schemathesis reads the API's own OpenAPI schema (fetched with a token, as a client would) and sends
generated requests to every operation: valid ones, invalid ones, unexpected methods and no credentials.
Every check runs (`--checks all`): no 5xx, status codes, content types, headers and bodies as the schema
documents them, invalid input refused, valid input accepted, authentication never ignored. The seed is
fixed and one worker sends everything, so that CI is repeatable (two worker threads interleave as they
please, and under Python 3.11 Hypothesis describing a lambda in both at once can fail with a SystemError
from `ast`); ORCH_FUZZ_SEED and ORCH_FUZZ_EXAMPLES explore further.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..e2e.conftest import Processes, create_token, orch_env
from ..helpers import RedisServer, free_port, wait_for
from ..projects import copy_examples

SEED = os.environ.get("ORCH_FUZZ_SEED", "20261129")
EXAMPLES_PER_OPERATION = os.environ.get("ORCH_FUZZ_EXAMPLES", "100")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, str]]:
    server = RedisServer()
    project = copy_examples(tmp_path / "project")
    port = free_port()
    procs = Processes(orch_env(server.url, project, ORCH_API_PORT=str(port), GITHUB_WEBHOOK_SECRET="fuzz",
                               STRIPE_WEBHOOK_SECRET="whsec_fuzz"), tmp_path)
    token = create_token(procs.env, "fuzzer", "admin")
    procs.start("api", "api")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), 30, "orch api")
        yield base, token
    finally:
        procs.stop_all()
        server.stop()
        assert "Traceback" not in procs.log("api"), procs.log("api")


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(900)
def test_the_fuzzer_finds_no_server_error_and_no_answer_the_schema_does_not_document(api: tuple[str, str],
                                                                                   tmp_path: Path) -> None:
    base, token = api
    schema = tmp_path / "openapi.json"
    schema.write_bytes(httpx.get(f"{base}/openapi.json", headers={"authorization": f"Bearer {token}"}).content)
    fuzzer = Path(sys.executable).parent / "schemathesis"

    result = subprocess.run(
        [str(fuzzer), "run", str(schema), "--url", base, "-H", f"Authorization: Bearer {token}", "--checks", "all",
         "--max-examples", EXAMPLES_PER_OPERATION, "--seed", SEED, "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"})

    summary = result.stdout[result.stdout.rfind("SUMMARY"):]
    print(summary)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "passed" in summary and "Selected: 14/14" in result.stdout
