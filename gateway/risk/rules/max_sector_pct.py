"""Capital committed to one sector, open orders included, as % of equity. Sectors come from
the policy's ``sectors`` map (an option uses its underlying's entry); every unmapped symbol is
in the sector ``unknown``, which is capped like any other."""

from ...model import Violation
from .base import HUNDRED, Context, num, pct, rule


@rule("max_sector_pct", rail="account.max_sector_pct", clampable=True)
def max_sector_pct(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    before = ctx.portfolio.committed_in_sector(p.sector)
    value = ctx.pct_of_equity(before + p.committed_delta)
    if value <= rail.limit:
        return None
    room = rail.limit / HUNDRED * p.equity - before
    return Violation(
        "max_sector_pct",
        f"max_sector_pct: sector {p.sector} would be {pct(value)}% of equity, limit {num(rail.limit)}%",
        limit=rail.limit,
        value=value,
        max_qty=ctx.qty_for_room(room),
    )
