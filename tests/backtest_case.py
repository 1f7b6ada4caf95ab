"""One rule change and the events to backtest it on, shared by the unit and the end-to-end tests of
`orch rules backtest`: the current rules, the proposed ones, and what each event should make of them.

    orders      both sets start it for every order; the proposed one renders priority from the total,
                so the order over 100 (o-2) changes parameters; o-5 has no id: its parameters fail to
                render, a failing run in both sets, unchanged
    eu-orders   proposed: also uk orders (o-2, o-4 newly start)
    refunds     removed: r-1 no longer starts a run
    vip-orders  added: o-2 (vip) newly starts one
"""

from __future__ import annotations

from typing import Any

RULES = """\
    rules:
      - {name: orders, type: order.created, workflow: ship, params: {order_id: "{{ data.id }}", priority: low}}
      - {name: eu-orders, type: order.created, match: {data.region: eu}, workflow: audit,
         params: {region: "{{ data.region }}"}}
      - {name: refunds, type: order.refunded, workflow: audit, params: {region: "{{ data.region }}"}}
"""
PROPOSED = """\
    rules:
      - name: orders
        type: order.created
        workflow: ship
        params: {order_id: "{{ data.id }}", priority: "{{ 'high' if data.total > 100 else 'low' }}"}
      - {name: eu-orders, type: order.created, match: {data.region: [eu, uk]}, workflow: audit,
         params: {region: "{{ data.region }}"}}
      - {name: vip-orders, type: order.created, match: {data.vip: true}, workflow: audit,
         params: {region: "{{ data.region }}"}}
"""
FLOWS = {"backtest_flows": """\
    from orchestrator import task, workflow

    @task
    def shipped(order_id: int, priority: str) -> None:
        return None

    @task
    def audited(region: str) -> None:
        return None

    @workflow
    def ship(order_id: int, priority: str = "low"):
        shipped(order_id, priority)

    @workflow
    def audit(region: str):
        audited(region)
    """}
EVENTS: list[tuple[str, str, dict[str, Any]]] = [  # (id, type, data), in stream order
    ("o-1", "order.created", {"id": 1, "region": "eu", "total": 50}),
    ("o-2", "order.created", {"id": 2, "region": "uk", "total": 500, "vip": True}),
    ("o-3", "order.created", {"id": 3, "region": "us", "total": 20}),
    ("r-1", "order.refunded", {"region": "eu"}),
    ("o-4", "order.created", {"id": 4, "region": "uk", "total": 10}),
    ("o-5", "order.created", {"region": "eu", "total": 10}),
]
SOURCE = "/shop"

# per rule: (current runs, current failing, proposed runs, proposed failing, new, gone, changed)
EXPECTED = {
    "eu-orders": (2, 0, 4, 0, 2, 0, 0),
    "orders": (5, 1, 5, 1, 0, 0, 1),
    "refunds": (1, 0, 0, 0, 0, 1, 0),
    "vip-orders": (0, 0, 1, 0, 1, 0, 0),
}
EXAMPLE_IDS = {  # per rule and kind: the event ids of its examples
    "eu-orders": {"new": ["o-2", "o-4"]},
    "orders": {"changed": ["o-2"]},
    "refunds": {"gone": ["r-1"]},
    "vip-orders": {"new": ["o-2"]},
}


def summary(report: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """A report's per-rule counts, in EXPECTED's shape."""
    return {r["rule"]: (r["current"]["runs"], r["current"]["errors"], r["proposed"]["runs"], r["proposed"]["errors"],
                        r["new"], r["gone"], r["changed"]) for r in report["rules"]}


def example_ids(report: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return {r["rule"]: {kind: [e["event_id"] for e in found] for kind, found in r["examples"].items()}
            for r in report["rules"]}
