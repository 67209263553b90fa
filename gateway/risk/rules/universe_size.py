"""Distinct symbols of one asset class with a position or a pending order, counting this
order's symbol when it is new: a system trading a universe of N symbols cannot wander
outside N."""

from decimal import Decimal

from ...model import Violation
from .base import Context, num, rule


@rule("universe_size", rail="asset_classes.{asset_class}.universe_size")
def universe_size(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    if not p.new_symbol:
        return None
    value = ctx.portfolio.occupied_by_class[p.asset_class] + 1
    if value <= rail.limit:
        return None
    return Violation(
        "universe_size",
        f"universe_size: {p.symbol} would be {p.asset_class.value} symbol {value}, limit {num(rail.limit)}",
        limit=rail.limit,
        value=Decimal(value),
    )
