"""The gateway's backend: every bot request on its way to the venue.

For an order: scope → symbol → reference price → (one synchronous step: trading state,
policy, rules, reservation) → durable audit record → state re-check → venue → audit of
the venue's answer. Nothing reaches the venue before its decision is on disk, and no
order is forwarded once a lockdown has been set (``drain`` waits for the ones already
on their way).

Reads pass through. Cancels are always allowed (they only remove risk) but are recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .audit.log import AuditLog
from .guards.base import Guard

if TYPE_CHECKING:
    from .control.breakers import LossBreakers
from .control.state import TradingControl
from .errors import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    OrderRejected,
    RiskRejected,
    TradingHalted,
    UpstreamUncertain,
    UpstreamUnavailable,
)
from .model import (
    Asset,
    AssetClass,
    BulkResult,
    Caller,
    Decision,
    Order,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    Side,
    TimeInForce,
    OrderType,
    StopLoss,
    TakeProfit,
    TradingState,
    Violation,
    classify_symbol,
    utcnow,
)
from .risk.engine import PolicyLike, RiskEngine
from .risk.portfolio import Reservation
from .ports import Backend, Venue

log = logging.getLogger("gateway.pipeline")

TRADE_SCOPE = "trade"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.LOCKED: 2}
# Denials that only mean "the venue did not answer": reported as 503, not as a rejection.
_VENUE_DOWN_CODES = frozenset({"stale_account", "no_reference_price"})


class RiskGateway(Backend):
    def __init__(
        self,
        venue: Venue,
        *,
        engine: RiskEngine,
        control: TradingControl,
        audit: AuditLog,
        policy: Callable[[], PolicyLike | None],
        scopes: Callable[[str], frozenset[str]] = lambda key_id: frozenset({TRADE_SCOPE}),
        asset_classes: Callable[[str], frozenset[AssetClass] | None] = lambda key_id: None,
        reconcile_interval_s: float = 2.0,
        price_ttl_s: float = 2.0,
        reconcile_debounce_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision, float], None] | None = None,
        guards: Sequence[Guard] = (),
        breakers: "LossBreakers | None" = None,
    ):
        self.venue = venue
        self.engine = engine
        self.portfolio = engine.portfolio
        self.control = control
        self.audit = audit
        self.policy = policy
        self.scopes = scopes
        self.asset_classes = asset_classes
        self.reconcile_interval_s = reconcile_interval_s
        self.price_ttl_s = price_ttl_s
        self.reconcile_debounce_s = reconcile_debounce_s
        self.monotonic = monotonic
        self.on_decision = on_decision
        self.guards = tuple(guards)
        self.breakers = breakers
        self._prices: dict[str, tuple[Decimal, float]] = {}
        self._assets: dict[str, Asset] = {}
        self._leverage_checked: set[tuple[str, str]] = set()
        self._in_flight: set[asyncio.Future] = set()
        self._reconcile_task: asyncio.Task | None = None
        self._reconcile_soon: asyncio.Event | None = None
        self._reconcile_lock = asyncio.Lock()
        self.last_reconcile_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """First snapshot (a failure leaves the book stale: orders fail closed), then the loop."""
        await self.reconcile()
        self._reconcile_soon = asyncio.Event()
        self._reconcile_task = asyncio.create_task(self._reconcile_loop(), name="reconcile")

    async def stop(self) -> None:
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            try:
                await self._reconcile_task
            except asyncio.CancelledError:
                pass
            self._reconcile_task = None

    async def drain(self, timeout_s: float = 10.0) -> int:
        """Wait for orders already forwarded to the venue; returns how many were waited on."""
        pending = [f for f in self._in_flight if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        return len(pending)

    # -- orders ----------------------------------------------------------------------------

    async def submit_order(self, caller: Caller, intent: OrderIntent) -> Order:
        self._seen(caller)
        self._require_trade(caller)
        self._require_asset_class(caller, intent.asset_class)
        self._check_guards(caller)
        started = self.monotonic()
        if intent.client_order_id is None:
            # Our own id makes a retry after an uncertain answer safe to resolve upstream.
            intent = replace(intent, client_order_id=f"gw-{uuid.uuid4().hex}")
        unknown = await self._unknown_symbol(intent.symbol, intent.asset_class)
        if unknown is None:
            unknown = await self._enforce_leverage(caller, intent.symbol, intent.asset_class)
        price = await self._reference_price(intent.symbol, intent.asset_class)
        if unknown is not None:
            decision, final, reservation = self._deny(unknown), intent, None
        else:
            decision, final, reservation = self._decide(intent, price, caller, "submit")
        try:
            return await self._record_and_forward(
                caller, "order", intent, final, decision, reservation, price, lambda: self.venue.submit_order(final)
            )
        finally:
            if self.on_decision is not None:
                self.on_decision(decision, self.monotonic() - started)

    async def replace_order(self, caller: Caller, order_id: str, change: OrderReplace) -> Order:
        """A replace is a new order: judged in full, without the order it replaces."""
        self._seen(caller)
        self._require_trade(caller)
        self._check_guards(caller)
        old = await self.venue.get_order(order_id, nested=True)  # with legs: its stop is part of it
        self._require_asset_class(caller, old.asset_class)
        if not old.status.is_open:
            await self._audit("order.replace.refused", caller, {"order_id": order_id, "reason": "not open"})
            raise OrderRejected(f"order {order_id} is {old.status.value} and cannot be replaced")
        intent = _replacement_intent(old, change)
        price = await self._reference_price(intent.symbol, intent.asset_class)
        removal = self.portfolio.reserve_removal(old)
        decision, final, reservation = self._decide(intent, price, caller, "replace")
        if not decision.allowed:
            self.portfolio.release(removal)
        final_change = replace(change, qty=final.qty) if decision.clamped_qty is not None else change
        return await self._record_and_forward(
            caller,
            "replace",
            intent,
            final,
            decision,
            reservation,
            price,
            lambda: self.venue.replace_order(order_id, final_change),
            extra={"replaces": order_id},
            companion=removal if decision.allowed else None,
        )

    async def close_position(
        self, caller: Caller, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        self._require_trade(caller)
        position = await self.venue.get_position(symbol)
        close_qty = qty if qty is not None else abs(position.qty) * (percentage or Decimal(100)) / 100
        intent = OrderIntent(
            symbol=symbol,
            asset_class=position.asset_class,
            side=Side.SELL if position.qty > 0 else Side.BUY,
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            qty=close_qty,
            client_order_id=f"gw-close-{uuid.uuid4().hex}",
        )
        price = position.current_price if position.current_price > 0 else await self._reference_price(
            symbol, position.asset_class
        )
        decision, final, reservation = self._decide(intent, price, caller, "close")
        return await self._record_and_forward(
            caller,
            "close",
            intent,
            final,
            decision,
            reservation,
            price,
            # Forward the quantity that was decided on, not the bot's original request.
            lambda: self.venue.close_position(symbol, final.qty, None),
        )

    async def close_all_positions(self, caller: Caller, cancel_orders: bool = False) -> list[BulkResult]:
        """Closing everything only reduces risk, so it passes every state but LOCKED."""
        self._seen(caller)
        self._require_trade(caller)
        state = self.control.current
        allowed = state.state is not TradingState.LOCKED
        await self._audit(
            "positions.close_all",
            caller,
            {"decision": "allow" if allowed else "deny", "cancel_orders": cancel_orders, "state": state.state.value},
        )
        if not allowed:
            raise TradingHalted("trading_locked: the gateway is LOCKED; only cancels are accepted", "trading_locked")
        results = await self._tracked(self.venue.close_all_positions(cancel_orders))
        await self._audit("positions.close_all.result", caller, {"results": [_bulk_summary(r) for r in results]})
        self._poke_reconcile()
        return results

    async def cancel_order(self, caller: Caller, order_id: str) -> None:
        self._seen(caller)
        self._require_trade(caller)
        await self._audit("order.cancel", caller, {"order_id": order_id, "decision": "allow"})
        try:
            await self.venue.cancel_order(order_id)
        except GatewayError as exc:
            await self._audit("order.cancel.error", caller, {"order_id": order_id, "error": exc.kind})
            raise
        self._poke_reconcile()

    async def cancel_all_orders(self, caller: Caller) -> list[BulkResult]:
        self._seen(caller)
        self._require_trade(caller)
        await self._audit("order.cancel_all", caller, {"decision": "allow"})
        results = await self.venue.cancel_all_orders()
        await self._audit("order.cancel_all.result", caller, {"results": [_bulk_summary(r) for r in results]})
        self._poke_reconcile()
        return results

    # -- reads -----------------------------------------------------------------------------

    async def get_account(self, caller):
        self._seen(caller)
        return await self.venue.get_account()

    async def list_positions(self, caller):
        self._seen(caller)
        return await self.venue.list_positions()

    async def get_position(self, caller, symbol):
        self._seen(caller)
        return await self.venue.get_position(symbol)

    async def get_order(self, caller, order_id, nested=False):
        self._seen(caller)
        return await self.venue.get_order(order_id, nested)

    async def get_order_by_client_id(self, caller, client_order_id):
        self._seen(caller)
        return await self.venue.get_order_by_client_id(client_order_id)

    async def list_orders(self, caller, query: OrderQuery):
        self._seen(caller)
        return await self.venue.list_orders(query)

    async def latest_price(self, caller, symbol, asset_class):
        self._seen(caller)
        return await self.venue.latest_price(symbol, asset_class)

    async def get_clock(self, caller):
        self._seen(caller)
        return await self.venue.get_clock()

    async def get_asset(self, caller, symbol):
        self._seen(caller)
        return await self.venue.get_asset(symbol)

    async def get_leverage(self, caller, symbol):
        self._seen(caller)
        return await self.venue.get_leverage(symbol)

    async def set_leverage(self, caller: Caller, symbol: str, leverage: int) -> int:
        """A leverage setting is a risk decision: above the policy's ceiling it is refused (or
        clamped when the rail says so); the venue never gets a setting the policy forbids."""
        self._seen(caller)
        self._require_trade(caller)
        policy = self.policy()
        asset_class = _asset_class_of(symbol)
        limit, rail_name, on_violation = _leverage_limit(policy, asset_class)
        violation = None
        effective = leverage
        if leverage < 1:
            raise InvalidRequest("leverage must be a whole number of at least 1")
        if policy is None:
            violation = Violation("no_policy", "no_policy: no valid signed policy is active")
        elif self.control.state is TradingState.LOCKED:
            violation = Violation("trading_locked", "trading_locked: the gateway is LOCKED; only cancels are accepted")
        elif limit is not None and leverage > limit:
            if on_violation == "clamp":
                effective = int(limit)
            else:
                violation = Violation(
                    rail_name.rsplit(".", 1)[-1] if rail_name else "max_leverage",
                    f"{rail_name}: leverage {leverage}x requested for {symbol}, limit {limit}x",
                    limit=limit,
                    value=Decimal(leverage),
                )
        decision = self._deny(violation) if violation else Decision(
            allowed=True, policy_version=policy.version, policy_hash=policy.sha256,
            notes=(f"leverage clamped from {leverage}x to {effective}x",) if effective != leverage else (),
        )
        await self._audit(
            "leverage.decision",
            caller,
            {"symbol": symbol, "requested": leverage, "effective": effective, "decision": "allow" if decision.allowed else "deny",
             "codes": list(decision.codes), "policy_version": decision.policy_version},
        )
        if not decision.allowed:
            raise RiskRejected(decision)
        result = await self.venue.set_leverage(symbol, effective)
        self.portfolio.set_leverage(symbol, asset_class, Decimal(result))
        await self._audit("leverage.set", caller, {"symbol": symbol, "leverage": result})
        return result

    async def leverage_limit(self, caller: Caller, symbol: str) -> Decimal | None:
        """The most leverage the policy allows for this symbol (what a bot should be told is
        'available'); 1 when no policy is active (fail closed)."""
        if caller is not None:
            self._seen(caller)
        policy = self.policy()
        if policy is None:
            return Decimal(1)
        return _leverage_limit(policy, _asset_class_of(symbol))[0]

    async def _enforce_leverage(self, caller: Caller, symbol: str, asset_class: AssetClass) -> Violation | None:
        """The venue's own leverage setting must never exceed the policy: exchanges default
        high (Binance: 20x). Checked before the first order in a symbol and after every policy
        change; lowered to the ceiling when above it; an unverifiable setting refuses the order."""
        policy = self.policy()
        if policy is None:
            return None  # the engine refuses with no_policy
        key = (symbol, policy.sha256)
        if key in self._leverage_checked:
            return None
        limit = _leverage_limit(policy, asset_class)[0]
        try:
            current = await self.venue.get_leverage(symbol)
            if limit is not None and current > limit:
                lowered = await self.venue.set_leverage(symbol, max(1, int(limit)))
                await self._audit(
                    "leverage.enforced", caller, {"symbol": symbol, "was": current, "now": lowered, "limit": limit}
                )
                current = lowered
        except GatewayError as exc:
            return Violation(
                "leverage_unverified",
                f"leverage_unverified: could not confirm {symbol}'s leverage at the venue is within {limit}x ({exc.kind})",
            )
        self.portfolio.set_leverage(symbol, asset_class, Decimal(current))
        self._leverage_checked.add(key)
        return None

    async def set_margin_mode(self, caller: Caller, symbol: str, mode: str) -> None:
        self._seen(caller)
        self._require_trade(caller)
        await self._audit("margin_mode.set", caller, {"symbol": symbol, "mode": mode})
        await self.venue.set_margin_mode(symbol, mode)

    # -- reconciliation --------------------------------------------------------------------

    async def reconcile(self) -> bool:
        """Rebuild the book from the venue. On failure the old book ages into stale_account."""
        async with self._reconcile_lock:
            started = self.portfolio.begin_snapshot()
            try:
                account, positions, orders = await asyncio.gather(
                    self.venue.get_account(),
                    self.venue.list_positions(),
                    self.venue.list_orders(OrderQuery(status="open", limit=500, nested=True)),
                )
            except GatewayError as exc:
                self.last_reconcile_error = exc.message
                log.warning("reconcile failed: %s", exc.kind)
                return False
            self.portfolio.apply_snapshot(account, positions, orders, started, self.monotonic())
            self.last_reconcile_error = None
        await self._check_loss_breakers(account)
        return True

    async def _check_loss_breakers(self, account) -> None:
        """Each fresh snapshot is checked against the period loss limits; a trip moves the
        gateway to the policy's target state (never to a less severe one) and is recorded."""
        policy = self.policy()
        if self.breakers is None or policy is None:
            return
        trip = self.breakers.observe(account, policy.policy)
        # Act on the first observation only: an operator's unlock during the same loss period
        # is a conscious decision that the next snapshot must not undo.
        if trip is None or not trip.first or _SEVERITY[self.control.state] >= _SEVERITY[trip.target]:
            return
        previous, _ = self.control.set(trip.target, trip.message, "loss_breaker")
        await self.audit.append(
            "control.breaker",
            {"code": trip.code, "period": trip.period_key, "start_equity": trip.start_equity, "equity": trip.equity,
             "loss_pct": trip.loss_pct, "limit": trip.limit, "from": previous.state.value, "to": trip.target.value},
        )

    async def _reconcile_loop(self) -> None:
        assert self._reconcile_soon is not None
        while True:
            try:
                await asyncio.wait_for(self._reconcile_soon.wait(), timeout=self.reconcile_interval_s)
            except asyncio.TimeoutError:
                pass
            if self._reconcile_soon.is_set():
                # Coalesce a burst of pokes (one per accepted order) into one snapshot: the
                # reservations already count those orders, so the book is safe meanwhile.
                await asyncio.sleep(self.reconcile_debounce_s)
            self._reconcile_soon.clear()
            try:
                await self.reconcile()
            except Exception:  # never let the loop die; a stale book fails closed anyway
                log.exception("reconcile crashed")

    def _poke_reconcile(self) -> None:
        if self._reconcile_soon is not None:
            self._reconcile_soon.set()

    # -- the decision path -----------------------------------------------------------------

    async def _record_and_forward(
        self,
        caller: Caller,
        action: str,
        intent: OrderIntent,
        final: OrderIntent,
        decision: Decision,
        reservation: Reservation | None,
        price: Decimal | None,
        forward: Callable[[], Any],
        extra: dict | None = None,
        companion: Reservation | None = None,
    ) -> Order:
        held = [r for r in (reservation, companion) if r is not None]
        record = {
            "action": action,
            "decision": "allow" if decision.allowed else "deny",
            "codes": list(decision.codes),
            "messages": [v.message for v in decision.violations],
            "policy_version": decision.policy_version,
            "policy_hash": decision.policy_hash,
            "state": self.control.state.value,
            "reference_price": price,
            "intent": _intent_record(intent),
            **(extra or {}),
        }
        if decision.clamped_qty is not None:
            record["clamped_qty"] = decision.clamped_qty
        if decision.notes:
            record["notes"] = list(decision.notes)
        if final is not intent:
            record["forwarded"] = _intent_record(final)  # what actually leaves (clamped, stop attached)
        try:
            await self._audit(f"{action}.decision", caller, record)
        except BaseException:
            self._release(held)
            raise
        for guard in self.guards:
            guard.decided(caller, decision)
        if not decision.allowed:
            if self.last_reconcile_error is not None and set(decision.codes) <= _VENUE_DOWN_CODES:
                # Fail closed, but tell the bot the truth: the venue is down, not the order bad.
                raise UpstreamUnavailable(f"the venue is unreachable; {decision.violations[0].message}")
            raise RiskRejected(decision)

        # A lockdown may have landed while the record was being written.
        halted = self._halted_since_decision(decision)
        if halted is not None:
            self._release(held)
            await self._audit(f"{action}.aborted", caller, {"client_order_id": intent.client_order_id, "code": halted.code})
            raise halted

        try:
            order = await self._tracked(forward())
        except UpstreamUncertain as exc:
            # It may have reached the venue: keep counting it until a snapshot says otherwise.
            await self._audit(f"{action}.uncertain", caller, {"client_order_id": intent.client_order_id, "error": exc.message})
            self._poke_reconcile()
            raise
        except GatewayError as exc:
            self._release(held)
            await self._audit(
                f"{action}.venue_error",
                caller,
                {"client_order_id": intent.client_order_id, "error": exc.kind, "message": exc.message},
            )
            raise
        except Exception:
            log.exception("venue raised unexpectedly")
            await self._audit(f"{action}.uncertain", caller, {"client_order_id": intent.client_order_id, "error": "internal"})
            self._poke_reconcile()
            raise UpstreamUncertain("the venue call failed unexpectedly; the order may or may not be placed") from None

        for r in held:
            self.portfolio.acknowledge(r, order.id)
        for guard in self.guards:
            guard.accepted(caller, order)
        # The decision was durable before the order left; the venue's answer is queued now (its
        # place in the log is fixed) without holding the bot's response for another fsync.
        self._audit_later(f"{action}.accepted", caller, _order_record(order))
        if decision.notes:
            order.gateway_note = "; ".join(decision.notes)
        self._poke_reconcile()
        return order

    def _decide(self, intent: OrderIntent, price: Decimal | None, caller: Caller, action: str):
        """Trading state, policy, rules and reservation: one synchronous step, no await."""
        return self.engine.check_and_reserve(
            intent,
            policy=self.policy(),
            state=self.control.state,
            price=price,
            now=utcnow(),
            monotonic=self.monotonic(),
            caller=caller,
            action=action,
        )

    def _halted_since_decision(self, decision: Decision) -> TradingHalted | None:
        state = self.control.state
        if state is TradingState.LOCKED:
            return TradingHalted("trading_locked: the gateway was LOCKED before the order left", "trading_locked")
        if state is TradingState.REDUCE_ONLY and not decision.reduces_only:
            return TradingHalted("reduce_only: the gateway became REDUCE_ONLY before the order left", "reduce_only")
        return None

    def _release(self, reservations: list[Reservation]) -> None:
        for r in reservations:
            self.portfolio.release(r)

    async def _tracked(self, coro):
        """Run a venue call that may place or close orders, visible to ``drain``."""
        future = asyncio.ensure_future(coro)
        self._in_flight.add(future)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._in_flight.discard(future)
            else:
                future.add_done_callback(self._in_flight.discard)

    async def _audit(self, type: str, caller: Caller | None, data: dict) -> None:
        payload = {"key_id": caller.key_id if caller else None, "dialect": caller.dialect if caller else None, **data}
        await self.audit.append(type, payload)

    def _audit_later(self, type: str, caller: Caller | None, data: dict) -> None:
        payload = {"key_id": caller.key_id if caller else None, "dialect": caller.dialect if caller else None, **data}
        try:
            self.audit.submit(type, payload).add_done_callback(_retrieve)
        except GatewayError:
            log.error("could not queue the audit record %s", type)

    def _deny(self, violation: Violation) -> Decision:
        policy = self.policy()
        return Decision(
            allowed=False,
            violations=(violation,),
            policy_version=policy.version if policy else 0,
            policy_hash=policy.sha256 if policy else "",
        )

    def _seen(self, caller: Caller) -> None:
        for guard in self.guards:
            guard.seen(caller)

    def _check_guards(self, caller: Caller) -> None:
        for guard in self.guards:
            guard.check(caller)

    def _require_trade(self, caller: Caller) -> None:
        if TRADE_SCOPE not in self.scopes(caller.key_id):
            raise Forbidden("this credential is read-only")

    def _require_asset_class(self, caller: Caller, asset_class: AssetClass) -> None:
        allowed = self.asset_classes(caller.key_id)
        if allowed is not None and asset_class not in allowed:
            raise Forbidden(f"this credential may not trade {asset_class.value}")

    async def _unknown_symbol(self, symbol: str, asset_class: AssetClass) -> Violation | None:
        """The venue's asset record is the authority on what a symbol is. A spelling the venue
        maps to another symbol (Alpaca accepts BTCUSD for BTC/USD) or another asset class is
        refused: counted under a second name it would get a second set of limits."""
        asset = self._assets.get(symbol)
        if asset is None:
            try:
                asset = await self.venue.get_asset(symbol)
            except NotFound:
                return Violation("unknown_symbol", f"unknown_symbol: the venue does not know {symbol}")
            except GatewayError:
                return None  # the price lookup fails closed if the venue is unreachable
            if not asset.tradable:
                return Violation("unknown_symbol", f"unknown_symbol: {symbol} is not tradable at the venue")
            self._assets[symbol] = asset
        if asset.symbol != symbol or asset.asset_class is not asset_class:
            return Violation(
                "unknown_symbol",
                f"unknown_symbol: the venue trades {symbol} as {asset.symbol} ({asset.asset_class.value}); "
                f"send {asset.symbol}",
            )
        return None

    async def _reference_price(self, symbol: str, asset_class: AssetClass) -> Decimal | None:
        now = self.monotonic()
        cached = self._prices.get(symbol)
        if cached is not None and now - cached[1] <= self.price_ttl_s:
            return cached[0]
        try:
            price = await self.venue.latest_price(symbol, asset_class)
        except GatewayError:
            return None
        self._prices[symbol] = (price, now)
        self.portfolio.update_mark(symbol, asset_class, price)
        return price


