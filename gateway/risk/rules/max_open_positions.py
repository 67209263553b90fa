"""Symbols with a position or a pending order (reservations included), counting this
order's symbol when it is new."""

from decimal import Decimal

from ...model import Violation
from .base import Context, num, rule


@rule("max_open_positions", rail="account.max_open_positions")
def max_open_positions(ctx: Context, rail) -> Violation | None:
    if not ctx.projection.new_symbol:
        return None
    value = ctx.portfolio.occupied + 1
    if value <= rail.limit:
        return None
    return Violation(
        "max_open_positions",
        f"max_open_positions: {ctx.intent.symbol} would be open position {value}, limit {num(rail.limit)}",
        limit=rail.limit,
        value=Decimal(value),
    )
