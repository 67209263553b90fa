"""The risk engine: given an order, the active policy, the trading state and the book, decide.

Pure and synchronous: no I/O, no awaits. ``check_and_reserve`` decides and, when the order
is allowed, counts it in the book in the same step, so two concurrent orders can never both
pass a limit that only one of them fits under (asyncio runs this step without interruption).

Fail closed: no policy, no fresh account snapshot, no reference price or no equity each
reject with their own code before any rule runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from ..model import Caller, Decision, OrderIntent, TradingState, Violation
from ..policy.schema import Policy
from .portfolio import Portfolio, Projection, Reservation
from .rules import RULES, Context, Rule


class PolicyLike(Protocol):
    @property
    def policy(self) -> Policy: ...

    @property
    def version(self) -> int: ...

    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine settings that are not policy: how fresh the book must be."""

    # Refuse orders when the last account snapshot is older than this (stale_account).
    max_snapshot_age_s: float = 15.0
    # Clamped quantities are rounded down to this many decimal places.
    qty_decimals: int = 9


ZERO = Decimal(0)


class RiskEngine:
    def __init__(self, portfolio: Portfolio, config: EngineConfig = EngineConfig(), rules: tuple[Rule, ...] = RULES):
        self.portfolio = portfolio
        self.config = config
        self.rules = rules

    def check_and_reserve(
        self,
        intent: OrderIntent,
        *,
        policy: PolicyLike | None,
        state: TradingState,
        price: Decimal | None,
        now: datetime,
        monotonic: float,
        caller: Caller | None = None,
    ) -> tuple[Decision, OrderIntent, Reservation | None]:
        """Decide, and reserve when allowed. Returns the decision, the intent to forward
        (a clamped copy when a rule clamped it) and the reservation to settle later."""
        decision, final_intent, projection = self.decide(
            intent, policy=policy, state=state, price=price, now=now, monotonic=monotonic, caller=caller
        )
        if not decision.allowed or projection is None:
            return decision, final_intent, None
        return decision, final_intent, self.portfolio.reserve(projection, intent.asset_class)

    def decide(
        self,
        intent: OrderIntent,
        *,
        policy: PolicyLike | None,
        state: TradingState,
        price: Decimal | None,
        now: datetime,
        monotonic: float,
        caller: Caller | None = None,
    ) -> tuple[Decision, OrderIntent, Projection | None]:
        if policy is None:
            return _deny(Violation("no_policy", "no_policy: no valid signed policy is active"), None), intent, None
        precondition = self._precondition(intent, price, monotonic)
        if precondition is not None:
            return _deny(precondition, policy), intent, None
        assert price is not None
        projection = self._project(intent, price)
        violations = self._run(intent, projection, policy.policy, state, caller, now)
        if not violations:
            return _allow(policy, projection), intent, projection

        clamped = self._try_clamp(intent, projection, violations, policy.policy)
        if clamped is not None:
            clamped_intent, clamped_projection = clamped
            again = self._run(clamped_intent, clamped_projection, policy.policy, state, caller, now)
            if not again:
                notes = tuple(
                    f"{v.code}: quantity clamped from {projection.qty} to {clamped_projection.qty}" for v in violations
                )
                decision = replace(
                    _allow(policy, clamped_projection), clamped_qty=clamped_projection.qty, notes=notes
                )
                return decision, clamped_intent, clamped_projection
        return _deny_all(violations, policy), intent, projection

    # -- steps -----------------------------------------------------------------------------

    def _precondition(self, intent: OrderIntent, price: Decimal | None, monotonic: float) -> Violation | None:
        age = self.portfolio.snapshot_age(monotonic)
        if age is None or age > self.config.max_snapshot_age_s:
            shown = "never" if age is None else f"{age:.1f}s ago"
            return Violation(
                "stale_account",
                f"stale_account: the account snapshot is too old (last {shown}, limit "
                f"{self.config.max_snapshot_age_s}s); refusing until the venue answers",
            )
        if price is None or not price.is_finite() or price <= 0:
            return Violation("no_reference_price", f"no_reference_price: no reference price for {intent.symbol}")
        if self.portfolio.equity <= 0:
            return Violation(
                "no_equity", f"no_equity: account equity is {self.portfolio.equity}; no order can be sized against it"
            )
        return None

    def _project(self, intent: OrderIntent, price: Decimal) -> Projection:
        # Value the order at the worst of the reference price and its own prices.
        valuation = max(price, intent.limit_price or ZERO, intent.stop_price or ZERO)
        qty = intent.qty if intent.qty is not None else (intent.notional or ZERO) / valuation
        return self.portfolio.project(intent.symbol, intent.asset_class, intent.side, qty, valuation)

    def _run(
        self,
        intent: OrderIntent,
        projection: Projection,
        policy: Policy,
        state: TradingState,
        caller: Caller | None,
        now: datetime,
    ) -> list[Violation]:
        ctx = Context(intent, projection, policy, self.portfolio, state, caller, now)
        rails = policy.rails()
        violations = []
        for r in self.rules:
            if r.exits_exempt and projection.reduces_only:
                continue
            rail = rails[r.rail] if r.rail is not None else None
            if rail is not None and not rail.active:
                continue
            violation = r.check(ctx, rail)
            if violation is not None:
                violations.append(violation)
        return violations

    def _try_clamp(
        self, intent: OrderIntent, projection: Projection, violations: list[Violation], policy: Policy
    ) -> tuple[OrderIntent, Projection] | None:
        """When every violated rail says ``clamp``, size the order down to what fits."""
        rails = policy.rails()
        by_code = {r.code: r for r in self.rules}
        limits = []
        for v in violations:
            r = by_code.get(v.code)
            rail = rails.get(r.rail) if r is not None and r.rail else None
            if rail is None or rail.on_violation != "clamp" or v.max_qty is None:
                return None
            limits.append(v.max_qty)
        step = Decimal(1).scaleb(-self.config.qty_decimals)
        if projection.qty == projection.qty.to_integral_value():
            step = Decimal(1)  # a whole-unit order stays whole
        qty = min(limits).quantize(step, rounding=ROUND_DOWN)
        if qty <= 0:
            return None
        clamped = replace(intent, qty=qty, notional=None)
        return clamped, self.portfolio.project(intent.symbol, intent.asset_class, intent.side, qty, projection.price)


def _allow(policy: PolicyLike, projection: Projection) -> Decision:
    return Decision(
        allowed=True,
        policy_version=policy.version,
        policy_hash=policy.sha256,
        reduces_only=projection.reduces_only,
    )


def _deny(violation: Violation, policy: PolicyLike | None) -> Decision:
    return _deny_all([violation], policy)


def _deny_all(violations: list[Violation], policy: PolicyLike | None) -> Decision:
    return Decision(
        allowed=False,
        violations=tuple(violations),
        policy_version=policy.version if policy else 0,
        policy_hash=policy.sha256 if policy else "",
    )
