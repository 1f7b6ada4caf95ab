"""The matching step alone: RuleIndex.matching against the naive loop over every rule, in one process.

    .venv/bin/python bench/run.py --only matching      this phase alone (~1 minute; no Redis, no processes)

Rules: a realistic mix over many event types, a fifth of them on busy types that half the events have, a
few glob rules (svc3.*): exact values (regions, customer ids, tenants), prefixes, suffixes, numeric ranges,
anything-but, exists, $or, and conditions on arrays of objects. Events: CloudEvents with nested data (a
customer object, an array of items), each of the type of a random rule. Two mixes: "spread" (the busy types grow in number with the rules, so
each type keeps about as many rules: the flatness curve) and "hot" (eight busy order.* types take a fifth
of all rules and 2% are order.* globs: about 450 rules on each busy type at 10,000, five of them matching
an event). For 10, 1,000 and 10,000 rules it reports events/s and microseconds per event of
`RuleIndex.matching` (view + anchor lookup + full test of the candidates) and of the naive loop (`match()`
on every rule, the view built once per event), their ratio, the candidates tested and rules matched per
event, and the cost per event at each size relative to 10 rules. The two must agree on every event
measured (checked). Timings: best of REPEATS passes over the same events, in CPU time of this
process (time.process_time: what matching costs, whatever else the shared machine runs) and in wall-clock
time (what this run got).

It also measures the engine's own planning step, `plan_event` (engine/plan.py), on PLAN_EVENTS of the events:
sampled (ORCH_EXPLAIN_SAMPLE=1, the default: the index's matches plus at most MAX_RULES of the other rules
explained) and not sampled (the matches only), in CPU time; both plan the same runs (checked).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import task, workflow
from orchestrator.engine.plan import plan_event
from orchestrator.events.envelope import Event
from orchestrator.project import Project
from orchestrator.rules.match import RuleIndex, event_view, match
from orchestrator.rules.model import Match, Rule, RuleConfig

SIZES = (10, 1_000, 10_000)
REPEATS = 3
EVENTS = 4_000            # events per pass of the indexed path
NAIVE_BUDGET_S = 1.5      # the naive loop gets at least 50 events and about this much time per pass
PLAN_EVENTS = 1_000       # events per pass of the engine's planning step
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1", "sa-east-1", "ca-central-1",
           "af-south-1"]
CHANNELS = ["web", "app", "phone", "store", "partner", "test"]
TIERS = ["free", "silver", "gold", "platinum"]
VERBS = ["created", "updated", "paid", "shipped", "cancelled", "refunded", "failed", "approved"]


def _types(n_rules: int) -> list[str]:
    domains = max(2, n_rules // 160)
    return [f"{domain}.{verb}" for domain in [f"svc{d}" for d in range(domains)] + ["order"] for verb in VERBS]


def _busy(types: list[str], n_rules: int, hot: bool) -> list[str]:
    """The busy types: order.* (hot), or the types of one domain in ten (spread: more of them with more rules)."""
    if hot:
        return types[-len(VERBS):]
    return [t for t in types if t.startswith("order.") or int(t.split(".")[0][3:] or 0) % 10 == 0]


def _glob(rng: random.Random, i: int, n_rules: int, hot: bool) -> str | None:
    if hot:
        return "order.*" if i % 50 == 0 else None
    return f"svc{rng.randrange(max(2, n_rules // 160))}.*" if i % 500 == 0 else None


def _condition(rng: random.Random, kind: int, i: int) -> dict[str, Any]:
    customer = f"C-{rng.randrange(2000):04d}"
    if kind < 30:
        return {"data.region": rng.sample(REGIONS, rng.choice((1, 2))), "data.customer.tier": rng.choice(TIERS)}
    if kind < 45:
        return {"data.customer.id": customer, "data.amount": {"numeric": [">", rng.randrange(50)]}}
    if kind < 58:
        return {"data.items.sku": {"prefix": f"SKU-{rng.randrange(300):03d}"},
                "data.amount": {"numeric": [">=", 10, "<", rng.randrange(100, 900)]}}
    if kind < 68:
        return {"tenant": f"t{rng.randrange(400)}", "data.channel": {"anything-but": ["test", "partner"]}}
    if kind < 78:
        return {"$or": [{"data.customer.id": customer}, {"data.customer.email": {"suffix": f"@corp{i % 97}.test"}}]}
    if kind < 86:
        return {"data": {"customer": {"id": [customer], "email": [{"exists": True}]}, "coupon": [{"exists": False}]}}
    if kind < 93:
        return {"data.items": {"sku": [f"SKU-{rng.randrange(300):03d}-{rng.randrange(10)}"],
                               "qty": {"numeric": [">", 1]}}}
    return {"data.amount": {"numeric": [">", rng.randrange(900)]}, "data.channel": rng.choice(CHANNELS)}


def make_rules(n: int, hot: bool, seed: int = 7) -> list[Rule]:
    """`n` rules of the mix: a fifth on the busy types, a few on globs."""
    rng = random.Random(seed)
    types = _types(n)
    busy = _busy(types, n, hot)
    rules = []
    for i in range(n):
        kind = rng.randrange(100)
        glob = _glob(rng, i, n, hot)
        if glob is not None:
            event_type: str = glob
        elif rng.random() < 0.2:
            event_type = rng.choice(busy)
        else:
            event_type = rng.choice(types)
        config = RuleConfig(name=f"rule-{i}", type=event_type, workflow="w", match=_condition(rng, kind, i),
                            source="/shop/*" if kind % 7 == 0 else None)
        rules.append(Rule.from_config(config))
    return rules


def make_events(n: int, rules: list[Rule], seed: int = 11) -> list[Event]:
    """`n` order-like events, each of the type of a random rule (a type with more rules has more events)."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        items = [{"sku": f"SKU-{rng.randrange(300):03d}-{rng.randrange(10)}", "qty": rng.randrange(1, 5),
                  "price": round(rng.uniform(1, 200), 2)} for _ in range(rng.randrange(1, 4))]
        customer = {"id": f"C-{rng.randrange(2000):04d}", "tier": rng.choice(TIERS),
                    "email": f"user{i}@corp{rng.randrange(97)}.test"}
        data = {"order_id": f"O-{i}", "region": rng.choice(REGIONS), "amount": rng.randrange(1, 1000),
                "channel": rng.choice(CHANNELS), "customer": customer, "items": items,
                "tags": rng.sample(["new", "vip", "gift", "promo"], 2)}
        if rng.random() < 0.3:
            data["coupon"] = f"GIFT-{i}"
        event_type = rng.choice(rules).types[0].replace("*", rng.choice(VERBS))
        events.append(Event.new(event_type, data, source=f"/shop/{data['region']}", id=f"e-{i}",
                                extensions={"tenant": f"t{rng.randrange(400)}"}))
    return events


