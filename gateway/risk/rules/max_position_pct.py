"""Capital committed to one symbol, open orders included, as % of equity."""

from ...model import Violation
from .base import HUNDRED, Context, pct, rule


@rule("max_position_pct", rail="account.max_position_pct", clampable=True)
def max_position_pct(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    value = ctx.pct_of_equity(p.symbol_committed_after)
    if value <= rail.limit:
        return None
    room = rail.limit / HUNDRED * p.equity - p.symbol_committed_before
    return Violation(
        "max_position_pct",
        f"max_position_pct: {p.symbol} would be {pct(value)}% of equity, limit {rail.limit}%",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room),
    )
