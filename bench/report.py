"""The results as Markdown tables: orch's worker engines side by side with the peers, what limits them,
ingest and webhook, maintenance, and the tables of bench/matching.py, capacity.py and curves.py.
"""

from __future__ import annotations

import os
from typing import Any

from bench import capacity, curves
from bench.common import ENGINES
from bench.matching import matching_table

PEER_LABELS = {"rq-simple": ("RQ SimpleWorker", "RQ"), "rq-fork": ("RQ fork", "RQ fork"),
               "celery": ("Celery", "Celery"), "dramatiq": ("Dramatiq", "Dramatiq")}
ENGINE_LABELS = {"fast": "orch fast path", "rq": "orch --engine rq"}


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "–"
    return f"{ours / theirs:.2f}x"


def _peer(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = results.get("peers") or []
    return next((row for row in rows if row.get("peer") == name and "error" not in row), None)


def _peers_ok(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in results.get("peers") or [] if "error" not in row]


def _vs_peers(results: dict[str, Any], ours: float | None, field: str) -> str:
    """'7.10x RQ, 0.81x Dramatiq': ours / each peer's `field`."""
    if ours is None:
        return "–"
    parts = [f"{_ratio(ours, row.get(field))} {PEER_LABELS.get(row['peer'], (row['peer'], row['peer']))[1]}"
             for row in _peers_ok(results) if row.get(field)]
    return ", ".join(parts) or "–"


def _first_item(fanout: dict[str, Any] | None) -> float | None:
    """ms from the items task's end (the list known) to the first item's start."""
    if not fanout or fanout.get("first_item_queued_to_started_ms") is None:
        return None
    return fanout["items_done_to_first_item_queued_ms"] + fanout["first_item_queued_to_started_ms"]


def _target(ok: bool | None, text: str) -> str:
    return text if ok is None else f"{text}: {'met' if ok else 'NOT met'}"


def _webhook_row(hook: dict[str, Any]) -> tuple[str, str, str, str]:
    return (f"webhook, signed github-style POST /hooks/{{name}} to 202 (`orch api --role {hook.get('api_role', 'all')} "
            f"--workers {hook.get('api_workers', 1)}`, {hook['connections']} connections; requests/s)",
            _num(hook["requests_per_s"]), _target(hook["requests_per_s"] >= 3000, ">= 3,000/s"), "")


def _webhook_note(hook: dict[str, Any]) -> str:
    return (f"Webhook: {hook['requests']:,} requests of {hook['body_bytes']} B, latency p50 / p99 "
            f"{hook['latency_ms_p50']:.2f} / {hook['latency_ms_p99']:.2f} ms; `orch api` CPU "
            f"{hook['api_cpu_cores_busy']:.2f} cores busy, {hook['api_cpu_us_per_request']:.0f} us per request "
            "(verify, parse, publish script).")


def _get(data: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fanout_ok(orch: dict[str, Any], engine: str) -> dict[str, Any] | None:
    fan = _get(orch, engine, "fanout")
    return fan if fan and "error" not in fan else None


def _cpu_cell(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "–"
    return " / ".join(f"{cpu.get(role, 0.0):.3f}" for role in ("engine", "worker", "redis"))


def main_table(results: dict[str, Any]) -> list[str]:
    """The side-by-side table: orch's two worker engines, the peers, ratios, targets."""
    orch, sizes = results["orch"], results["sizes"]
    fast, rq = orch.get("fast") or {}, orch.get("rq") or {}
    peers = _peers_ok(results)
    peer_heads = [PEER_LABELS.get(p["peer"], (p["peer"], ""))[0] for p in peers]
    head = ["metric", ENGINE_LABELS["fast"], ENGINE_LABELS["rq"], "fast / rq", *peer_heads,
            "fast vs peers", "--engine rq vs peers", "target"]
    dramatiq = _peer(results, "dramatiq")
    fan_f, fan_r = _fanout_ok(orch, "fast"), _fanout_ok(orch, "rq")

    def row(metric: str, f: float | None, r: float | None, digits: int, peer_field: str | None,
            target: str, lower_is_better: bool = False) -> list[str]:
        peer_cells = [_num(p.get(peer_field), digits) if peer_field else "–" for p in peers]
        return [metric, _num(f, digits), _num(r, digits), _ratio(f, r) if not lower_is_better else _ratio(f, r),
                *peer_cells, _vs_peers(results, f, peer_field) if peer_field else "–",
                _vs_peers(results, r, peer_field) if peer_field else "–", target]

    e2e = _get(fast, "sustained", "runs_per_s")
    e2e_target = (_target(e2e >= dramatiq["tasks_per_s"], f">= Dramatiq ({dramatiq['tasks_per_s']:,.0f}/s)")
                  if dramatiq and e2e else ">= Dramatiq's tasks/s (`--peers all`)")
    p50, p99 = _get(fast, "idle", "start_ms_p50"), _get(fast, "idle", "start_ms_p99")
    hop50, hop99 = _get(fast, "hop", "hop_ms_p50"), _get(fast, "hop", "hop_ms_p99")
    fan_rate = fan_f["item_runs_per_s"] if fan_f else None
    fan_ok = fan_rate >= 2000 and fan_rate >= 1.3 * dramatiq["tasks_per_s"] if fan_rate and dramatiq else None
    fan_target = _target(fan_ok, ">= 2,000/s and >= 1.3x Dramatiq" + (
        f" ({1.3 * dramatiq['tasks_per_s']:,.0f}/s)" if dramatiq else " (`--peers all`)"))
    first_item = _first_item(fan_f)
    fan_n_f = _get(fast, "fanout", "items") or 0
    fan_n_r = _get(rq, "fanout", "items") or 0
    fan_label = f"{fan_n_f:,}" if fan_n_f == fan_n_r or not fan_n_r else f"{fan_n_f:,} (rq: {fan_n_r:,})"
    rows = [
        row(f"end-to-end one-task workflows/s, 2 worker processes ({sizes['n']:,} events at once; peers: raw "
            "tasks/s, same N queued and drained)", e2e, _get(rq, "sustained", "runs_per_s"), 0, "tasks_per_s",
            e2e_target),
        row("idle latency p50, emit -> task start (ms; peers: enqueue -> start; orch / peer)", p50,
            _get(rq, "idle", "start_ms_p50"), 2, "idle_latency_ms_p50",
            _target(p50 <= 2 if p50 is not None else None, "<= 2 ms"), True),
        row("idle latency p99, emit -> task start (ms)", p99, _get(rq, "idle", "start_ms_p99"), 2,
            "idle_latency_ms_p99", _target(p99 <= 6 if p99 is not None else None, "<= 6 ms"), True),
        row(f"hop latency p50, task a done -> dependent b started ({sizes['hops']} chains at idle; ms)", hop50,
            _get(rq, "hop", "hop_ms_p50"), 2, None,
            _target(hop50 <= 2.5 if hop50 is not None else None, "<= 2.5 ms (Hatchet ~30 ms)"), True),
        row("hop latency p99 (ms)", hop99, _get(rq, "hop", "hop_ms_p99"), 2, None, "–", True),
        row(f"fan-out, {fan_label} no-op items in one run: item task runs/s (first item queued -> fan-in "
            "started; peers: raw tasks/s)", fan_rate, fan_r["item_runs_per_s"] if fan_r else None, 0,
            "tasks_per_s", fan_target),
        row("fan-out: first item started after the item list is known (ms; its task done -> item 0 started)",
            first_item, _first_item(fan_r), 0, None,
            _target(first_item <= 100 if first_item is not None else None, "<= 100 ms"), True),
        row("fan-out: whole run, created -> succeeded (s)", fan_f["run_duration_s"] if fan_f else None,
            fan_r["run_duration_s"] if fan_r else None, 2, None, "–", True),
        row("Redis commands per one-task workflow run (sustained, incl. its event)",
            _get(fast, "sustained", "commands_per_run"), _get(rq, "sustained", "commands_per_run"), 1, None,
            "reported", True),
        row("Redis commands per fan-out item task (whole run / items)", fan_f["commands_per_item"] if fan_f else None,
            fan_r["commands_per_item"] if fan_r else None, 1, None, "reported", True),
    ]
    cpu_rows = [
        ["CPU ms per run, sustained: engine / workers / redis", _cpu_cell(_get(fast, "sustained", "cpu_ms_per_task")),
         _cpu_cell(_get(rq, "sustained", "cpu_ms_per_task")), "–", *["–"] * len(peers), "–", "–", "reported"],
        ["CPU ms per item, fan-out: engine / workers / redis", _cpu_cell(fan_f["cpu_ms_per_task"] if fan_f else None),
         _cpu_cell(fan_r["cpu_ms_per_task"] if fan_r else None), "–", *["–"] * len(peers), "–", "–", "reported"],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (3 + len(peers)) + "---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows + cpu_rows]
    for engine in ("fast", "rq"):
        fan = _get(orch, engine, "fanout")
        if fan and "error" in fan:
            lines.append(f"\nFan-out with {ENGINE_LABELS[engine]} ({fan['items']:,} items): {fan['error']}.")
    return lines


def limits_table(results: dict[str, Any]) -> list[str]:
    """Where the time goes: cores busy and CPU per task of each process, Redis commands per task."""
    orch = results["orch"]
    lines = ["", "What limits it (cores busy of "
             f"{os.cpu_count()}, CPU per task in ms, Redis commands per task):", "",
             "| phase | tasks/s | engine cores (ms/task) | workers cores (ms/task) | redis cores (ms/task) "
             "| other processes, cores | commands/task | engine commits (tasks/commit) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for engine in ("fast", "rq"):
        data = orch.get(engine) or {}
        for phase, rate_key, cmd_key in (("sustained", "runs_per_s", "commands_per_run"),
                                         ("fanout", "item_runs_per_s", "commands_per_item")):
            ph = data.get(phase)
            if not ph or "error" in ph:
                continue
            busy, ms = ph["cpu_cores_busy"], ph["cpu_ms_per_task"]
            cells = [f"{busy.get(r, 0.0):.2f} ({ms.get(r, 0.0):.3f})" for r in ("engine", "worker", "redis")]
            cells.append(f"{busy.get('other', 0.0):.2f}")
            commits = ph.get("engine_commits")
            tasks = ph.get("runs") or ph.get("items")
            per_commit_txt = f"{commits:,} ({tasks / commits:,.1f})" if commits else "–"
            name = f"{ENGINE_LABELS[engine]}, {phase}" + (f" ({ph['items']:,} items)" if phase == "fanout" else "")
            lines.append(f"| {name} | {_num(ph[rate_key])} | {' | '.join(cells)} | {ph[cmd_key]:.1f} | {per_commit_txt} |")
    return lines


def notes(results: dict[str, Any]) -> list[str]:
    orch = results["orch"]
    lines = [""]
    for engine in ("fast", "rq"):
        data = orch.get(engine)
        if not data:
            continue
        label = ENGINE_LABELS[engine]
        idle, hop, sus, fan = data.get("idle"), data.get("hop"), data.get("sustained"), data.get("fanout") or {}
        lines.append(f"**{label}** ({data['workers']}):")
        if idle and hop and sus:
            lines += _latency_notes(idle, hop, sus)
        if fan and "error" not in fan:
            lines += _fanout_notes(fan)
    return lines


def _latency_notes(idle: dict[str, Any], hop: dict[str, Any], sus: dict[str, Any]) -> list[str]:
    return [
        f"- idle (ms, p50 / p99): emit -> run created and task queued (engine) {idle['created_ms_p50']:.2f} / "
        f"{idle['created_ms_p99']:.2f}; queued -> task started (queue + worker) {idle['dispatch_ms_p50']:.2f} / "
        f"{idle['dispatch_ms_p99']:.2f}; task started -> run succeeded {idle['finish_ms_p50']:.2f} / "
        f"{idle['finish_ms_p99']:.2f}; emit -> run succeeded {idle['succeeded_ms_p50']:.2f} / "
        f"{idle['succeeded_ms_p99']:.2f}.",
        f"- hop (ms, p50 / p99): a done -> b queued (engine) {hop['engine_ms_p50']:.2f} / {hop['engine_ms_p99']:.2f}; "
        f"b queued -> b started (queue + worker) {hop['pickup_ms_p50']:.2f} / {hop['pickup_ms_p99']:.2f}; "
        f"max hop {hop['hop_ms_max']:.2f}.",
        f"- sustained: {sus['runs']:,} runs in {sus['seconds']:.2f} s; {sus['engine_commits']:,} engine commits; "
        f"background (idle) {sus['background_commands_per_s']:,.0f} commands/s; commands per run: "
        + ", ".join(f"{k} {v}" for k, v in sus["commands_per_run_by_command"].items()) + ".",
    ]


def _fanout_notes(fan: dict[str, Any]) -> list[str]:
    lines = [
        f"- fan-out ({fan['items']:,} items): emit -> items task done {fan['emit_to_items_done_s']:.2f} s; "
        f"items done -> first item queued {fan['items_done_to_first_item_queued_ms']:.0f} ms (all queued "
        f"within {fan['items_queued_spread_ms']:.0f} ms); first item queued -> first item started "
        f"{fan['first_item_queued_to_started_ms']:,.0f} ms (the engine's commit that queues every item); first "
        f"item started -> last item done {fan['item_runs_per_s_first_started_to_last_done']:,.0f} items/s; last "
        f"item done -> fan-in queued {fan['last_item_done_to_fan_in_queued_ms']:.0f} ms, -> started "
        f"{fan['fan_in_queued_to_started_ms']:.0f} ms later.",
        f"- fan-out engine: {fan['engine_commits']:,} commits for {fan['results_records']:,} results records "
        f"({fan['records_per_item']:.1f} per item, {fan['records_per_engine_commit'] or 0:,.0f} per commit); "
        f"{fan['engine_ms_per_commit_wall'] or 0:,.1f} ms per commit (wall), {fan['engine_cpu_ms_per_commit'] or 0:,.1f} "
        f"ms engine CPU per commit; "
        f"at most {fan['max_results_not_yet_read']:,} records written but not yet read by the engine, "
        f"{fan['max_jobs_queued']:,} jobs queued.",
        "- fan-out commands per item: " + ", ".join(f"{k} {v}" for k, v in fan["commands_per_item_by_command"].items())
        + "; redis us per item by command: "
        + ", ".join(f"{k} {v}" for k, v in fan["redis_usec_per_item_by_command"].items()) + ".",
    ]
    timeline = [t for t in fan.get("timeline") or [] if t["t_s"] >= 1.0]
    if timeline:
        lines.append("- fan-out timeline, every 2 s (time; results records the engine read; engine commits in the "
                     "interval, ms each; cores busy engine / workers / redis / other processes): " + "; ".join(
                         f"{t['t_s']:.0f} s: {t['records_read']:,} rec, {t['engine_commits']:.0f} commits"
                         + (f" ({t['ms_per_commit']:.0f} ms)" if t["ms_per_commit"] else "")
                         + f", {t['engine_cores']:.2f}/{t['worker_cores']:.2f}/{t['redis_cores']:.2f}/"
                         f"{t.get('other_cores') or 0:.2f}" for t in timeline))
    return lines


def ingest_table(results: dict[str, Any]) -> list[str]:
    orch = results["orch"]
    ingest = orch["ingest"]
    parallel = ingest.get("parallel")
    rows = [
        (f"ingest, Client.emit_many, {ingest['chunk']:,}/call, one process (events/s)", _num(ingest["events_per_s"]),
         "reported (the client's CPU and Redis's take turns)" if parallel else
         _target(ingest["events_per_s"] >= 50_000, ">= 50,000/s"), ""),
        *([(f"ingest, Client.emit_many, {ingest['chunk']:,}/call, {parallel['processes']} processes at once "
            "(events/s)", _num(parallel["events_per_s"]), _target(parallel["events_per_s"] >= 50_000, ">= 50,000/s"),
            "")] if parallel else []),
        ("Redis commands per event (ingest)", _num(ingest["commands_per_event"], 2), "reported", ""),
        (f"Redis memory per retained event ({ingest['event_json_bytes']} B JSON, with dedup key; bytes)",
         _num(ingest["memory_bytes_per_event"]), "reported", ""),
        *([_webhook_row(orch["webhook"])] if "webhook" in orch else []),
    ]
    lines = ["", "| ingest and API | orch | target |", "|---|---:|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    lines += ["", f"Ingest: CPU per event, client (this process) {ingest['cpu_us_per_event']['bench']:.1f} us, "
              f"redis-server {ingest['cpu_us_per_event']['redis']:.1f} us; memory per event "
              f"{ingest['memory_bytes_per_event']:.0f} B, of which the stream entry "
              f"{ingest['memory_bytes_per_event_stream_entry']:.0f} B (the rest: its dedup key). "
              "Redis commands per event: "
              + ", ".join(f"{k} {v}" for k, v in ingest["commands_per_event_by_command"].items()) + "."]
    if parallel:
        lines += ["", f"Ingest from {parallel['processes']} processes: client CPU per event "
                  f"{parallel['client_cpu_us_per_event']:.1f} us (summed over the processes), redis-server "
                  f"{parallel['redis_cpu_us_per_event']:.1f} us."]
    lines += ["", _webhook_note(orch["webhook"])] if "webhook" in orch else []
    return lines


def peers_note(results: dict[str, Any]) -> list[str]:
    peers = results.get("peers") or []
    if not peers:
        return ["", f"Peers: {results.get('peers_error') or 'skipped (--skip-peers)'}."]
    out = []
    for row in peers:
        if "error" in row:
            out.append(f"{row['peer']}: error: {row['error']}")
        else:
            out.append(f"{PEER_LABELS.get(row['peer'], (row['peer'], ''))[0]} {row['tasks']:,} tasks")
    return ["", "Peers (../shared/peers/run.sh, 2 worker processes, same no-op task, same N; RQ fork: N/5): "
            + "; ".join(out) + "."]


def maintenance_table(results: dict[str, Any]) -> list[str]:
    """One engine maintenance pass with few and with many dedup keys and retained finished runs."""
    m = results["orch"]["maintenance"]
    small, large = m["small"], m["large"]

    def size(data: dict[str, Any]) -> str:
        return f"{data['dedup_keys']:,} dedup keys, {data['finished_runs']:,} finished runs"

    def row(metric: str, field: str, digits: int, ratio: str = "–") -> str:
        return f"| {metric} | {_num(small[field], digits)} | {_num(large[field], digits)} | {ratio} |"

    flat = m["time_ratio"] <= 1.5
    lines = ["", f"| maintenance pass, Engine.maintain(force=True) | {size(small)} | {size(large)} | large / small |",
             "|---|---:|---:|---:|",
             row(f"time per pass, median of {small['passes']} (ms)", "ms_per_pass_median", 2,
                 _target(flat, f"{m['time_ratio']:.2f}x (flat: <= 1.5x)")),
             f"| time per pass, min / max (ms) | {small['ms_per_pass_min']:.2f} / {small['ms_per_pass_max']:.2f} "
             f"| {large['ms_per_pass_min']:.2f} / {large['ms_per_pass_max']:.2f} | – |",
             row("engine CPU per pass, median (ms; this process)", "engine_cpu_ms_per_pass_median", 2,
                 f"{m['cpu_ratio']:.2f}x"),
             row("Redis server time per pass (us, INFO commandstats)", "redis_us_per_pass", 0,
                 f"{m['redis_time_ratio']:.2f}x"),
             row("Redis commands per pass", "commands_per_pass", 1),
             row("round trips per pass (INFO total_reads_processed)", "round_trips_per_pass", 1),
             row("Redis used_memory (MB)", "used_memory_mb", 1, f"{m['memory_ratio']:.1f}x"),
             row("keys in Redis (DBSIZE)", "keys", 0)]
    lines += ["", f"Maintenance: {small['running_runs']} running runs at both sizes (the stall scan reads them "
              "each forced pass); commands per pass, large size: "
              + ", ".join(f"{k} {v:g}" for k, v in large["commands_per_pass_by_command"].items())
              + "; Redis us per pass by command, small / large: "
              + ", ".join(f"{k} {small['redis_us_per_pass_by_command'].get(k, 0):g} / {v:g}"
                          for k, v in large["redis_us_per_pass_by_command"].items()) + "."]
    return lines


def table(results: dict[str, Any]) -> str:
    orch = results["orch"]
    extra = maintenance_table(results) if "maintenance" in orch else []
    extra += matching_table(orch["matching"]) if "matching" in orch else []
    extra += capacity.capacity_table(orch["capacity"]) if "capacity" in orch else []
    extra += curves.curves_table(orch["curves"]) if "curves" in orch else []
    if not any(engine in orch for engine in ENGINES):  # --only ingest, webhook, maintenance, matching, capacity, curves
        hook = orch.get("webhook")
        lines = ["| metric | orch | target |", "|---|---:|---|", f"| {' | '.join(_webhook_row(hook)[:3])} |",
                 "", _webhook_note(hook)] if hook else []
        lines += ingest_table(results) if "ingest" in orch else []
        return "\n".join(lines + extra).strip("\n")
    lines = main_table(results) + peers_note(results) + limits_table(results) + notes(results)
    return "\n".join(lines + (ingest_table(results) if "ingest" in orch else []) + extra)
