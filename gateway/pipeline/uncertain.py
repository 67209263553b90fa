"""Orders whose answer was uncertain (a timeout, a 5xx after sending, a body that was not an
order) are resolved, never guessed: looked up by client id with backoff until the venue shows
the order (then it is tracked like any other) or proves it absent (then its share is released).
Until then it counts in full. Each outcome is recorded.

"Proven absent" means two lookups, the later at least ``settle_s`` after the order was sent,
that both found no such client id: a request delayed in the network cannot land after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..errors import GatewayError, NotFound
from ..ledger import Ledger, LedgerOrder, Phase
from ..model import OrderStatus
from ..ports import Venue

log = logging.getLogger("gateway.pipeline.uncertain")

DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)  # then every 60 s until resolved


class UncertainResolver:
    def __init__(
        self,
        venue: Venue,
        ledger: Ledger,
        record: Callable[[str, dict], None],
        *,
        settle_s: float = 2.0,
        delays_s: tuple[float, ...] = DELAYS_S,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.venue = venue
        self.ledger = ledger
        self.record = record
        self.settle_s = settle_s
        self.delays_s = delays_s
        self.monotonic = monotonic
        self._tasks: dict[str, asyncio.Task] = {}
        self._sent_at: dict[str, float] = {}

    def track(self, order: LedgerOrder) -> None:
        """Start resolving ``order`` (idempotent)."""
        self._sent_at.setdefault(order.client_order_id, self.monotonic())
        if order.client_order_id not in self._tasks:
            task = asyncio.create_task(self._resolve(order), name=f"resolve {order.client_order_id}")
            self._tasks[order.client_order_id] = task
            task.add_done_callback(lambda _t, c=order.client_order_id: self._tasks.pop(c, None))

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def check_now(self, order: LedgerOrder) -> bool:
        """One lookup (a bot's retry of the same client id): True when it resolved the order."""
        return await self._lookup(order, absent_seen=[0])

    async def _resolve(self, order: LedgerOrder) -> None:
        absent_seen = [0]
        step = 0
        while order.phase is Phase.UNCERTAIN:
            delay = self.delays_s[min(step, len(self.delays_s) - 1)]
            step += 1
            await asyncio.sleep(delay)
            if order.phase is not Phase.UNCERTAIN:
                return
            try:
                if await self._lookup(order, absent_seen):
                    return
            except Exception:  # keep resolving; a crash here must not leave it unresolved silently
                log.exception("resolving %s failed", order.client_order_id)

    async def _lookup(self, order: LedgerOrder, absent_seen: list[int]) -> bool:
        if order.phase is not Phase.UNCERTAIN:
            return True
        try:
            found = await self.venue.get_order_by_client_id(order.client_order_id)
        except NotFound:
            settled = self.monotonic() - self._sent_at.get(order.client_order_id, 0.0) >= self.settle_s
            absent_seen[0] = absent_seen[0] + 1 if settled else 0
            if absent_seen[0] >= 2:
                self.ledger.refused(order, OrderStatus.REJECTED)
                self.record("order.resolved", {"client_order_id": order.client_order_id, "outcome": "absent"})
                self._sent_at.pop(order.client_order_id, None)
                return True
            return False
        except GatewayError as exc:
            log.info("resolving %s: venue unavailable (%s)", order.client_order_id, exc.kind)
            return False
        if order.phase is not Phase.UNCERTAIN:
            return True
        self.ledger.acknowledged(order, found)
        self.record(
            "order.resolved",
            {"client_order_id": order.client_order_id, "outcome": "found", "order_id": found.id, "status": found.status.value},
        )
        self._sent_at.pop(order.client_order_id, None)
        return True
