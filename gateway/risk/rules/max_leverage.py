"""Gross leverage: projected notional of every position over equity, and the symbol's
leverage setting itself (futures), both at most the limit."""

from ...model import Violation
from .base import Context, pct, rule


@rule("max_leverage", rail="account.max_leverage")
def max_leverage(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    # 1x is no leverage at all; a gross limit below 1 is enforced by the notional test below.
    if p.leverage > 1 and p.leverage > rail.limit:
        return Violation(
            "max_leverage",
            f"max_leverage: {p.symbol} is set to {p.leverage}x leverage, limit {rail.limit}x",
            limit=rail.limit,
            value=p.leverage,
        )
    value = p.gross_notional_after / p.equity
    if value <= rail.limit:
        return None
    room = rail.limit * p.equity - ctx.portfolio.gross_notional
    return Violation(
        "max_leverage",
        f"max_leverage: gross leverage would be {pct(value)}x, limit {rail.limit}x",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room, committed=False),
    )
