"""Leverage cap per asset class, two ways: the symbol's leverage setting (futures) must be at
most the cap, and the class's projected gross notional over equity must be at most the cap.
With a cap of 1.0 the class can hold at most its equity's worth, unlevered."""

from ...model import Violation
from .base import Context, num, pct, rule


@rule("asset_class_leverage", rail="asset_classes.{asset_class}.leverage", clampable=True)
def asset_class_leverage(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    # 1x is no leverage at all; a cap below 1 is enforced by the gross notional test below.
    if p.leverage > 1 and p.leverage > rail.limit:
        return Violation(
            "asset_class_leverage",
            f"asset_class_leverage: {p.symbol} is set to {num(p.leverage)}x leverage, "
            f"{p.asset_class.value} limit {num(rail.limit)}x",
            limit=rail.limit,
            value=p.leverage,
        )
    before = ctx.portfolio.gross_by_class[p.asset_class]
    value = (before + p.notional_delta) / p.equity
    if value <= rail.limit:
        return None
    return Violation(
        "asset_class_leverage",
        f"asset_class_leverage: {p.asset_class.value} gross leverage would be {pct(value)}x, limit {num(rail.limit)}x",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(rail.limit * p.equity - before, committed=False),
    )