def _naive(rules: list[Rule]) -> Callable[[Event], list[Rule]]:
    def run(event: Event) -> list[Rule]:
        view = event_view(event)
        return [rule for rule in rules if match(rule, event, view).outcome is Match.FULL]
    return run


@task
def noted() -> None:
    """The one task of the workflow every bench rule starts."""


@workflow
def w() -> None:
    noted()


def _plan_rates(rules: list[Rule], index: RuleIndex, events: list[Event]) -> dict[str, Any]:
    """The engine's planning step, sampled and not, in events/s of CPU time; they must plan the same runs."""
    project = Project(Path("."), rules=rules, workflows={"w": w}, index=index)
    events = events[:PLAN_EVENTS]
    for event in events[:200]:
        if plan_event(project, event, sample=1.0)[0] != plan_event(project, event, sample=0.0)[0]:
            raise RuntimeError(f"plan_event: sampled and unsampled plan different runs for event {event.id}")
    sampled, _ = _best_rates(lambda e: plan_event(project, e, sample=1.0)[0], events)
    fast, _ = _best_rates(lambda e: plan_event(project, e, sample=0.0)[0], events)
    return {"plan_sampled_events_per_s": round(sampled), "plan_unsampled_events_per_s": round(fast)}


def _best_rates(step: Callable[[Event], object], events: list[Event]) -> tuple[float, float]:
    """Events per second of CPU time and of wall-clock time, each the best of REPEATS passes."""
    cpu = wall = float("inf")
    for _ in range(REPEATS):
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for event in events:
            step(event)
        cpu = min(cpu, time.process_time() - cpu_started)
        wall = min(wall, time.perf_counter() - wall_started)
    return len(events) / max(cpu, 1e-9), len(events) / wall


def _naive_sample(rules: list[Rule], events: list[Event]) -> list[Event]:
    """As many events as the naive loop goes through in about NAIVE_BUDGET_S (at least 50)."""
    run = _naive(rules)
    started, count = time.perf_counter(), 0
    while count < len(events) and (count < 50 or time.perf_counter() - started < NAIVE_BUDGET_S / REPEATS):
        run(events[count])
        count += 1
    return events[:count]


