"""The order path, top to bottom: decide (and count) in one synchronous step, record the
decision durably, re-check the trading state, forward, settle the ledger with the answer.

Nothing reaches the venue before its decision is on disk, and no order is forwarded once a
lockdown has been set (``drain`` waits for the ones already on their way). Every order that
leaves carries a client id the decision record names, replaces and closes included, so every
order at the broker maps to a decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

from ..errors import (
    GatewayError,
    OrderRejected,
    RiskRejected,
    TradingHalted,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from ..guards.base import Guard
from ..ledger import Ledger, LedgerOrder, Role
from ..ledger.orders import valuation_of
from ..model import (
    Caller,
    Decision,
    Order,
    OrderIntent,
    TradingState,
    Violation,
    utcnow,
)
from ..ports import VenueCapabilities
from ..risk.engine import PolicyLike, RiskEngine

log = logging.getLogger("gateway.pipeline.order_path")

# Denials that only mean "the venue did not answer": reported as 503, not as a rejection.
VENUE_DOWN_CODES = frozenset({"stale_account", "no_reference_price", "leverage_unverified"})
# Venue errors after which the order is certainly not at the venue.
_DEFINITE = ("invalid", "insufficient_funds", "order_rejected", "forbidden", "not_found", "too_large", "rate_limited")


CLIENT_ID_MAX = 36  # Binance's limit (Alpaca allows 128)


def new_client_id(kind: str = "gw") -> str:
    """A gateway client id: ``kind``, then 104 random bits; at most 36 characters."""
    client_id = f"{kind}-{uuid.uuid4().hex[:26]}"
    assert len(client_id) <= CLIENT_ID_MAX
    return client_id


class OrderPath:
    def __init__(
        self,
        *,
        engine: RiskEngine,
        ledger: Ledger,
        control: Any,
        audit: Any,
        policy: Callable[[], PolicyLike | None],
        guards: Sequence[Guard] = (),
        venue_down: Callable[[], bool] = lambda: False,
        capabilities: VenueCapabilities = VenueCapabilities(),
        refuse_entry: Callable[[str], Violation | None] = lambda symbol: None,
        on_forwarded: Callable[[LedgerOrder], Awaitable[None]] | None = None,
        on_uncertain: Callable[[LedgerOrder], None] = lambda order: None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.engine = engine
        self.ledger = ledger
        self.control = control
        self.audit = audit
        self.policy = policy
        self.guards = tuple(guards)
        self.venue_down = venue_down
        self.capabilities = capabilities
        self.refuse_entry = refuse_entry
        self.on_forwarded = on_forwarded
        self.on_uncertain = on_uncertain
        self.monotonic = monotonic
        self._in_flight: set[asyncio.Future] = set()

    # -- decide ----------------------------------------------------------------------------

    def decide(
        self,
        intent: OrderIntent,
        price: Decimal | None,
        caller: Caller,
        action: str,
        *,
        replaces: LedgerOrder | None = None,
    ) -> tuple[Decision, OrderIntent, LedgerOrder | None]:
        """Trading state, policy, rules, and (when allowed) the ledger entry that counts the
        order: one synchronous step, no await, so no two orders can both take the last room."""
        self.ledger.current(self.monotonic())
        if intent.client_order_id and not self.ledger.client_id_free(intent.client_order_id):
            # Another request with this id got here first (checked again in this synchronous
            # step: the earlier check was before the awaits of the market facts).
            raise OrderRejected("client_order_id must be unique")
        if replaces is not None:
            self.ledger.suspend(replaces)
        decision, final, counted = self.engine.check_and_reserve(
            intent,
            policy=self.policy(),
            state=self.control.state,
            price=price,
            now=utcnow(),
            monotonic=self.monotonic(),
            caller=caller,
            action=action,
            reduce_only_enforced=self.capabilities.reduce_only,
        )
        if decision.allowed and not decision.reduces_only:
            refusal = self.refuse_entry(intent.symbol)
            if refusal is not None:
                if counted is not None:
                    self.engine.portfolio.uncount(counted)
                decision = self.deny(refusal)
        if not decision.allowed:
            if replaces is not None:
                self.ledger.resume(replaces)
            return decision, final, None
        role = Role.EXIT if decision.reduces_only else Role.ENTRY
        valuation = valuation_of(self.engine.portfolio.mark(final.symbol) or price, final.limit_price, final.stop_price)
        attached = final.stop_loss is not None and intent.stop_loss is None
        gateway_stop = None
        if attached and not self._carries_leg(final):
            # The venue cannot carry the stop as a leg: the order leaves without it and the
            # gateway places its own stop after the fill (the protective-stop keeper).
            gateway_stop = final.stop_loss
            final = replace(final, stop_loss=None, order_class=intent.order_class)
            how = (
                "the venue has no resting stop for it: the gateway emulates the stop from the price feed"
                if final.asset_class in self.capabilities.no_resting_stops
                else "the gateway places the stop after the fill"
            )
            decision = replace(decision, notes=(*decision.notes, f"stop_loss: {how}"))
        entry = self.ledger.record(
            final, counted, role, caller.key_id, valuation, replaces=replaces, protective_stop=attached
        )
        entry.gateway_stop = gateway_stop
        return decision, final, entry

    def _carries_leg(self, intent: OrderIntent) -> bool:
        caps = self.capabilities
        if not caps.native_legs(intent.asset_class, intent.order_class):
            return False
        whole = intent.qty is not None and intent.qty == intent.qty.to_integral_value()
        return whole or not caps.legs_need_whole_qty

    def deny(self, violation: Violation) -> Decision:
        policy = self.policy()
        return Decision(
            allowed=False,
            violations=(violation,),
            policy_version=policy.version if policy else 0,
            policy_hash=policy.sha256 if policy else "",
        )

    # -- record, re-check, forward, settle -------------------------------------------------

    async def run(
        self,
        caller: Caller,
        action: str,
        intent: OrderIntent,
        final: OrderIntent,
        decision: Decision,
        entry: LedgerOrder | None,
        price: Decimal | None,
        forward: Callable[[], Awaitable[Order]],
        extra: dict | None = None,
    ) -> Order:
        record = {
            "action": action,
            "decision": "allow" if decision.allowed else "deny",
            "codes": list(decision.codes),
            "messages": [v.message for v in decision.violations],
            "policy_version": decision.policy_version,
            "policy_hash": decision.policy_hash,
            "state": self.control.state.value,
            "reference_price": price,
            "client_order_id": final.client_order_id,
            "intent": intent_record(intent),
            **(extra or {}),
        }
        if entry is not None:
            record["role"] = entry.role.value
            if entry.gateway_stop is not None:  # owed once it fills: the journal remembers it
                record["gateway_stop"] = {"stop_price": entry.gateway_stop.stop_price,
                                          "limit_price": entry.gateway_stop.limit_price}
            if entry.legs:
                record["legs"] = [{"client_order_id": leg.client_order_id, "role": leg.role.value} for leg in entry.legs]
        if decision.clamped_qty is not None:
            record["clamped_qty"] = decision.clamped_qty
        if decision.notes:
            record["notes"] = list(decision.notes)
        if final is not intent:
            record["forwarded"] = intent_record(final)  # what actually leaves (clamped, stop attached)
        try:
            await self.audit_now(f"{action}.decision", caller, record)
        except BaseException:
            if entry is not None:
                self.ledger.refused(entry)
            raise
        for guard in self.guards:
            guard.decided(caller, decision)
        if not decision.allowed:
            if self.venue_down() and set(decision.codes) <= VENUE_DOWN_CODES:
                # Fail closed, but tell the bot the truth: the venue is down, not the order bad.
                raise UpstreamUnavailable(f"the venue is unreachable; {decision.violations[0].message}")
            raise RiskRejected(decision)
        assert entry is not None

        # A lockdown may have landed while the record was being written.
        halted = self.halted_since(decision)
        if halted is not None:
            self.ledger.refused(entry)
            await self.audit_now(f"{action}.aborted", caller, {"client_order_id": entry.client_order_id, "code": halted.code})
            raise halted

        try:
            order = await self.tracked(forward())
        except UpstreamUncertain as exc:
            await self._uncertain(caller, action, entry, exc.message)
            raise
        except GatewayError as exc:
            if exc.kind not in _DEFINITE and not isinstance(exc, UpstreamUnavailable):
                await self._uncertain(caller, action, entry, exc.message)
                raise UpstreamUncertain(f"the venue's answer was unclear ({exc.kind}); the order may be placed") from None
            self.ledger.refused(entry)
            await self.audit_now(
                f"{action}.venue_error",
                caller,
                {"client_order_id": entry.client_order_id, "error": exc.kind, "message": exc.message},
            )
            raise
        except Exception:
            log.exception("venue raised unexpectedly")
            await self._uncertain(caller, action, entry, "internal")
            raise UpstreamUncertain("the venue call failed unexpectedly; the order may or may not be placed") from None

        self.ledger.acknowledged(entry, order)
        for guard in self.guards:
            guard.accepted(caller, order)
        # The decision was durable before the order left; the venue's answer is queued now (its
        # place in the log is fixed) without holding the bot's response for another fsync.
        self.audit_later(f"{action}.accepted", caller, order_record(order, entry))
        if decision.notes:
            order.gateway_note = "; ".join(decision.notes)
        if self.on_forwarded is not None:
            await self.on_forwarded(entry)
        return order

    async def _uncertain(self, caller: Caller, action: str, entry: LedgerOrder, error: str) -> None:
        self.ledger.uncertain(entry)  # it may be at the venue: keep counting it until resolved
        await self.audit_now(f"{action}.uncertain", caller, {"client_order_id": entry.client_order_id, "error": error})
        self.on_uncertain(entry)

    def halted_since(self, decision: Decision) -> TradingHalted | None:
        state = self.control.state
        if state is TradingState.LOCKED:
            return TradingHalted("trading_locked: the gateway was LOCKED before the order left", "trading_locked")
        if state is TradingState.REDUCE_ONLY and not decision.reduces_only:
            return TradingHalted("reduce_only: the gateway became REDUCE_ONLY before the order left", "reduce_only")
        return None

    async def tracked(self, coro: Awaitable[Any]) -> Any:
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

    async def drain(self, timeout_s: float = 10.0) -> int:
        pending = [f for f in self._in_flight if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        return len(pending)

    async def audit_now(self, type: str, caller: Caller | None, data: dict) -> None:
        payload = {"key_id": caller.key_id if caller else None, "dialect": caller.dialect if caller else None, **data}
        await self.audit.append(type, payload)

    def audit_later(self, type: str, caller: Caller | None, data: dict) -> None:
        payload = {"key_id": caller.key_id if caller else None, "dialect": caller.dialect if caller else None, **data}
        try:
            self.audit.submit(type, payload).add_done_callback(_retrieve)
        except GatewayError:
            log.error("could not queue the audit record %s", type)


def _retrieve(future: asyncio.Future) -> None:
    """A queued audit write's failure is handled by the log itself (it locks the gateway);
    retrieve it so asyncio does not report it as unhandled."""
    if not future.cancelled():
        future.exception()


def intent_record(intent: OrderIntent) -> dict:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(intent).items() if v is not None and v is not False}


def order_record(order: Order, entry: LedgerOrder | None = None) -> dict:
    record = {
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
    if entry is not None and entry.legs:
        # Each venue leg with the ledger leg (and role) it was matched to: the journal's key.
        record["legs"] = [
            {"order_id": leg.venue_id, "client_order_id": leg.client_order_id, "role": leg.role.value}
            for leg in entry.legs
        ]
    elif order.legs:
        record["legs"] = [{"order_id": leg.id, "client_order_id": leg.client_order_id} for leg in order.legs]
    if entry is not None and entry.client_order_id != order.client_order_id:
        record["gateway_client_order_id"] = entry.client_order_id
    return record
