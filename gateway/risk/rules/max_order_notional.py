"""Fat finger: the notional of one order (qty x price x multiplier), valued at the worst of
the reference price and the order's own prices."""

from decimal import ROUND_DOWN

from ...model import Violation
from .base import QTY_STEP, Context, num, rule


@rule("max_order_notional", rail="account.max_order_notional", clampable=True)
def max_order_notional(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    if p.notional <= rail.limit:
        return None
    per_unit = p.notional / p.qty if p.qty > 0 else None
    return Violation(
        "max_order_notional",
        f"max_order_notional: {p.symbol} order notional {num(p.notional.quantize(QTY_STEP))} is above the "
        f"limit {num(rail.limit)}",
        limit=rail.limit,
        value=p.notional,
        max_qty=(rail.limit / per_unit).quantize(QTY_STEP, rounding=ROUND_DOWN) if per_unit else None,
    )
