"""Options: no purchase of a contract that expires within ``no_buy_within_days`` days.
Days are whole calendar days from today (UTC, from the engine's ``now``) to the expiry date
in the OCC symbol: with 5, a contract expiring in 5 days or fewer cannot be bought. A symbol
whose expiry cannot be read is refused (fail closed)."""

from datetime import date, timezone
from decimal import Decimal
from functools import lru_cache

from ...model import Side, Violation, parse_occ
from .base import Context, num, rule


@lru_cache(maxsize=4096)
def expiry_of(symbol: str) -> date | None:
    contract = parse_occ(symbol)
    return contract.expiry if contract is not None else None


@rule("option_near_expiry", rail="asset_classes.{asset_class}.no_buy_within_days")
def option_near_expiry(ctx: Context, rail) -> Violation | None:
    if ctx.intent.side is not Side.BUY:
        return None
    expiry = expiry_of(ctx.intent.symbol)
    if expiry is None:
        return Violation(
            "option_near_expiry", f"option_near_expiry: cannot read an expiry from option symbol {ctx.intent.symbol}"
        )
    now = ctx.now
    today = (now if now.tzinfo is timezone.utc else now.astimezone(timezone.utc)).date()
    days = (expiry - today).days
    if days > rail.limit:
        return None
    return Violation(
        "option_near_expiry",
        f"option_near_expiry: {ctx.intent.symbol} expires {expiry.isoformat()}, in {days} day(s); "
        f"no purchase within {num(rail.limit)} days of expiry",
        limit=rail.limit,
        value=Decimal(days),
    )
