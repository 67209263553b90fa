"""Capital committed across all symbols, open orders included, as % of equity."""

from ...model import Violation
from .base import HUNDRED, Context, pct, rule


@rule("max_exposure_pct", rail="account.max_exposure_pct", clampable=True)
def max_exposure_pct(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    value = ctx.pct_of_equity(p.committed_after)
    if value <= rail.limit:
        return None
    room = rail.limit / HUNDRED * p.equity - ctx.portfolio.committed
    return Violation(
        "max_exposure_pct",
        f"max_exposure_pct: total exposure would be {pct(value)}% of equity, limit {rail.limit}%",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room),
    )
