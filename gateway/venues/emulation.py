"""Exit legs emulated for a venue that has no native ``oto``/``bracket`` orders.

A bot may send an OTO or bracket order itself (the gateway's own protective stops are placed by
``gateway.pipeline.protective``, not here). At a venue without native legs the entry goes first;
once it has filled, its exits follow as reduce-only orders for what filled (a stop at the stop
price, a limit at the take-profit) with client ids derived from the entry's, so a retry after a
lost answer finds the same exit. When one exit of a bracket fills, the other is canceled.

The venue drives it: ``submitted`` after placing an entry, ``sync`` on every reconcile, ``canceled``
when an entry is canceled. The venue supplies how to read, cancel and place an order
(``place_leg`` rounds prices to its own grid). Pending exits live in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from ..errors import GatewayError, NotFound
from ..model import Order, OrderClass, OrderIntent, OrderStatus, Side, StopLoss, TakeProfit

log = logging.getLogger(__name__)

LEG_ATTEMPTS = 3  # tries to place a filled entry's exits before giving up (logged as an error)


@dataclass(frozen=True)
class ExitLeg:
    """One exit to place: ``tag`` is "sl" or "tp"; a stop without ``limit_price`` is a stop-market."""

    tag: str
    symbol: str
    side: Side
    qty: Decimal
    stop_price: Decimal | None
    limit_price: Decimal | None
    client_order_id: str


@dataclass
class PendingExits:
    """The exits an emulated oto/bracket entry still owes, or has placed."""

    entry_id: str
    entry_client_id: str
    symbol: str
    side: Side  # the exits' side
    stop_loss: StopLoss | None
    take_profit: TakeProfit | None
    placed: list[str] = field(default_factory=list)  # exit order ids, once placed
    attempts: int = 0


def leg_client_id(tag: str, entry_client_id: str) -> str:
    # Derived, so a retry after a lost answer finds the same exit; short enough for Binance (36).
    return f"{tag}-{hashlib.sha256(entry_client_id.encode()).hexdigest()[:32]}"


class ExitEmulation:
    def __init__(
        self,
        venue_name: str,
        *,
        get_order: Callable[[str], Awaitable[Order]],
        cancel_order: Callable[[str], Awaitable[None]],
        place_leg: Callable[[ExitLeg], Awaitable[Order]],
        known_client_id: Callable[[str], str | None],
        attempts: int = LEG_ATTEMPTS,
    ):
        self._name = venue_name
        self._get_order = get_order
        self._cancel_order = cancel_order
        self._place_leg = place_leg
        self._known_client_id = known_client_id  # client id -> order id, if the venue placed it
        self._attempts = attempts
        self._pending: dict[str, PendingExits] = {}  # entry order id -> its exits
        self._lock = asyncio.Lock()

    def __bool__(self) -> bool:
        return bool(self._pending)

    async def submitted(self, entry: Order, intent: OrderIntent) -> list[Order]:
        """After an oto/bracket entry was placed: track its exits, placing them if it filled."""
        if intent.order_class not in (OrderClass.OTO, OrderClass.BRACKET):
            return []
        exits = PendingExits(
            entry.id,
            entry.client_order_id,
            intent.symbol,
            intent.side.opposite,
            intent.stop_loss,
            intent.take_profit,
        )
        self._pending[entry.id] = exits
        async with self._lock:
            return await self._advance(exits, entry)

    def placed_legs(self, entry_id: str) -> list[str]:
        exits = self._pending.get(entry_id)
        return list(exits.placed) if exits is not None else []

    def canceled(self, entry_id: str) -> None:
        exits = self._pending.get(entry_id)
        if exits is not None and not exits.placed:
            del self._pending[entry_id]  # an entry canceled before it filled owes nothing

    async def sync(self) -> None:
        """Place the exits of entries that filled since; cancel a bracket's other exit when one
        filled."""
        if not self._pending:
            return
        async with self._lock:
            for exits in list(self._pending.values()):
                try:
                    if exits.placed:
                        await self._one_cancels_other(exits)
                    else:
                        await self._advance(exits, await self._get_order(exits.entry_id))
                except GatewayError as exc:
                    log.warning("%s: exits of order %s not synced: %s", self._name, exits.entry_id, exc.message)

    async def _advance(self, exits: PendingExits, entry: Order) -> list[Order]:
        """Place the exits once the entry has filled (for what filled); returns the exits placed."""
        done = not entry.status.is_open
        if entry.status is not OrderStatus.FILLED and not (done and entry.filled_qty > 0):
            if done:  # closed with nothing filled: nothing to protect
                self._pending.pop(exits.entry_id, None)
            return []
        legs = []
        if exits.stop_loss is not None:
            sl = exits.stop_loss
            legs.append(("sl", sl.stop_price, sl.limit_price))
        if exits.take_profit is not None:
            legs.append(("tp", None, exits.take_profit.limit_price))
        placed: list[Order] = []
        for tag, stop, limit in legs:
            client_id = leg_client_id(tag, exits.entry_client_id)
            try:
                known = self._known_client_id(client_id)
                if known is not None:
                    placed.append(await self._get_order(known))
                    continue
                leg = ExitLeg(tag, exits.symbol, exits.side, entry.filled_qty, stop, limit, client_id)
                placed.append(await self._place_leg(leg))
            except GatewayError as exc:
                exits.attempts += 1
                if exits.attempts >= self._attempts:
                    log.error(
                        "%s: gave up placing the %s exit of order %s: %s (position unprotected)",
                        self._name,
                        tag,
                        exits.entry_id,
                        exc.message,
                    )
                    self._pending.pop(exits.entry_id, None)
                else:
                    log.warning(
                        "%s: %s exit of order %s not placed yet: %s", self._name, tag, exits.entry_id, exc.message
                    )
                return placed
        exits.placed = [o.id for o in placed]
        if len(placed) < 2:
            self._pending.pop(exits.entry_id, None)  # a lone exit needs no watching
        return placed

    async def _one_cancels_other(self, exits: PendingExits) -> None:
        legs = [await self._get_order(leg) for leg in exits.placed]
        if any(leg.status is OrderStatus.FILLED for leg in legs) or all(not leg.status.is_open for leg in legs):
            for leg in legs:
                if leg.status.is_open:
                    try:
                        await self._cancel_order(leg.id)
                    except NotFound:
                        pass
            self._pending.pop(exits.entry_id, None)
