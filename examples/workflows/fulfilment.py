"""Fulfilment: an order ships once it is paid and a person has released it. Nothing holds a worker meanwhile.

    pack ──> payment ──> release ──> ship
             waits for   waits for
             payment.    `orch runs approve`
             received

`payment` is a wait step: when `pack` is done the run waits (state `waiting`) for a `payment.received`
event of the same order; the event's data becomes the step's result. `release` is an approval step.
Started by rules/fulfilment.yaml on `order.placed` events:

    orch emit order.placed --data '{"order_id": "F-1", "amount": 120}' --project examples
    orch emit payment.received --data '{"order_id": "F-1", "amount": 120, "currency": "EUR"}' --project examples
    orch runs approve RUN_ID --task release --data '{"note": "address checked"}' --project examples

A payment that arrives before the run waits for it (while `pack` runs) is found too: the step looks back
in the events stream when it starts waiting (ORCH_WAIT_LOOKBACK_S).
"""

from orchestrator import approval, task, wait_for_event, workflow


@task
def pack(order_id: str) -> dict:
    """Pack the order (here: name its parcel)."""
    return {"order_id": order_id, "parcel": f"parcel-{order_id}"}


@task
def ship(parcel: dict, payment: dict, release: dict) -> str:
    """Hand the parcel to the carrier, with what the payment and the release said."""
    note = release.get("note", "no note")
    return f"{parcel['parcel']} shipped: paid {payment['amount']} {payment['currency']} ({note})"


@workflow(timeout_s=7 * 86400)
def fulfil_order(order_id: str, amount: float):
    parcel = pack(order_id)
    payment = wait_for_event(
        "payment", "payment.received",
        match={"data.currency": ["EUR", "USD"]},                           # a rule's match: pattern
        correlate="data.order_id == params.order_id && data.amount >= params.amount",  # CEL
        timeout_s=3 * 86400, on_timeout="fail", after=[parcel])
    release = approval("release", timeout_s=86400,
                       on_timeout={"default": {"note": "released automatically after a day"}}, after=[payment])
    ship(parcel, payment, release)
