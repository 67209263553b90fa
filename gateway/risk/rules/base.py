"""What a rule is: one function, the policy field(s) it reads, and its stable code(s).

A rule gets the order's ``Context`` (everything computed once per check) and its setting
(usually a ``Rail``), and returns a ``Violation`` or None. Rules never do I/O and never
mutate anything.

``field`` names the policy setting by dotted path. ``{asset_class}`` in it stands for the
order's asset class (``asset_classes.{asset_class}.allocation_pct``); a rule whose path does
not exist for a class (options-only settings) does not run for that class. A tuple of paths
hands the rule a tuple of settings. The engine resolves every path once per policy object,
drops rules whose setting is off, and calls ``prepare`` (if given) on the setting once, so a
rule can receive e.g. a frozenset instead of a list.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from ...model import (
    Caller,
    OrderClass,
    OrderIntent,
    Side,
    TradingState,
    Violation,
    parse_occ,
)
from ...policy.schema import Policy
from ..activity import Activity
from ..portfolio import Portfolio, Projection

HUNDRED = Decimal(100)
ZERO = Decimal(0)
QTY_STEP = Decimal("1e-9")


@dataclass(slots=True)
class Context:
    """Everything a rule may read about one check. Read-only by convention (not frozen: one
    is built per check and frozen dataclasses are slower to build)."""

    intent: OrderIntent
    projection: Projection
    policy: Policy
    portfolio: Portfolio
    state: TradingState
    caller: Caller | None
    now: datetime
    # The venue's reference price (the projection values the order at the worst of this and
    # the order's own prices).
    price: Decimal | None = None
    monotonic: float = 0.0
    # "submit" (a new order), "replace" (a modification) or "close" (close_position).
    action: str = "submit"
    activity: Activity | None = None
    # The duplicate detector's key for this request (computed from the order as sent).
    fingerprint: Any = None
    _protection: Any = None

    def protection(self) -> tuple[Decimal, Decimal | None, Decimal | None]:
        """(entry price, protective stop or None, its distance % or None when on the wrong
        side), computed once per check for the stop-loss and risk-per-trade rules."""
        cached = self._protection
        if cached is None:
            entry = entry_price(self.intent, self.reference)
            stop = protective_stop(self.intent)
            distance = stop_distance_pct(self.intent.side, entry, stop) if stop is not None else None
            cached = self._protection = (entry, stop, distance)
        return cached

    def pct_of_equity(self, amount: Decimal) -> Decimal:
        return amount / self.projection.equity * HUNDRED

    def qty_for_room(self, room: Decimal, *, committed: bool = True) -> Decimal:
        """Largest quantity whose added capital (or, with committed=False, notional) fits in
        ``room``; never negative. The engine re-checks a clamped order in full, so this only
        has to be a good first guess."""
        p = self.projection
        if room <= 0 or p.qty <= 0:
            return ZERO
        per_unit = p.notional / p.qty
        if committed:
            per_unit /= p.leverage
        return (room / per_unit).quantize(QTY_STEP, rounding=ROUND_DOWN)

    @property
    def reference(self) -> Decimal:
        return self.price if self.price is not None else self.projection.price


Check = Callable[[Context, Any], Violation | None]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    # Dotted policy field(s) the rule reads; None for rules that are always on.
    rail: str | tuple[str, ...] | None
    check: Check
    # Exits are privileged: an order that can only reduce a position skips this rule.
    exits_exempt: bool = True
    # Every code the rule can report (the first is ``code``), for docs and tests.
    codes: tuple[str, ...] = ()
    # Called once per policy on the resolved setting (e.g. list -> frozenset).
    prepare: Callable[[Any], Any] | None = None
    # Whether the (prepared) setting turns the rule on; default: a Rail's ``active``, an
    # object's ``active``, a bool itself, None off, anything else on.
    active: Callable[[Any], bool] | None = None
    # Whether ``on_violation: clamp`` can size the order down for this rule.
    clampable: bool = False


def rule(
    code: str,
    *,
    rail: str | tuple[str, ...] | None,
    exits_exempt: bool = True,
    codes: tuple[str, ...] = (),
    prepare: Callable[[Any], Any] | None = None,
    active: Callable[[Any], bool] | None = None,
    clampable: bool = False,
) -> Callable[[Check], Rule]:
    def wrap(check: Check) -> Rule:
        all_codes = (code, *(c for c in codes if c != code))
        return Rule(
            code=code,
            rail=rail,
            check=check,
            exits_exempt=exits_exempt,
            codes=all_codes,
            prepare=prepare,
            active=active,
            clampable=clampable,
        )

    return wrap


def is_active(setting: Any) -> bool:
    """The default test of whether a setting turns its rule on."""
    if setting is None or setting is False:
        return False
    if setting is True:
        return True
    active = getattr(setting, "active", None)
    if active is not None:
        return bool(active)
    return True


def underlying(symbol: str) -> str | None:
    """An OCC option's underlying root (``AAPL`` for ``AAPL250117C00190000``), else None."""
    contract = parse_occ(symbol)
    return contract.root if contract is not None else None


def pct(value: Decimal) -> str:
    """A percentage for messages: two decimals, no exponent."""
    return f"{value.quantize(Decimal('0.01')):f}"


def num(value: Decimal) -> str:
    """A number for messages without an exponent or trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- shared by the stop-loss and risk-per-trade rules -------------------------------------------


def entry_price(intent: OrderIntent, reference: Decimal) -> Decimal:
    """The least favourable entry the order can get, for measuring a stop's distance: a limit
    order fills at its limit or better, a stop order triggers at its stop, a market order at the
    reference price."""
    if intent.limit_price is not None:
        return intent.limit_price
    if intent.stop_price is not None:
        return intent.stop_price
    return reference


def protective_stop(intent: OrderIntent) -> Decimal | None:
    """The stop-loss leg's trigger price, when the order carries one (bracket or oto)."""
    if intent.stop_loss is None or intent.order_class not in (OrderClass.BRACKET, OrderClass.OTO):
        return None
    return intent.stop_loss.stop_price


def stop_distance_pct(side: Side, entry: Decimal, stop: Decimal) -> Decimal | None:
    """How far a protective stop is from the entry, %; None when it is on the wrong side
    (a buy's stop must be below its entry, a sell's above) or the entry is not positive."""
    if entry <= 0:
        return None
    gap = entry - stop if side is Side.BUY else stop - entry
    if gap <= 0:
        return None
    return gap / entry * HUNDRED



# --- copying an intent with a few fields changed, fast ------------------------------------------

_INTENT_FIELDS = tuple(f.name for f in dataclasses.fields(OrderIntent))
_intent_values = operator.attrgetter(*_INTENT_FIELDS)
_set = object.__setattr__


def evolve(intent: OrderIntent, **changes: Any) -> OrderIntent:
    """``dataclasses.replace`` for the frozen ``OrderIntent`` at a fraction of the cost (it runs
    on every attached stop). Falls back to ``replace`` should the model ever grow a
    ``__post_init__`` that must see the new values."""
    if hasattr(OrderIntent, "__post_init__"):
        return dataclasses.replace(intent, **changes)
    new = object.__new__(OrderIntent)
    for name, value in zip(_INTENT_FIELDS, _intent_values(intent), strict=True):
        _set(new, name, value)
    for name, value in changes.items():
        if name not in _INTENT_FIELDS:
            raise TypeError(f"OrderIntent has no field {name}")
        _set(new, name, value)
    return new
