"""The risk engine: given an order, the active policy, the trading state and the book, decide.

Pure and synchronous: no I/O, no awaits. ``check_and_reserve`` decides and, when the order
is allowed, counts it in the book (and in its credential's rate and duplicate records) in the
same step, so two concurrent orders can never both pass a limit that only one of them fits
under (asyncio runs this step without interruption).

Fail closed: no policy, no fresh account snapshot, no reference price or no equity each
reject with their own code before any rule runs.

One check, in order:

1. preconditions (``no_policy``, ``stale_account``, ``no_reference_price``, ``no_equity``);
2. the policy is compiled once per policy object (``CompiledPolicy``): every rule's setting
   resolved per asset class, rules whose setting is off dropped, so a check never walks the
   policy;
3. the order is projected onto the book (O(1): running aggregates, see ``portfolio.py``);
4. ``stop_loss: attach``: an entry without a protective stop gets one (``rules/stop_loss.py``);
5. every rule runs: all of them for an entry, only the non-exempt ones (trading state, rate
   limit, duplicate) for an order that can only reduce a position;
6. when every violated rule is set to ``on_violation: clamp`` and says how much would fit,
   the order is sized down and checked again in full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Protocol

from pydantic import BaseModel

from ..model import AssetClass, Caller, Decision, OrderIntent, TradingState, Violation
from ..policy.schema import Policy, Rail, StopLossRule
from .activity import Activity
from .portfolio import Counted, Portfolio, Projection
from .rules import RULES, Context, Rule
from .rules.base import is_active, protective_stop
from .rules.duplicate_order import fingerprint
from .rules.stop_loss import attach_stop


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
ACTIONS = frozenset({"submit", "replace", "close"})
_MISSING: Any = object()

Entry = tuple[Rule, Any]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """Everything the engine derives from one policy object, computed once."""

    policy: Policy
    # Per asset class: (rule, setting) for every rule that is on, in evaluation order.
    entries: Mapping[AssetClass, tuple[Entry, ...]]
    # The same, only the rules exits do not skip.
    exits: Mapping[AssetClass, tuple[Entry, ...]]
    # The same two tables as (check function, setting, rule), what the hot loop runs.
    entry_checks: Mapping[AssetClass, tuple[tuple[Any, Any, Rule], ...]]
    exit_checks: Mapping[AssetClass, tuple[tuple[Any, Any, Rule], ...]]
    stop_loss: Mapping[AssetClass, StopLossRule | None]
    duplicate_window_s: float  # 0 when off
    sectors: Mapping[str, str]
    rails: Mapping[str, Rail]


def resolve(policy: Policy, path: str) -> Any:
    """The policy value at a dotted path, or ``_MISSING``."""
    value: Any = policy
    for part in path.split("."):
        if isinstance(value, BaseModel):
            if part not in type(value).model_fields:
                return _MISSING
            value = getattr(value, part)
        elif isinstance(value, Mapping):
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return _MISSING
        else:
            return _MISSING
    return value


def _setting(policy: Policy, r: Rule, asset_class: AssetClass) -> Any:
    paths = r.rail if isinstance(r.rail, tuple) else (r.rail,)
    values = []
    for path in paths:
        value = resolve(policy, path.format(asset_class=asset_class.value))
        if value is _MISSING:
            if "{asset_class}" not in path:
                raise KeyError(f"rule {r.code} reads {path}, which the policy schema does not have")
            return _MISSING  # a setting of some classes only (options): the rule does not apply
        values.append(value)
    setting = tuple(values) if isinstance(r.rail, tuple) else values[0]
    return r.prepare(setting) if r.prepare is not None else setting


def compile_policy(policy: Policy, rules: tuple[Rule, ...] = RULES) -> CompiledPolicy:
    entries: dict[AssetClass, tuple[Entry, ...]] = {}
    exits: dict[AssetClass, tuple[Entry, ...]] = {}
    stops: dict[AssetClass, StopLossRule | None] = {}
    for cls in AssetClass:
        on: list[Entry] = []
        for r in rules:
            if r.rail is None:
                on.append((r, None))
                continue
            setting = _setting(policy, r, cls)
            if setting is _MISSING:
                continue
            if not (r.active(setting) if r.active is not None else is_active(setting)):
                continue
            on.append((r, setting))
        entries[cls] = tuple(on)
        exits[cls] = tuple(e for e in on if not e[0].exits_exempt)
        stop = resolve(policy, f"asset_classes.{cls.value}.stop_loss")
        stops[cls] = stop if isinstance(stop, StopLossRule) and stop.active else None
    window = policy.account.duplicate_window_s
    return CompiledPolicy(
        policy=policy,
        entries=entries,
        exits=exits,
        entry_checks={cls: tuple((r.check, v, r) for r, v in table) for cls, table in entries.items()},
        exit_checks={cls: tuple((r.check, v, r) for r, v in table) for cls, table in exits.items()},
        stop_loss=stops,
        duplicate_window_s=float(window.limit) if window.active else 0.0,
        sectors=policy.sectors,
        rails=policy.rails(),
    )


class RiskEngine:
    def __init__(
        self,
        portfolio: Portfolio,
        config: EngineConfig = EngineConfig(),
        rules: tuple[Rule, ...] = RULES,
        activity: Activity | None = None,
    ):
        self.portfolio = portfolio
        self.config = config
        self.rules = rules
        self.activity = activity if activity is not None else Activity()
        self._compiled: CompiledPolicy | None = None

    def compiled(self, policy: Policy) -> CompiledPolicy:
        """The compiled form of ``policy``, reused for as long as the same object is active;
        installing it also installs its sector map in the book (a one-off recount)."""
        compiled = self._compiled
        if compiled is None or compiled.policy is not policy:
            compiled = self._compiled = compile_policy(policy, self.rules)
        self.portfolio.set_sectors(compiled.sectors)
        return compiled

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
        action: str = "submit",
        reduce_only_enforced: bool = False,
    ) -> tuple[Decision, OrderIntent, Counted | None]:
        """Decide, and reserve when allowed. Returns the decision, the intent to forward
        (a copy when a rule clamped it or attached a stop) and the share of the book it now
        holds (the ledger adopts it). ``action`` is ``submit``, ``replace`` (counted against the replace rate
        limits) or ``close``."""
        decision, final_intent, projection = self.decide(
            intent,
            policy=policy,
            state=state,
            price=price,
            now=now,
            monotonic=monotonic,
            caller=caller,
            action=action,
            reduce_only_enforced=reduce_only_enforced,
        )
        if not decision.allowed or projection is None:
            return decision, final_intent, None
        reservation = self.portfolio.reserve(projection, final_intent.asset_class)
        if caller is not None and policy is not None:
            compiled = self._compiled
            window = compiled.duplicate_window_s if compiled is not None else 0.0
            key = fingerprint(intent, caller, action) if window else None
            self.activity.record(caller.key_id, "replace" if action == "replace" else "order", key, monotonic, window)
        return decision, final_intent, reservation

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
        action: str = "submit",
        reduce_only_enforced: bool = False,
    ) -> tuple[Decision, OrderIntent, Projection | None]:
        """Decide without changing the book or the activity records. ``reduce_only_enforced``:
        the venue refuses a reduce-only order that would open a position (Binance), so such an
        order within the position is an exit whatever else is open on its side."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}, not {action!r}")
        if policy is None:
            return _deny(Violation("no_policy", "no_policy: no valid signed policy is active"), None), intent, None
        precondition = self._precondition(intent, price, monotonic)
        if precondition is not None:
            return _deny(precondition, policy), intent, None
        assert price is not None
        compiled = self.compiled(policy.policy)
        projection = self._project(intent, price)
        if reduce_only_enforced and intent.reduce_only and not projection.reduces_only:
            position = self.portfolio.position(intent.symbol)
            closable = position if intent.side.value == "sell" else -position
            if 0 < projection.qty <= closable:
                projection.reduces_only = True
        final = intent
        notes: list[str] = []
        if not projection.reduces_only:
            stop = compiled.stop_loss[intent.asset_class]
            if stop is not None and stop.mode == "attach":
                if action == "replace":
                    if protective_stop(intent) is None:
                        notes.append(
                            "stop_loss: a replace cannot add a stop; the order keeps the legs it has at the venue"
                        )
                else:
                    attached = attach_stop(intent, stop, price, projection.qty, self.config.qty_decimals)
                    if attached is not None:
                        final, note = attached
                        notes.append(note)
                        if final.qty != intent.qty:
                            projection = self._project(final, price)
        key = fingerprint(intent, caller, action) if compiled.duplicate_window_s else None
        run = (state, caller, now, price, monotonic, action, key)
        violations = self._run(final, projection, compiled, *run)
        if not violations:
            return _allow(policy, projection, notes), final, projection

        clamped = self._try_clamp(final, projection, violations)
        if clamped is not None:
            clamped_intent, clamped_projection = clamped
            if not self._run(clamped_intent, clamped_projection, compiled, *run):
                notes = [
                    f"{v.code}: quantity clamped from {projection.qty} to {clamped_projection.qty}"
                    for v, _, _ in violations
                ] + notes
                decision = replace(
                    _allow(policy, clamped_projection, notes), clamped_qty=clamped_projection.qty
                )
                return decision, clamped_intent, clamped_projection
        return _deny_all([v for v, _, _ in violations], policy), intent, projection

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
        compiled: CompiledPolicy,
        state: TradingState,
        caller: Caller | None,
        now: datetime,
        price: Decimal,
        monotonic: float,
        action: str,
        key: Any,
    ) -> list[tuple[Violation, Rule, Any]]:
        ctx = Context(
            intent,
            projection,
            compiled.policy,
            self.portfolio,
            state,
            caller,
            now,
            price,
            monotonic,
            action,
            self.activity,
            key,
        )
        table = compiled.exit_checks if projection.reduces_only else compiled.entry_checks
        violations = []
        for check, setting, r in table[intent.asset_class]:
            violation = check(ctx, setting)
            if violation is not None:
                violations.append((violation, r, setting))
        return violations

    def _try_clamp(
        self, intent: OrderIntent, projection: Projection, violations: list[tuple[Violation, Rule, Any]]
    ) -> tuple[OrderIntent, Projection] | None:
        """When every violated rail says ``clamp``, size the order down to what fits."""
        limits = []
        for v, r, setting in violations:
            if (
                not r.clampable
                or not isinstance(setting, Rail)
                or setting.on_violation != "clamp"
                or v.max_qty is None
            ):
                return None
            limits.append(v.max_qty)
        step = Decimal(1).scaleb(-self.config.qty_decimals)
        if projection.qty == projection.qty.to_integral_value():
            step = Decimal(1)  # a whole-unit order stays whole
        qty = min(limits).quantize(step, rounding=ROUND_DOWN)
        if qty <= 0 or qty >= projection.qty:
            return None
        clamped = replace(intent, qty=qty, notional=None)
        return clamped, self.portfolio.project(intent.symbol, intent.asset_class, intent.side, qty, projection.price)


def _allow(policy: PolicyLike, projection: Projection, notes: list[str] | tuple[str, ...] = ()) -> Decision:
    return Decision(
        allowed=True,
        policy_version=policy.version,
        policy_hash=policy.sha256,
        reduces_only=projection.reduces_only,
        notes=tuple(notes),
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
