"""deploy/observability/alerts.yml passes `promtool check rules`, and its unit tests (alerts_test.yml) pass
`promtool test rules`: each alert fires when it should, once for several API processes, with its text."""

from __future__ import annotations

import subprocess

import pytest

from ..helpers import PROMTOOL_MISSING, ROOT, promtool

OBSERVABILITY = ROOT / "deploy" / "observability"


@pytest.mark.parametrize("args", [("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")])
def test_the_alert_rules_pass_promtool(args: tuple[str, ...]) -> None:
    tool = promtool()
    if tool is None:
        pytest.skip(PROMTOOL_MISSING)
    result = subprocess.run([tool, *args], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
