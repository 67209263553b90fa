"""A limit or stop price too far from the reference price (fat finger): |price - reference|
over reference, %, above ``price_collar_pct`` is refused. Trailing offsets and the legs of
a bracket are not collared (the stop-loss rule bounds the protective stop)."""

from ...model import Violation
from .base import HUNDRED, Context, num, pct, rule


@rule("price_collar_pct", rail="account.price_collar_pct")
def price_collar(ctx: Context, rail) -> Violation | None:
    intent = ctx.intent
    reference = ctx.reference
    for label, price in (("limit", intent.limit_price), ("stop", intent.stop_price)):
        if price is None:
            continue
        away = abs(price - reference) / reference * HUNDRED
        if away > rail.limit:
            return Violation(
                "price_collar_pct",
                f"price_collar_pct: {label} price {num(price)} is {pct(away)}% from the reference price "
                f"{num(reference)} of {intent.symbol}, limit {num(rail.limit)}%",
                limit=rail.limit,
                value=away,
            )
    return None
