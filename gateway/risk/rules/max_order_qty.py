"""Fat finger: the quantity of one order (units, or contracts for options)."""

from ...model import Violation
from .base import Context, num, rule


@rule("max_order_qty", rail="account.max_order_qty", clampable=True)
def max_order_qty(ctx: Context, rail) -> Violation | None:
    qty = ctx.projection.qty
    if qty <= rail.limit:
        return None
    return Violation(
        "max_order_qty",
        f"max_order_qty: {ctx.intent.symbol} order quantity {num(qty)} is above the limit {num(rail.limit)}",
        limit=rail.limit,
        value=qty,
        max_qty=rail.limit,
    )
