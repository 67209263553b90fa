"""The gateway's backend: every bot request on its way to the venue.

For an order: admission (one table) → market facts (symbol, reference price, leverage) → the
order path (decide and count in the ledger in one synchronous step → durable record → state
re-check → venue → settle the ledger). Reads pass through. Cancels only remove risk, so they
are allowed in every state, and recorded.

The ledger is kept current by the venue's event stream; the reconciler is its safety net.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from ..audit.log import AuditLog
from ..control.state import TradingControl
from ..errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    OrderRejected,
    RiskRejected,
    TradingHalted,
    UpstreamUncertain,
)
from ..guards.base import Guard
from ..ledger import Change, Ledger, LedgerOrder, Phase
from ..ledger.journal import Journal
from ..market_data import AccountService, MarketReads
from ..model import (
    AssetClass,
    BulkResult,
    Caller,
    Decision,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    StopLoss,
    StreamStatus,
    TakeProfit,
    TimeInForce,
    TradingState,
    VenueEvent,
    describes,
    Violation,
)
from ..ports import Backend, Venue
from ..risk.engine import PolicyLike, RiskEngine
from .admission import TRADE_SCOPE, Admission
from .budget import UpstreamBudget
from .facts import MarketFacts, asset_class_of, leverage_limit
from .order_path import OrderPath, new_client_id
from .protective import ProtectiveStops
from .reconciler import Reconciler
from .uncertain import UncertainResolver

if TYPE_CHECKING:
    from ..control.breakers import LossBreakers

log = logging.getLogger("gateway.pipeline")

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.LOCKED: 2}
STREAM_RECONCILE_S = 60.0  # with an event stream, reconcile is only the safety net


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
        stream_reconcile_interval_s: float = STREAM_RECONCILE_S,
        price_ttl_s: float = 5.0,
        reconcile_debounce_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision, float], None] | None = None,
        guards: Sequence[Guard] = (),
        breakers: "LossBreakers | None" = None,
        ledger: Ledger | None = None,
        alert: Callable[[str, dict], None] = lambda kind, data: None,
    ):
        self.venue = venue
        self.engine = engine
        self.portfolio = engine.portfolio
        self.ledger = ledger if ledger is not None else Ledger(engine.portfolio)
        self.control = control
        self.audit = audit
        self.policy = policy
        self.monotonic = monotonic
        self.on_decision = on_decision
        self.guards = tuple(guards)
        self.breakers = breakers
        self.streaming = venue.capabilities.event_stream
        self.admission = Admission(scopes=scopes, asset_classes=asset_classes, guards=guards)
        self.facts = MarketFacts(venue, engine.portfolio, policy, self._audit, price_ttl_s=price_ttl_s, monotonic=monotonic)
        self.reconciler = Reconciler(
            venue,
            self.ledger,
            interval_s=stream_reconcile_interval_s if self.streaming else reconcile_interval_s,
            debounce_s=reconcile_debounce_s,
            on_account=self._check_loss_breakers,
            audit=self._audit_later,
            monotonic=monotonic,
        )
        self.resolver = UncertainResolver(venue, self.ledger, self._audit_later, monotonic=monotonic)
        self.protective = ProtectiveStops(
            venue,
            self.ledger,
            lambda t, d: self._audit(t, None, d),
            alert=alert,
            on_uncertain=self.resolver.track,
            price=self.facts.reference_price,
        )
        self.orders = OrderPath(
            engine=engine,
            ledger=self.ledger,
            control=control,
            audit=audit,
            policy=policy,
            guards=guards,
            venue_down=lambda: self.reconciler.last_error is not None,
            capabilities=venue.capabilities,
            refuse_entry=self.protective.refusal,
            on_forwarded=self._forwarded,
            on_uncertain=self.resolver.track,
            monotonic=monotonic,
        )
        self._unsubscribe = venue.subscribe(self._on_venue_event)
        # Bots' reads: market data through one cache (coalesced, per-address limits) and the
        # account's settings, whose changes are policy decisions (see market_data.py).
        self.market_reads = MarketReads(venue)
        self.account_service = AccountService(venue, audit=audit, scopes=scopes)
        # The account's request budget: every request the venue sends is counted; bots' reads
        # are refused (429 with Retry-After) before they would eat into what orders need.
        self.budget = UpstreamBudget(venue.capabilities.rate_limit_per_min)
        venue.request_hook = self.budget.spend
        self.market_reads.before_upstream = self.budget.admit_read

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, journal: Journal | None = None) -> None:
        """Restore what the journal (the audit log) remembers, take the first snapshot (a failure
        leaves the book stale: orders fail closed), then keep reconciling."""
        if journal is not None:
            self.restore(journal)
        await self.reconciler.run()
        self.reconciler.start()
        for guard in self.guards:
            restore = getattr(guard, "restore_orders", None)
            if restore is not None:
                restore(self._open_orders_by_credential())

    def restore(self, journal: Journal) -> None:
        """Who placed which order, the stops the gateway still owes, suspended credentials."""
        self.ledger.journal = journal
        for symbol, (stop, asset_class, side) in journal.stop_targets.items():
            try:
                self.protective.owe(symbol, AssetClass(asset_class), stop, Side(side).opposite)
            except ValueError:
                continue
        for guard in self.guards:
            restore = getattr(guard, "restore_suspensions", None)
            if restore is not None:
                restore(journal.suspended)

    def _open_orders_by_credential(self) -> dict[str, set[str]]:
        owned: dict[str, set[str]] = {}
        for order in self.ledger.open_orders():
            if order.key_id is not None and order.venue_id is not None:
                owned.setdefault(order.key_id, set()).add(order.venue_id)
        return owned

    async def stop(self) -> None:
        self._unsubscribe()
        await self.reconciler.stop()
        await self.resolver.close()
        await self.protective.close()

    async def drain(self, timeout_s: float = 10.0) -> int:
        """Wait for orders already forwarded to the venue; returns how many were waited on."""
        return await self.orders.drain(timeout_s)

    async def reconcile(self) -> bool:
        return await self.reconciler.run()

    @property
    def last_reconcile_error(self) -> str | None:
        return self.reconciler.last_error

    def _on_venue_event(self, event: VenueEvent) -> None:
        self.ledger.apply(event)
        if isinstance(event, OrderUpdate) and event.price is not None and event.price > 0:
            # A fill is the freshest price there is: no lookup needed for a while.
            self.facts.observe_price(event.order.symbol, event.order.asset_class, event.price)
        if isinstance(event, StreamStatus):
            if event.connected:
                self.reconciler.soon()  # events may have been missed while it was down
            self._audit_later("venue.stream", {"connected": event.connected, "reason": event.reason})

    async def _forwarded(self, entry: LedgerOrder) -> None:
        if entry.gateway_stop is not None:
            self.protective.expect(entry.symbol, entry.asset_class, entry.gateway_stop, entry.side.opposite)
            if entry.filled_qty > 0:
                # Filled at once: the bot hears back only once its position is protected.
                await self.protective.ensure(entry.symbol)
        if not self.ledger.stream_live:
            self.reconciler.soon()  # without a stream, a snapshot is how fills are learned

    # -- orders ----------------------------------------------------------------------------

    async def submit_order(self, caller: Caller, intent: OrderIntent) -> Order:
        self.admission.admit(caller, "submit", intent.asset_class)
        started = self.monotonic()
        if intent.client_order_id is None:
            # Our own id makes a retry after an uncertain answer safe to resolve upstream.
            intent = replace(intent, client_order_id=new_client_id())
        else:
            existing = self.ledger.get(intent.client_order_id)
            if existing is not None and not self.ledger.client_id_free(intent.client_order_id):
                return await self._repeat(existing, intent)
        decision = None
        try:
            problem = await self.facts.unknown_symbol(intent.symbol, intent.asset_class)
            if problem is None:
                problem = await self.facts.enforce_leverage(caller, intent.symbol, intent.asset_class)
            price = await self.facts.reference_price(intent.symbol, intent.asset_class)
            if problem is not None:
                decision, final, entry = self.orders.deny(problem), intent, None
            else:
                decision, final, entry = self.orders.decide(intent, price, caller, "submit")
            return await self.orders.run(
                caller, "order", intent, final, decision, entry, price, self._sender(decision, final, self.venue.submit_order)
            )
        finally:
            if self.on_decision is not None and decision is not None:
                self.on_decision(decision, self.monotonic() - started)

    async def submit_orders(self, caller: Caller, intents: Sequence[OrderIntent]) -> list[Order | GatewayError]:
        """A batch: every order's market facts first, then every order decided in ONE synchronous
        step (no await between decisions: the batch takes its room at once, each order judged
        with the ones before it counted), then each one recorded and forwarded (or its denial
        recorded), in order. One result per order: the order, or the error that refused it."""
        prepared: list[tuple[OrderIntent, Violation | None, Decimal | None] | Order | GatewayError] = []
        for intent in intents:
            try:
                self.admission.admit(caller, "submit", intent.asset_class)
                if intent.client_order_id is None:
                    intent = replace(intent, client_order_id=new_client_id())
                else:
                    existing = self.ledger.get(intent.client_order_id)
                    if existing is not None and not self.ledger.client_id_free(intent.client_order_id):
                        prepared.append(await self._repeat(existing, intent))
                        continue
                problem = await self.facts.unknown_symbol(intent.symbol, intent.asset_class)
                if problem is None:
                    problem = await self.facts.enforce_leverage(caller, intent.symbol, intent.asset_class)
                prepared.append((intent, problem, await self.facts.reference_price(intent.symbol, intent.asset_class)))
            except GatewayError as exc:
                prepared.append(exc)
        decided: list = []
        for item in prepared:  # the one synchronous step
            if not isinstance(item, tuple):
                decided.append(item)
                continue
            intent, problem, price = item
            try:
                if problem is not None:
                    decided.append((intent, self.orders.deny(problem), intent, None, price))
                else:
                    decided.append((intent, *self.orders.decide(intent, price, caller, "submit"), price))
            except GatewayError as exc:
                decided.append(exc)
        results: list[Order | GatewayError] = []
        for done, item in enumerate(decided):
            if not isinstance(item, tuple):
                results.append(item)
                continue
            intent, decision, final, entry, price = item
            started = self.monotonic()
            try:
                results.append(
                    await self.orders.run(
                        caller, "order", intent, final, decision, entry, price,
                        self._sender(decision, final, self.venue.submit_order),
                    )
                )
            except GatewayError as exc:
                results.append(exc)
            except BaseException:
                # Cancelled mid-batch: the orders not yet recorded never leave; release their room.
                for later in decided[done + 1 :]:
                    if isinstance(later, tuple) and later[3] is not None:
                        self.ledger.refused(later[3])
                raise
            finally:
                if self.on_decision is not None:
                    self.on_decision(decision, self.monotonic() - started)
        return results

    def _sender(self, decision: Decision, final: OrderIntent, send: Callable[[OrderIntent], Awaitable[Order]]):
        """The venue call for an allowed order; an exit first makes room among the gateway's
        own stops (a venue that holds shares for open sells would refuse it otherwise)."""

        async def forward() -> Order:
            if decision.reduces_only and final.qty is not None:
                await self.protective.make_room(final.symbol, final.side, final.qty)
            return await send(final)

        return forward

    async def _repeat(self, existing: LedgerOrder, intent: OrderIntent) -> Order:
        """A client id the ledger already has: the same order again is answered with that
        order (a retry is safe); a different order is the venue's duplicate-id refusal."""
        if not describes(intent, existing):
            raise OrderRejected("client_order_id must be unique")
        if existing.phase is Phase.UNCERTAIN:
            await self.resolver.check_now(existing)
            if existing.phase is Phase.UNCERTAIN:
                raise UpstreamUncertain("the first attempt's outcome is still being resolved; retry shortly")
        if existing.venue_id is None:
            raise UpstreamUncertain("the first attempt is still on its way to the venue; retry shortly")
        return await self.venue.get_order(existing.venue_id)

    async def replace_order(self, caller: Caller, order_id: str, change: OrderReplace) -> Order:
        """A replace is a new order: judged in full, without the order it replaces."""
        old = self.ledger.find(order_id)
        if old is None:
            old = self.ledger.remember_venue_order(await self.venue.get_order(order_id, nested=True))
        self.admission.admit(caller, "replace", old.asset_class)
        venue_id = old.venue_id or order_id
        if not old.is_open or old.phase is not Phase.LIVE:
            reason = old.status.value if old.phase is Phase.DONE else "not yet confirmed by the venue"
            await self._audit("order.replace.refused", caller, {"order_id": order_id, "reason": reason})
            raise OrderRejected(f"order {order_id} is {reason} and cannot be replaced")
        change = replace(change, client_order_id=change.client_order_id or new_client_id())
        intent = _replacement_intent(old, change)
        price = await self.facts.reference_price(intent.symbol, intent.asset_class)
        decision, final, entry = self.orders.decide(intent, price, caller, "replace", replaces=old)
        final_change = replace(change, qty=final.qty) if decision.clamped_qty is not None else change
        return await self.orders.run(
            caller,
            "replace",
            intent,
            final,
            decision,
            entry,
            price,
            lambda: self.venue.replace_order(venue_id, final_change),
            extra={"replaces": venue_id, "replaces_client_order_id": old.client_order_id},
        )

    async def close_position(
        self, caller: Caller, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        """A close is a market order on the closing side, with a client id of the gateway's,
        judged like any order (an exit up to the position)."""
        # Who may close comes first: a read-only credential learns nothing about the position.
        self.admission.admit(caller, "close", asset_class_of(symbol))
        position = self.portfolio.position(symbol)
        book = self.portfolio.book(symbol)
        if position == 0 or book is None:
            found = await self.venue.get_position(symbol)  # NotFound when there is none
            await self.reconciler.run()
            position, asset_class = found.qty, found.asset_class
        else:
            asset_class = book.asset_class
        self.admission.admit(caller, "close", asset_class)
        if position == 0:
            raise NotFound(f"no open position in {symbol}")
        if qty is not None and (qty <= 0 or qty > abs(position)):
            raise InvalidRequest(f"qty must be more than 0 and at most the position ({abs(position)})")
        if percentage is not None and not (0 < percentage <= 100):
            raise InvalidRequest("percentage must be more than 0 and at most 100")
        close_qty = qty if qty is not None else abs(position) * (percentage or Decimal(100)) / 100
        intent = OrderIntent(
            symbol=symbol,
            asset_class=asset_class,
            side=Side.SELL if position > 0 else Side.BUY,
            type=OrderType.MARKET,
            time_in_force=TimeInForce.GTC if asset_class is AssetClass.CRYPTO else TimeInForce.DAY,
            qty=close_qty,
            client_order_id=new_client_id("gw-close"),
            reduce_only=True,
        )
        price = book.mark if book is not None and book.mark > 0 else None
        if price is None:
            price = await self.facts.reference_price(symbol, asset_class)
        decision, final, entry = self.orders.decide(intent, price, caller, "close")
        return await self.orders.run(
            caller, "close", intent, final, decision, entry, price, self._sender(decision, final, self.venue.submit_order)
        )

    async def close_all_positions(self, caller: Caller, cancel_orders: bool = False) -> list[BulkResult]:
        """Closing everything only reduces risk, so it passes every state but LOCKED; each close
        is its own recorded decision with its own client id."""
        self.admission.admit(caller, "close_all")
        state = self.control.current
        allowed = state.state is not TradingState.LOCKED
        await self._audit(
            "positions.close_all",
            caller,
            {"decision": "allow" if allowed else "deny", "cancel_orders": cancel_orders, "state": state.state.value},
        )
        if not allowed:
            raise TradingHalted("trading_locked: the gateway is LOCKED; only cancels are accepted", "trading_locked")
        if cancel_orders:
            await self.cancel_all_orders(caller)
        results = []
        for symbol, book in list(self.portfolio.books.items()):
            if book.position_qty == 0:
                continue
            try:
                order = await self.close_position(caller, symbol)
                results.append(BulkResult(symbol, 200, order))
            except RiskRejected as exc:
                results.append(BulkResult(symbol, 403, message=exc.message))
            except Exception as exc:  # one symbol's failure must not stop the others
                status = 404 if isinstance(exc, NotFound) else 500
                results.append(BulkResult(symbol, status, message=getattr(exc, "message", "close failed")))
        return results

    async def cancel_order(self, caller: Caller, order_id: str) -> None:
        self.admission.admit(caller, "cancel")
        entry = self.ledger.find(order_id)
        venue_id = entry.venue_id if entry is not None and entry.venue_id else order_id
        await self._audit("order.cancel", caller, {"order_id": venue_id, "decision": "allow"})
        try:
            await self.venue.cancel_order(venue_id)
        except Exception as exc:
            await self._audit("order.cancel.error", caller, {"order_id": venue_id, "error": getattr(exc, "kind", "internal")})
            raise
        self._forwarded_cancel()

    async def cancel_all_orders(self, caller: Caller) -> list[BulkResult]:
        self.admission.admit(caller, "cancel_all")
        await self._audit("order.cancel_all", caller, {"decision": "allow"})
        results = await self.venue.cancel_all_orders()
        await self._audit("order.cancel_all.result", caller, {"results": [_bulk_summary(r) for r in results]})
        self._forwarded_cancel()
        return results

    def _forwarded_cancel(self) -> None:
        if not self.ledger.stream_live:
            self.reconciler.soon()

    # -- reads (a bot's reads spend the account's budget: admitted only while orders keep room)

    async def get_account(self, caller):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_account()

    async def list_positions(self, caller):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.list_positions()

    async def get_position(self, caller, symbol):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_position(symbol)

    async def get_order(self, caller, order_id, nested=False):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_order(order_id, nested)

    async def get_order_by_client_id(self, caller, client_order_id):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_order_by_client_id(client_order_id)

    async def list_orders(self, caller, query: OrderQuery):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.list_orders(query)

    async def latest_price(self, caller, symbol, asset_class):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.latest_price(symbol, asset_class)

    async def get_clock(self, caller):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_clock()

    async def get_asset(self, caller, symbol):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_asset(symbol)

    async def get_leverage(self, caller, symbol):
        self.admission.admit(caller, "read")
        self.budget.admit_read()
        return await self.venue.get_leverage(symbol)

    def order_events(self, caller: Caller, sink) -> Callable[[], None]:
        """This credential's order events from the ledger (its own orders only: another bot's
        orders are not its business), and the account's position events."""
        self.admission.admit(caller, "read")

        def forward(change: Change) -> None:
            event = change.event
            if isinstance(event, PositionUpdate):
                sink(event)
            elif isinstance(event, OrderUpdate) and change.order is not None and change.order.key_id == caller.key_id:
                sink(event)

        self.ledger.listeners.append(forward)

        def unsubscribe() -> None:
            if forward in self.ledger.listeners:
                self.ledger.listeners.remove(forward)

        return unsubscribe

    # -- leverage and margin ---------------------------------------------------------------

    async def set_leverage(self, caller: Caller, symbol: str, leverage: int) -> int:
        """A leverage setting is a risk decision: above the policy's ceiling it is refused (or
        clamped when the rail says so); the venue never gets a setting the policy forbids."""
        asset_class = asset_class_of(symbol)
        self.admission.admit(caller, "leverage", asset_class)
        policy = self.policy()
        limit, rail_name, on_violation = leverage_limit(policy, asset_class)
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
        decision = self.orders.deny(violation) if violation else Decision(
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
            self.admission.admit(caller, "read")
        policy = self.policy()
        if policy is None:
            return Decimal(1)
        return leverage_limit(policy, asset_class_of(symbol))[0]

    async def set_margin_mode(self, caller: Caller, symbol: str, mode: str) -> None:
        self.admission.admit(caller, "margin_mode", asset_class_of(symbol))
        await self._audit("margin_mode.set", caller, {"symbol": symbol, "mode": mode})
        await self.venue.set_margin_mode(symbol, mode)

    # -- loss breakers ---------------------------------------------------------------------

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

    # -- audit -----------------------------------------------------------------------------

    async def _audit(self, type: str, caller: Caller | None, data: dict) -> None:
        await self.orders.audit_now(type, caller, data)

    def _audit_later(self, type: str, data: dict) -> None:
        self.orders.audit_later(type, None, data)


def _replacement_intent(old: LedgerOrder, change: OrderReplace) -> OrderIntent:
    take_profit = next((TakeProfit(leg.limit_price) for leg in old.legs if leg.type is OrderType.LIMIT and leg.limit_price), None)
    stop_loss = next(
        (StopLoss(leg.stop_price, leg.limit_price) for leg in old.legs if leg.stop_price is not None), None
    )
    return OrderIntent(
        symbol=old.symbol,
        asset_class=old.asset_class,
        side=old.side,
        type=old.type,
        time_in_force=change.time_in_force or old.time_in_force,
        qty=change.qty if change.qty is not None else (old.remaining if old.qty is not None else None),
        notional=old.notional if change.qty is None and old.qty is None else None,
        limit_price=change.limit_price if change.limit_price is not None else old.limit_price,
        stop_price=change.stop_price if change.stop_price is not None else old.stop_price,
        trail_price=change.trail if change.trail is not None and old.trail_price is not None else old.trail_price,
        trail_percent=change.trail if change.trail is not None and old.trail_percent is not None else old.trail_percent,
        client_order_id=change.client_order_id,
        extended_hours=old.extended_hours,
        # A leg replaced on its own is judged as the simple order it becomes.
        order_class=old.order_class if old.parent is None else OrderClass.SIMPLE,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )


def _bulk_summary(result: BulkResult) -> dict:
    return {"id": result.id, "status": result.status}
