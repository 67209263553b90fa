"""Mandatory protective stop on entries, per asset class (``asset_classes.X.stop_loss``).

A protective stop is the stop-loss leg of a bracket or oto order, on the protective side of
the entry (below it for a buy, above it for a sell) and at most ``max_distance_pct`` away
from the entry price (the order's limit, else its stop, else the reference price).

- ``reject``: an entry without one is refused (``stop_loss_required``; a stop on the wrong side
  counts as none), one too far away is refused (``stop_loss_too_far``).
- ``attach``: before any rule runs, the engine calls ``attach_stop``: an entry without a stop
  gets one at exactly the maximum distance (rounded toward the entry to the price tick), the
  order class becoming ``oto`` (``bracket`` when it has a take-profit), and a stop that is too
  far is moved in to the maximum distance. A notional order cannot carry legs at any venue, so
  it is converted to a quantity first (rounded down; whole shares for stocks, whose legs need them). Orders that cannot carry a stop leg
  (oco, trailing_stop entries, time in force other than day/gtc, extended hours) are left
  alone and then refused by this rule as in ``reject``. A replace cannot add legs: in
  ``attach`` mode a replace without a stop passes (the order keeps the legs it has at the
  venue) and the engine says so in the decision's notes.
- ``off``: nothing is checked.

Exits never need a stop (the rule is exits-exempt and attach is skipped for them).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from ...model import (
    AssetClass,
    OrderClass,
    OrderIntent,
    OrderType,
    Side,
    StopLoss,
    TimeInForce,
    Violation,
)
from ...policy.schema import StopLossRule
from .base import (
    HUNDRED,
    Context,
    entry_price,
    evolve,
    num,
    pct,
    protective_stop,
    rule,
    stop_distance_pct,
)

CENT = Decimal("0.01")
SUB_PENNY = Decimal("0.0001")
_LEG_TIFS = frozenset({TimeInForce.DAY, TimeInForce.GTC})


@rule(
    "stop_loss_required",
    rail="asset_classes.{asset_class}.stop_loss",
    codes=("stop_loss_too_far",),
)
def stop_loss(ctx: Context, setting: StopLossRule) -> Violation | None:
    intent = ctx.intent
    entry, stop, distance = ctx.protection()
    limit = setting.max_distance_pct
    if stop is None:
        if setting.mode == "attach" and ctx.action == "replace":
            return None  # the venue keeps the replaced order's legs; noted by the engine
        why = ""
        if setting.mode == "attach":
            why = f"; none could be attached: {cannot_attach(intent) or 'no valid stop price at that distance'}"
        return Violation(
            "stop_loss_required",
            f"stop_loss_required: a {ctx.projection.asset_class.value} entry needs a protective stop (bracket or "
            f"oto stop_loss) within {num(limit)}% of the entry price{why}",
            limit=limit,
        )
    if distance is None:
        side = "below" if intent.side is Side.BUY else "above"
        return Violation(
            "stop_loss_required",
            f"stop_loss_required: stop {num(stop)} does not protect a {intent.side.value} entry at {num(entry)}; "
            f"it must be {side} the entry",
            limit=limit,
        )
    if distance > limit:
        return Violation(
            "stop_loss_too_far",
            f"stop_loss_too_far: stop {num(stop)} is {pct(distance)}% from the entry price {num(entry)}, "
            f"{ctx.projection.asset_class.value} limit {num(limit)}%",
            limit=limit,
            value=distance,
        )
    return None


def cannot_attach(intent: OrderIntent) -> str | None:
    """Why this order cannot carry a stop-loss leg, or None when it can."""
    if intent.order_class is OrderClass.OCO:
        return "an oco order has no entry leg"
    if intent.type is OrderType.TRAILING_STOP:
        return "a trailing_stop entry cannot carry legs"
    if intent.time_in_force not in _LEG_TIFS:
        return f"time_in_force {intent.time_in_force.value} cannot carry legs; use day or gtc"
    if intent.extended_hours:
        return "extended-hours orders cannot carry legs"
    return None


def tick(price: Decimal) -> Decimal:
    """Price increment: a cent at or above $1, a hundredth of a cent below."""
    return CENT if price >= 1 else SUB_PENNY


def stop_at_distance(side: Side, entry: Decimal, distance_pct: Decimal) -> Decimal | None:
    """The protective stop ``distance_pct`` from ``entry``, rounded toward the entry; None
    when rounding leaves no valid stop."""
    if side is Side.BUY:
        raw = entry * (HUNDRED - distance_pct) / HUNDRED
        stop = raw.quantize(tick(raw), rounding=ROUND_CEILING)
        return stop if 0 < stop < entry else None
    raw = entry * (HUNDRED + distance_pct) / HUNDRED
    stop = raw.quantize(tick(raw), rounding=ROUND_FLOOR)
    return stop if stop > entry else None


def attach_stop(
    intent: OrderIntent, setting: StopLossRule, reference: Decimal, qty: Decimal, qty_decimals: int
) -> tuple[OrderIntent, str] | None:
    """``attach`` mode: the entry with a protective stop at the maximum distance, and a note;
    None when there is nothing to do or it cannot be done (the rule then decides).
    ``qty`` is the engine's quantity for a notional order (notional / valuation)."""
    if setting.mode != "attach" or cannot_attach(intent) is not None:
        return None
    limit = setting.max_distance_pct
    entry = entry_price(intent, reference)
    current = protective_stop(intent)
    if current is not None:
        distance = stop_distance_pct(intent.side, entry, current)
        if distance is None or distance <= limit:
            return None  # fine as it is, or nonsense the rule refuses
    stop = stop_at_distance(intent.side, entry, limit)
    if stop is None:
        return None
    notes = []
    changes: dict = {"stop_loss": StopLoss(stop_price=stop)}
    if intent.notional is not None:
        # Stock legs need whole shares (Alpaca carries none on fractional orders).
        step = Decimal(1) if intent.asset_class is AssetClass.US_EQUITY else Decimal(1).scaleb(-qty_decimals)
        whole = qty.quantize(step, rounding=ROUND_DOWN)
        if whole <= 0:
            return None
        changes.update(qty=whole, notional=None)
        notes.append(f"notional {num(intent.notional)} converted to qty {num(whole)} to carry the stop")
    if current is not None:
        notes.append(f"stop {num(current)} moved to {num(stop)} ({num(limit)}% from entry {num(entry)})")
    else:
        order_class = OrderClass.BRACKET if intent.take_profit is not None else OrderClass.OTO
        changes["order_class"] = order_class
        notes.append(
            f"attached a protective stop at {num(stop)} ({num(limit)}% from entry {num(entry)}); "
            f"order_class {order_class.value}"
        )
    return evolve(intent, **changes), "stop_loss: " + "; ".join(notes)
