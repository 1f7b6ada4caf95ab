"""Orders: charge the payment and reserve the stock in parallel; confirm once both are done.

    charge_payment ──┐
                     ├──> send_confirmation
    reserve_stock  ──┘

The order is deduced from the calls: send_confirmation receives both results, so it runs after both.
"""

from orchestrator import task, workflow


@task
def charge_payment(order_id: str, amount: float) -> dict:
    """Charge the customer (here: validate the amount and return a payment record)."""
    if amount <= 0:
        raise ValueError(f"cannot charge a non-positive amount: {amount}")
    return {"order_id": order_id, "payment_id": f"pay-{order_id}", "charged": round(amount, 2)}


@task
def reserve_stock(order_id: str, items: list | None = None) -> dict:
    """Reserve the ordered items."""
    items = items or []
    return {"order_id": order_id, "reserved": len(items), "items": items}


@task
def send_confirmation(order_id: str, payment: dict, stock: dict) -> str:
    """Tell the customer; needs both the payment and the reservation."""
    return f"order {order_id}: charged {payment['charged']:.2f}, reserved {stock['reserved']} item(s)"


@workflow
def process_order(order_id: str, amount: float, items: list | None = None):
    payment = charge_payment(order_id, amount)
    stock = reserve_stock(order_id, items)
    send_confirmation(order_id, payment, stock)
