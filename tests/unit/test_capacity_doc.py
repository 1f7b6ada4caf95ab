"""deploy/CAPACITY.md quotes its bench run: its plan tables are what bench/capacity_model.py computes from
the quoted result files, and its per-item table carries those files' figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.capacity_model import PLAN_BLOCK, fill_document

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "deploy" / "CAPACITY.md"
MAIN_RESULT = ROOT / "deploy" / "capacity" / "20261130-211148.json"


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads((ROOT / path).read_text()))


def test_every_plan_table_is_the_models_output() -> None:
    text = DOC.read_text()
    assert len(PLAN_BLOCK.findall(text)) >= 4
    assert fill_document(text, _load) == text, "run: .venv/bin/python bench/capacity_model.py --fill deploy/CAPACITY.md"


def test_the_per_item_table_carries_the_quoted_figures() -> None:
    text = DOC.read_text()
    figures = _load(MAIN_RESULT)["orch"]["capacity"]["figures"]
    run, task = figures["bytes_per_run_by_class"], figures["bytes_per_task_by_class"]
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}

    def cell(value: float) -> str:
        return f" {round(value):,} |"

    assert cell(figures["bytes_per_event_stream_entry"]) in rows["event, stream entry (155 B JSON event)"]
    assert cell(figures["bytes_per_dedup_key"]) in rows["dedup key"]
    assert cell(figures["bytes_per_queued_job"]) in rows["queued job: RQ job hash + queue list entry"]
    by_label = {"run hash + its 4 index entries (`runs`)": "runs",
                "event stream entries (event + lifecycle events)": "event_entries",
                "decision record (`<p>:decisions:<entry>`)": "decisions",
                "dedup keys (event + lifecycle events)": "dedup_keys",
                "results stream entries (started + succeeded)": "results_entries",
                "finished RQ job hash + finished-registry entry": "rq_jobs", "other: what no deletion freed": "other"}
    for label, name in by_label.items():
        cells = [c.strip() for c in rows[label].split("|")[2:4]]
        assert cells == [f"{round(run[name]):,}", f"{round(task[name]):,}"], label
