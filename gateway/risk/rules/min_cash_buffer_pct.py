"""Cash buffer: cash after every pending buy and this buy (each at its capital: notional over
leverage) must stay at or above ``min_cash_buffer_pct`` of equity. Sells never spend cash."""

from ...model import Side, Violation
from .base import HUNDRED, Context, num, pct, rule


@rule("min_cash_buffer_pct", rail="account.min_cash_buffer_pct", clampable=True)
def min_cash_buffer_pct(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    if p.side is not Side.BUY:
        return None
    available = ctx.portfolio.cash - ctx.portfolio.pending_buy_committed
    after = available - p.notional / p.leverage
    value = ctx.pct_of_equity(after)
    if value >= rail.limit:
        return None
    room = available - rail.limit / HUNDRED * p.equity
    return Violation(
        "min_cash_buffer_pct",
        f"min_cash_buffer_pct: cash after pending buys and this one would be {pct(value)}% of equity, "
        f"minimum {num(rail.limit)}%",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room),
    )
