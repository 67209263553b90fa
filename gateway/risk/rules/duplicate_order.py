"""The same order from the same credential again within ``duplicate_window_s``: same
symbol, side, type, quantity (or notional) and prices, and the same action (a replace never
collides with the submit it modifies, nor a close with a trailing-stop sell of the same size).
Not exempt for exits. Orders without a caller (the gateway's own) are not checked."""

from __future__ import annotations

from collections.abc import Hashable

from ...model import Caller, OrderIntent, Violation
from .base import Context, num, rule


def fingerprint(intent: OrderIntent, caller: Caller | None, action: str) -> Hashable | None:
    """The duplicate detector's key for one request, or None when there is no caller."""
    if caller is None:
        return None
    return (
        caller.key_id,
        action,
        intent.symbol,
        intent.side,
        intent.type,
        intent.trail_price,
        intent.trail_percent,
        intent.qty,
        intent.notional,
        intent.limit_price,
        intent.stop_price,
    )


@rule("duplicate_order", rail="account.duplicate_window_s", exits_exempt=False)
def duplicate_order(ctx: Context, rail) -> Violation | None:
    if ctx.fingerprint is None or ctx.activity is None:
        return None
    window = float(rail.limit)
    seen = ctx.activity.last_seen(ctx.fingerprint, ctx.monotonic, window)
    if seen is None:
        return None
    ago = ctx.monotonic - seen
    i = ctx.intent
    amount = f"qty {num(i.qty)}" if i.qty is not None else f"notional {num(i.notional)}"
    prices = "".join(
        f", {label} {num(p)}" for label, p in (("limit", i.limit_price), ("stop", i.stop_price)) if p is not None
    )
    return Violation(
        "duplicate_order",
        f"duplicate_order: the same {i.side.value} {i.symbol} ({amount}{prices}) was accepted {ago:.1f}s ago; "
        f"window {num(rail.limit)}s",
        limit=rail.limit,
        value=None,
    )
