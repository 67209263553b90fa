"""Capital committed to the order's asset class, open orders included, as % of equity."""

from ...model import Violation
from .base import HUNDRED, Context, num, pct, rule


@rule("asset_class_allocation", rail="asset_classes.{asset_class}.allocation_pct", clampable=True)
def asset_class_allocation(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    before = ctx.portfolio.committed_by_class[p.asset_class]
    value = ctx.pct_of_equity(before + p.committed_delta)
    if value <= rail.limit:
        return None
    room = rail.limit / HUNDRED * p.equity - before
    return Violation(
        "asset_class_allocation",
        f"asset_class_allocation: {p.asset_class.value} would be {pct(value)}% of equity, limit {num(rail.limit)}%",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room),
    )
