"""Reconcile: the ledger's safety net. The venue's account, positions and every open order
(paged until complete) are merged into the ledger at start, whenever the event stream
(re)connects, and every ``interval_s`` (60 s by default with a stream; more often without one,
since then it is the only way fills are learned).

Its upstream cost is three listing calls a run (more pages only past 500 open orders), so an idle
gateway makes about 3 requests a minute; an order it could not complete drops nothing, and the
book ages into ``stale_account`` (orders refused) until a run succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ..errors import GatewayError
from ..ledger import Ledger, LedgerOrder
from ..model import Account
from ..ports import Venue

log = logging.getLogger("gateway.pipeline.reconciler")

MAX_LOOKUPS = 20  # vanished orders whose final status is looked up per run (the rest stay "closed")


class Reconciler:
    def __init__(
        self,
        venue: Venue,
        ledger: Ledger,
        *,
        interval_s: float,
        debounce_s: float = 0.05,
        on_account: Callable[[Account], Awaitable[None]] | None = None,
        audit: Callable[[str, dict], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.venue = venue
        self.ledger = ledger
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.on_account = on_account
        self.audit = audit
        self.monotonic = monotonic
        self.last_error: str | None = None
        self.last_success: float | None = None  # monotonic
        self.runs = 0
        self._lock = asyncio.Lock()
        self._soon = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reconcile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def soon(self) -> None:
        """Ask for a run now (coalesced with other requests): after a stream reconnect, or
        after an order on a venue without a stream."""
        self._soon.set()

    async def run(self) -> bool:
        """One reconcile. False when the venue could not be read in full (nothing dropped)."""
        async with self._lock:
            started = self.ledger.begin_snapshot()
            try:
                account, positions = await asyncio.gather(self.venue.get_account(), self.venue.list_positions())
            except GatewayError as exc:
                return self._failed(exc)
            try:
                orders = await self.venue.list_open_orders()
            except GatewayError as exc:
                # Positions and equity are still news; the orders are not dropped for it.
                self.ledger.apply_snapshot(account, positions, None, started, self.monotonic())
                return self._failed(exc)
            vanished = self.ledger.apply_snapshot(account, positions, orders, started, self.monotonic())
            self.last_error = None
            self.last_success = self.monotonic()
            self.runs += 1
        if vanished:
            await self._look_up(vanished)
        if self.on_account is not None:
            await self.on_account(account)
        return True

    def _failed(self, exc: GatewayError) -> bool:
        self.last_error = exc.message
        log.warning("reconcile failed: %s", exc.kind)
        return False

    async def _look_up(self, vanished: list[LedgerOrder]) -> None:
        """Orders that closed while no event said so: learn how (fill or cancel), for the
        record; the positions snapshot already holds their effect."""
        for order in vanished[:MAX_LOOKUPS]:
            if order.venue_id is None:
                continue
            try:
                final = await self.venue.get_order(order.venue_id)
            except GatewayError:
                continue
            order.status = final.status
            order.filled_qty = final.filled_qty
            order.filled_avg_price = final.filled_avg_price
            if self.audit is not None:
                self.audit("ledger.vanished", order.summary())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._soon.wait(), timeout=self.interval_s)
            if self._soon.is_set():
                await asyncio.sleep(self.debounce_s)  # coalesce a burst of requests into one run
            self._soon.clear()
            try:
                await self.run()
            except Exception:  # never let the loop die; a stale book fails closed anyway
                log.exception("reconcile crashed")