def measure_size(n_rules: int, hot: bool) -> dict[str, Any]:
    rules = make_rules(n_rules, hot)
    events = make_events(EVENTS, rules)
    index = RuleIndex(rules)
    naive = _naive(rules)
    for event in events[:500]:  # the fast path must give exactly the naive loop's answer
        if [r.name for r in index.matching(event)] != [r.name for r in naive(event)]:
            raise RuntimeError(f"matching: the index and the naive loop disagree on event {event.id}")
    matches = sum(len(index.matching(event)) for event in events)
    indexed, indexed_wall = _best_rates(index.matching, events)
    sample = _naive_sample(rules, events)
    naive_rate, naive_wall = _best_rates(naive, sample)
    per_type = [len(index.candidates(t)) for t in {e.type for e in events}]
    tested = sum(len(index._anchor_index(e.type).candidates(event_view(e))) for e in events)
    return {"rules": n_rules, "events": len(events), "naive_events": len(sample),
            "matches_per_event": round(matches / len(events), 2),
            "candidates_per_event": round(tested / len(events), 2),
            "rules_per_event_type_mean": round(sum(per_type) / len(per_type), 1),
            "indexed_events_per_s": round(indexed), "naive_events_per_s": round(naive_rate, 1),
            "indexed_events_per_s_wall": round(indexed_wall), "naive_events_per_s_wall": round(naive_wall, 1),
            "indexed_us_per_event": round(1e6 / indexed, 2), "naive_us_per_event": round(1e6 / naive_rate, 1),
            "ratio": round(indexed / naive_rate, 1), **_plan_rates(rules, index, events)}


def phase_matching(log: Callable[[str], None]) -> dict[str, Any]:
    """The matching benchmark, both mixes at every size; flatness is cost per event relative to 10 rules."""
    out: dict[str, Any] = {"target_events_per_s": 20_000}
    for mix in ("spread", "hot"):
        sizes = []
        for n in SIZES:
            result = measure_size(n, hot=mix == "hot")
            log(f"matching ({mix}): {n:,} rules: indexed {result['indexed_events_per_s']:,} events/s of CPU time, "
                f"naive {result['naive_events_per_s']:,} events/s ({result['ratio']:,}x); plan_event sampled "
                f"{result['plan_sampled_events_per_s']:,}, not sampled {result['plan_unsampled_events_per_s']:,}")
            sizes.append(result)
        base = sizes[0]["indexed_us_per_event"]
        for result in sizes:
            result["indexed_cost_vs_smallest"] = round(result["indexed_us_per_event"] / base, 2)
        out[mix] = sizes
    return out


def matching_table(data: dict[str, Any]) -> list[str]:
    """The matching benchmark as Markdown tables, one per mix."""
    return _mix_table("spread", data["spread"], data) + _mix_table("hot", data["hot"], data)


def _mix_table(mix: str, sizes: list[dict[str, Any]], data: dict[str, Any]) -> list[str]:
    head = " | ".join(f"{s['rules']:,} rules" for s in sizes)
    big = sizes[-1]
    ok = "yes" if big["indexed_events_per_s"] >= data["target_events_per_s"] else "NO"

    def row(label: str, key: str, fmt: str = "{:,}") -> str:
        return f"| {label} | " + " | ".join(fmt.format(s[key]) for s in sizes) + " |"

    return ["", f"| matching step, {mix} mix (one process) | {head} |", "|---|" + "---:|" * len(sizes),
            row("RuleIndex.matching, events/s (CPU time)", "indexed_events_per_s"),
            row("naive loop (match() on every rule), events/s (CPU time)", "naive_events_per_s"),
            row("RuleIndex.matching, events/s (wall clock)", "indexed_events_per_s_wall"),
            row("naive loop, events/s (wall clock)", "naive_events_per_s_wall"),
            row("ratio indexed / naive", "ratio", "{:,}x"),
            row("engine's plan_event, sampled (the default), events/s (CPU time)", "plan_sampled_events_per_s"),
            row("engine's plan_event, not sampled, events/s (CPU time)", "plan_unsampled_events_per_s"),
            row("indexed, us of CPU per event", "indexed_us_per_event"),
            row("naive, us of CPU per event", "naive_us_per_event"),
            row("indexed cost per event vs 10 rules (flatness)", "indexed_cost_vs_smallest", "{:.2f}x"),
            row("rules listening to an event's type (mean)", "rules_per_event_type_mean"),
            row("rules the index leaves to test per event (mean)", "candidates_per_event"),
            row("rules matched per event (mean)", "matches_per_event"),
            "", f"Matching, {mix} mix: {big['rules']:,} rules at {big['indexed_events_per_s']:,} events/s of CPU time (target "
            f">= {data['target_events_per_s']:,}: {ok}); indexed and naive agreed on every event checked; "
            f"best of {REPEATS} passes over {sizes[0]['events']:,} events (naive: "
            + ", ".join(f"{s['naive_events']:,}" for s in sizes) + " events)."]