def _retrieve(future: asyncio.Future) -> None:
    """A queued audit write's failure is handled by the log itself (it locks the gateway);
    retrieve it so asyncio does not report it as unhandled."""
    if not future.cancelled():
        future.exception()


def _asset_class_of(symbol: str) -> AssetClass:
    return classify_symbol(symbol) or AssetClass.CRYPTO


def _leverage_limit(policy: PolicyLike | None, asset_class: AssetClass) -> tuple[Decimal | None, str, str]:
    """The tightest leverage ceiling for a symbol: the account's, and its asset class's when the
    policy has one. Returns (limit, rail name, on_violation)."""
    if policy is None:
        return None, "", "reject"
    rails = policy.policy.rails()
    best: tuple[Decimal | None, str, str] = (None, "", "reject")
    for name in ("account.max_leverage", f"asset_classes.{asset_class.value}.leverage"):
        rail = rails.get(name)
        if rail is not None and rail.active and (best[0] is None or rail.limit < best[0]):
            best = (rail.limit, name, rail.on_violation)
    return best


def _replacement_intent(old: Order, change: OrderReplace) -> OrderIntent:
    return OrderIntent(
        symbol=old.symbol,
        asset_class=old.asset_class,
        side=old.side,
        type=old.type,
        time_in_force=change.time_in_force or old.time_in_force,
        qty=change.qty if change.qty is not None else (old.qty - old.filled_qty if old.qty is not None else None),
        notional=old.notional if change.qty is None and old.qty is None else None,
        limit_price=change.limit_price if change.limit_price is not None else old.limit_price,
        stop_price=change.stop_price if change.stop_price is not None else old.stop_price,
        trail_price=change.trail if change.trail is not None and old.trail_price is not None else old.trail_price,
        trail_percent=change.trail if change.trail is not None and old.trail_percent is not None else old.trail_percent,
        client_order_id=change.client_order_id or old.client_order_id,
        extended_hours=old.extended_hours,
        order_class=old.order_class,
        take_profit=_take_profit_of(old),
        stop_loss=_stop_loss_of(old),
    )


def _take_profit_of(order: Order) -> TakeProfit | None:
    for leg in order.legs:
        if leg.type is OrderType.LIMIT and leg.limit_price is not None:
            return TakeProfit(leg.limit_price)
    return None


def _stop_loss_of(order: Order) -> StopLoss | None:
    for leg in order.legs:
        if leg.type in (OrderType.STOP, OrderType.STOP_LIMIT) and leg.stop_price is not None:
            return StopLoss(leg.stop_price, leg.limit_price)
    return None


def _intent_record(intent: OrderIntent) -> dict:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(intent).items() if v is not None and v is not False}


def _order_record(order: Order) -> dict:
    return {
        "order_id": order.id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": order.qty,
        "notional": order.notional,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "filled_avg_price": order.filled_avg_price,
    }


def _bulk_summary(result: BulkResult) -> dict:
    return {"id": result.id, "status": result.status}
