"""Risk per trade: qty x |entry - protective stop| x multiplier, as % of equity. The entry is
the least favourable price the order can get (its limit, else its stop, else the reference
price); the stop is the order's stop-loss leg (bracket / oto). With no protective stop, or one
on the wrong side, the whole notional counts as at risk (fail safe)."""

from decimal import ROUND_DOWN

from ...model import Violation
from ..portfolio import MULTIPLIER
from .base import HUNDRED, QTY_STEP, Context, num, pct, rule


@rule("max_risk_per_trade_pct", rail="account.max_risk_per_trade_pct", clampable=True)
def max_risk_per_trade_pct(ctx: Context, rail) -> Violation | None:
    p = ctx.projection
    if p.qty <= 0:
        return None
    entry, stop, distance = ctx.protection()
    protected = distance is not None
    risk = p.qty * abs(entry - stop) * MULTIPLIER[p.asset_class] if protected else p.notional
    value = ctx.pct_of_equity(risk)
    if value <= rail.limit:
        return None
    basis = f"stop {num(stop)} from entry {num(entry)}" if protected else "no protective stop: the whole notional is at risk"
    per_unit = risk / p.qty
    return Violation(
        "max_risk_per_trade_pct",
        f"max_risk_per_trade_pct: {p.symbol} risks {pct(value)}% of equity ({basis}), limit {num(rail.limit)}%",
        limit=rail.limit,
        value=value,
        max_qty=(rail.limit / HUNDRED * p.equity / per_unit).quantize(QTY_STEP, rounding=ROUND_DOWN),
    )
