"""Protective stops owned by the gateway (``stop_loss: attach``).

The gateway's stop for a symbol is kept sized to the position: placed after the fill where the
venue cannot carry it as a leg, resized on every fill and partial close, stepped down before a
bot's exit that its held shares would block (Alpaca holds shares for open sells), restored for
the remainder afterwards, and cancelled when the position is flat. It is sent reduce-only, so it
can never open a position where the venue enforces that; where it does not, it is never larger
than the position's exit capacity.

Where the venue takes no stop orders for an asset class (Alpaca options), the stop is emulated:
the keeper watches the reference price every ``emulate_poll_s`` and, once it crosses the stop,
sends a reduce-only market order for the protected quantity (recorded as the trigger).

When a stop cannot be placed after ``attempts`` tries, the position is *unprotected*: that is an
audit record, an alert, and entries in that symbol are refused (``position_unprotected``) until
a stop is in place again: never only a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from ..errors import GatewayError, UpstreamUncertain
from ..ledger import PROTECTIVE_PREFIX, Change, Ledger, LedgerOrder, Phase, Role
from ..ledger.orders import valuation_of
from ..model import (
    AssetClass,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    StopLoss,
    TimeInForce,
    Violation,
)
from ..ports import Venue
from .order_path import new_client_id

log = logging.getLogger("gateway.pipeline.protective")

ZERO = Decimal(0)
CRYPTO_STOP_COLLAR = Decimal("0.05")  # Alpaca crypto has stop_limit only: limit 5% beyond the stop


@dataclass(frozen=True, slots=True)
class StopTarget:
    symbol: str
    asset_class: AssetClass
    stop_price: Decimal
    limit_price: Decimal | None = None
    side: Side | None = None  # the closing side it protects (SELL for a long)


class ProtectiveStops:
    def __init__(
        self,
        venue: Venue,
        ledger: Ledger,
        record: Callable[[str, dict], Awaitable[None]],
        *,
        alert: Callable[[str, dict], None] = lambda kind, data: None,
        on_uncertain: Callable[[LedgerOrder], None] = lambda order: None,
        attempts: int = 3,
        retry_delay_s: float = 0.5,
        retry_after_failure_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        price: Callable[[str, AssetClass], Awaitable[Decimal | None]] | None = None,
        emulate_poll_s: float = 5.0,
    ):
        self.venue = venue
        self.ledger = ledger
        self.record = record
        self.alert = alert
        self.on_uncertain = on_uncertain
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self.retry_after_failure_s = retry_after_failure_s
        self.monotonic = monotonic
        self._failed_at: dict[str, float] = {}  # symbol -> when its last round of attempts failed
        self.price = price
        self.emulate_poll_s = emulate_poll_s
        self.emulated: dict[str, tuple[StopTarget, Side, Decimal]] = {}  # symbol -> (stop, closing side, qty)
        self._watcher: asyncio.Task | None = None
        self.targets: dict[str, StopTarget] = {}
        self.unprotected: dict[str, str] = {}  # symbol -> why
        self._locks: dict[str, asyncio.Lock] = {}
        self._scheduled: dict[str, asyncio.Task] = {}
        self._retries: list[asyncio.TimerHandle] = []
        self.closed = False
        ledger.listeners.append(self._on_change)

    # -- what the order path asks ----------------------------------------------------------

    def expect(self, symbol: str, asset_class: AssetClass, stop: StopLoss, side: Side) -> None:
        """An entry the gateway protects was forwarded without a leg: place the stop after the
        fill. ``side`` is the closing side (SELL for a buy). Of two targets the tighter wins."""
        self.owe(symbol, asset_class, stop, side)
        self.schedule(symbol)

    def owe(self, symbol: str, asset_class: AssetClass, stop: StopLoss, side: Side) -> None:
        """Remember the stop a position is owed (also from the journal at start, before the
        first snapshot says what the positions are)."""
        target = StopTarget(symbol, asset_class, stop.stop_price, stop.limit_price, side)
        current = self.targets.get(symbol)
        if current is None or current.side is not side or _tighter(target.stop_price, current.stop_price, side):
            self.targets[symbol] = target

    def refusal(self, symbol: str) -> Violation | None:
        """Entries in a symbol whose position the gateway could not protect are refused."""
        why = self.unprotected.get(symbol)
        if why is None:
            return None
        return Violation(
            "position_unprotected",
            f"position_unprotected: the gateway could not place a protective stop for {symbol} ({why}); "
            "only exits are accepted in it until one is in place",
        )

    async def make_room(self, symbol: str, exit_side: Side, qty: Decimal) -> None:
        """Before a bot's exit of ``qty`` is forwarded to a venue that holds shares for open
        sells: step the gateway's stops on that side down so the exit is not blocked."""
        if not self.venue.capabilities.held_for_orders:
            return
        async with self._lock(symbol):
            position = self.ledger.book.position(symbol)
            stops = [o for o in self._live_stops(symbol) if o.side is exit_side]
            held = sum((o.remaining for o in stops), ZERO)
            room = abs(position) - held - self._other_exits(symbol, exit_side)
            if room >= qty:
                return
            for stop in stops:  # cancel (the remainder is restored once the exit is placed)
                await self._cancel(stop, "a bot's exit needs the shares it holds")

    def schedule(self, symbol: str) -> None:
        if self.closed or symbol in self._scheduled:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._ensure_soon(symbol), name=f"protect {symbol}")
        except RuntimeError:
            return  # no loop (a synchronous test): the next change schedules it
        self._scheduled[symbol] = task

    def schedule_retry(self, symbol: str) -> None:
        """Try an unprotected position again once the retry pause is over."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.retry_after_failure_s, self.schedule, symbol)
        self._retries.append(handle)

    async def close(self) -> None:
        self.closed = True
        for handle in self._retries:
            handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in list(self._scheduled.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def settle(self) -> None:
        """Wait until no adjustment is scheduled (tests and shutdown)."""
        while self._scheduled:
            await asyncio.gather(*self._scheduled.values(), return_exceptions=True)

    # -- keeping the stop sized to the position --------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.position_changed == "*":
            held = {s for s, b in self.ledger.book.books.items() if b.position_qty != 0}
            guarded = {o.symbol for o in self.ledger.open_orders() if o.role is Role.PROTECTIVE}
            for symbol in held | guarded | set(self.targets):
                self.schedule(symbol)
        elif change.position_changed is not None:
            self.schedule(change.position_changed)
        elif change.order is not None and not change.order.is_open:
            order = change.order
            if order.role is Role.PROTECTIVE and order.stop_price is not None and order.filled_qty == 0:
                # One of our stops went away unfilled (a bot or a person cancelled it): the
                # position is still owed one.
                self.owe(order.symbol, order.asset_class, StopLoss(order.stop_price, order.limit_price), order.side)
            if self._guarded(order.symbol):
                self.schedule(order.symbol)  # an exit or a stop closed: resize

    async def _ensure_soon(self, symbol: str) -> None:
        try:
            await asyncio.sleep(0)  # let the change that scheduled this finish first
            await self.ensure(symbol)
        finally:
            self._scheduled.pop(symbol, None)

    async def ensure(self, symbol: str) -> None:
        async with self._lock(symbol):
            await self._ensure(symbol)

    async def _ensure(self, symbol: str) -> None:
        if self.ledger.book.snapshot_at is None:
            return  # positions unknown until the first snapshot: acting now could only be wrong
        position = self.ledger.book.position(symbol)
        stops = self._live_stops(symbol)
        if position == 0:
            self.emulated.pop(symbol, None)
            for stop in stops:
                await self._cancel(stop, "the position is flat")
            if self.targets.pop(symbol, None) is not None:
                await self.record("protective.released", {"symbol": symbol, "why": "the position is flat"})
            self.unprotected.pop(symbol, None)
            return
        closing = Side.SELL if position > 0 else Side.BUY
        owed = self.targets.get(symbol)
        if owed is not None and owed.side is not None and owed.side is not closing:
            # A stop owed to a position on the other side: it would trigger at once. Not ours.
            del self.targets[symbol]
            await self.record("protective.released", {"symbol": symbol, "why": "the position changed sides"})
        for stop in [s for s in stops if s.side is not closing]:
            await self._cancel(stop, "the position changed sides")
        stops = [s for s in stops if s.side is closing]
        target = self.targets.get(symbol)
        if target is None and stops:
            first = stops[0]
            book = self.ledger.book.book(symbol)
            target = StopTarget(
                symbol, book.asset_class if book else first.asset_class, first.stop_price, first.limit_price, closing
            )
            self.targets[symbol] = target
        if target is None:
            return  # the gateway does not own this position's protection
        if self.venue.capabilities.reduce_only:
            wanted = abs(position)  # reduce-only stops cannot open a position: cover all of it
        else:
            wanted = max(ZERO, abs(position) - self._other_exits(symbol, closing))
        if target.asset_class in self.venue.capabilities.no_resting_stops:
            self._emulate(target, closing, wanted)
            return
        have = sum((s.remaining for s in stops), ZERO)
        if have == wanted and not (wanted > 0 and symbol in self.unprotected):
            return
        for stop in stops:
            await self._cancel(stop, f"resized from {have} to {wanted}")
        if wanted > 0:
            failed = self._failed_at.get(symbol)
            if failed is not None and self.monotonic() - failed < self.retry_after_failure_s:
                return  # a venue that just refused three times is not asked again on every event
            await self._place(target, closing, wanted)

    async def _place(self, target: StopTarget, side: Side, qty: Decimal) -> None:
        limit = target.limit_price
        if target.asset_class in self.venue.capabilities.stop_limit_only and limit is None:
            collar = Decimal(1) - CRYPTO_STOP_COLLAR if side is Side.SELL else Decimal(1) + CRYPTO_STOP_COLLAR
            limit = _like(target.stop_price * collar, target.stop_price)
        intent = OrderIntent(
            symbol=target.symbol,
            asset_class=target.asset_class,
            side=side,
            type=OrderType.STOP_LIMIT if limit is not None else OrderType.STOP,
            time_in_force=TimeInForce.GTC,
            qty=qty,
            stop_price=target.stop_price,
            limit_price=limit,
            client_order_id=new_client_id(PROTECTIVE_PREFIX.rstrip("-")),
            reduce_only=True,
        )
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            entry = self.ledger.record(
                intent, None, Role.PROTECTIVE, None, valuation_of(self.ledger.book.mark(target.symbol), limit, target.stop_price)
            )
            await self.record("protective.place", {**entry.summary(), "attempt": attempt})
            try:
                order = await self.venue.submit_order(intent)
            except UpstreamUncertain as exc:
                # It may be at the venue: resolve it (found: it protects; absent: the next
                # adjustment places another), never count it as refused.
                self.ledger.uncertain(entry)
                self.on_uncertain(entry)
                await self.record("protective.uncertain", {"client_order_id": entry.client_order_id, "error": exc.message})
                return
            except GatewayError as exc:
                self.ledger.refused(entry)
                last_error = f"{exc.kind}: {exc.message}"
                log.warning("protective stop for %s refused (attempt %d): %s", target.symbol, attempt, exc.kind)
                intent = _with_new_id(intent)
                await asyncio.sleep(self.retry_delay_s * attempt)
                continue
            self.ledger.acknowledged(entry, order)
            self._failed_at.pop(target.symbol, None)
            await self.record("protective.placed", {"client_order_id": entry.client_order_id, "order_id": order.id})
            if self.unprotected.pop(target.symbol, None) is not None:
                self.alert("position_protected", {"symbol": target.symbol})
            return
        self.unprotected[target.symbol] = last_error or "the venue refused every attempt"
        self._failed_at[target.symbol] = self.monotonic()
        self.schedule_retry(target.symbol)
        data = {"symbol": target.symbol, "qty": qty, "stop_price": target.stop_price, "error": last_error}
        await self.record("protective.failed", data)
        self.alert("position_unprotected", data)
        log.error("position %s is unprotected: %s", target.symbol, last_error)

    async def _cancel(self, stop: LedgerOrder, why: str) -> None:
        await self.record("protective.cancel", {"client_order_id": stop.client_order_id, "order_id": stop.venue_id, "why": why})
        if stop.venue_id is None:
            return
        try:
            await self.venue.cancel_order(stop.venue_id)
        except GatewayError as exc:
            log.info("cancelling protective stop %s: %s", stop.venue_id, exc.kind)
            return
        if stop.is_open:
            self.ledger.refused(stop, OrderStatus.CANCELED)

    # -- emulated stops (no resting stop at the venue) -------------------------------------

    def _emulate(self, target: StopTarget, closing: Side, qty: Decimal) -> None:
        if qty <= 0:
            self.emulated.pop(target.symbol, None)
            return
        self.emulated[target.symbol] = (target, closing, qty)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="emulated stops")

    async def _watch(self) -> None:
        while self.emulated and not self.closed:
            await asyncio.sleep(self.emulate_poll_s)
            for symbol, (target, closing, qty) in list(self.emulated.items()):
                price = await self.price(symbol, target.asset_class) if self.price is not None else None
                if price is None:
                    continue  # no price, no trigger: the next poll tries again
                hit = price <= target.stop_price if closing is Side.SELL else price >= target.stop_price
                if hit and self.emulated.get(symbol) == (target, closing, qty):
                    del self.emulated[symbol]
                    await self._trigger(target, closing, qty, price)

    async def _trigger(self, target: StopTarget, side: Side, qty: Decimal, price: Decimal) -> None:
        intent = OrderIntent(
            symbol=target.symbol,
            asset_class=target.asset_class,
            side=side,
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            qty=qty,
            client_order_id=new_client_id(PROTECTIVE_PREFIX.rstrip("-")),
            reduce_only=True,
        )
        async with self._lock(target.symbol):
            entry = self.ledger.record(intent, None, Role.PROTECTIVE, None, price)
            await self.record("protective.triggered", {**entry.summary(), "stop_price": target.stop_price, "price": price})
            try:
                order = await self.venue.submit_order(intent)
            except UpstreamUncertain:
                self.ledger.uncertain(entry)
                self.on_uncertain(entry)
                return
            except GatewayError as exc:
                self.ledger.refused(entry)
                self.unprotected[target.symbol] = f"the emulated stop's market order was refused: {exc.kind}"
                self.alert("position_unprotected", {"symbol": target.symbol, "error": exc.message})
                return
            self.ledger.acknowledged(entry, order)

    # -- helpers ---------------------------------------------------------------------------

    def _live_stops(self, symbol: str) -> list[LedgerOrder]:
        """The gateway's stops that protect the position now (not a leg still held by its
        unfilled parent, nor one still in flight)."""
        return [
            o
            for o in self.ledger.open_orders(symbol)
            if o.role is Role.PROTECTIVE and o.phase is Phase.LIVE and not (o.parent is not None and o.unfilled_parent > 0)
        ]

    def _other_exits(self, symbol: str, side: Side) -> Decimal:
        return sum(
            (
                o.remaining
                for o in self.ledger.open_orders(symbol)
                if o.side is side and o.role is not Role.PROTECTIVE and not (o.parent is not None and o.unfilled_parent > 0)
            ),
            ZERO,
        )

    def _guarded(self, symbol: str) -> bool:
        return symbol in self.targets or any(o.role is Role.PROTECTIVE for o in self.ledger.open_orders(symbol))

    def _lock(self, symbol: str) -> asyncio.Lock:
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock


def _tighter(new: Decimal, old: Decimal, closing: Side) -> bool:
    """A long's stop (a sell) is tighter when higher; a short's when lower."""
    return new > old if closing is Side.SELL else new < old


def _with_new_id(intent: OrderIntent) -> OrderIntent:
    return replace(intent, client_order_id=new_client_id(PROTECTIVE_PREFIX.rstrip("-")))


def _like(value: Decimal, example: Decimal) -> Decimal:
    """``value`` rounded to as many decimal places as ``example`` has."""
    exponent = example.as_tuple().exponent
    return value.quantize(Decimal(1).scaleb(exponent)) if isinstance(exponent, int) else value
