"""What a rule is: one function, the policy rail it reads, and its stable code.

A rule gets the order's ``Context`` (everything computed once per check) and its ``Rail``,
and returns a ``Violation`` or None. Rules never do I/O and never mutate anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from ...model import Caller, OrderIntent, TradingState, Violation
from ...policy.schema import Policy, Rail
from ..portfolio import Portfolio, Projection

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Context:
    intent: OrderIntent
    projection: Projection
    policy: Policy
    portfolio: Portfolio
    state: TradingState
    caller: Caller | None
    now: datetime

    def pct_of_equity(self, amount: Decimal) -> Decimal:
        return amount / self.projection.equity * HUNDRED

    def qty_for_room(self, room: Decimal, *, committed: bool = True) -> Decimal:
        """Largest quantity whose added capital (or, with committed=False, notional) fits in
        ``room``; never negative. The engine re-checks a clamped order in full, so this only
        has to be a good first guess."""
        p = self.projection
        if room <= 0 or p.qty <= 0:
            return Decimal(0)
        per_unit = p.notional / p.qty
        if committed:
            per_unit /= p.leverage
        return (room / per_unit).quantize(Decimal("1e-9"), rounding=ROUND_DOWN)


Check = Callable[[Context, Rail | None], Violation | None]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    rail: str | None  # dotted policy field; None for rules that are always on
    check: Check
    # Exits are privileged: an order that can only reduce a position skips this rule.
    exits_exempt: bool = True


def rule(code: str, *, rail: str | None, exits_exempt: bool = True) -> Callable[[Check], Rule]:
    def wrap(check: Check) -> Rule:
        return Rule(code=code, rail=rail, check=check, exits_exempt=exits_exempt)

    return wrap


def pct(value: Decimal) -> str:
    """A percentage for messages: two decimals, no exponent."""
    return f"{value.quantize(Decimal('0.01')):f}"
