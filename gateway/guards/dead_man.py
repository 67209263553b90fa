"""A dead man's switch per bot credential: when a bot has sent nothing for ``timeout_s``, the
open orders it placed are cancelled, so a crashed bot does not leave orders working in a
market it no longer watches. It re-arms when the bot is heard from again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from pydantic import Field

from ..errors import GatewayError
from ..model import Caller, Order
from .base import Guard
from .options import Option

log = logging.getLogger("gateway.dead_man")


class DeadMansSwitch(Guard):
    OPTIONS = (
        Option(
            "dead_man_switch_s",
            Annotated[float, Field(gt=0)] | None,
            None,
            "cancel a bot's open orders after it has sent nothing for this many seconds; off when unset",
        ),
    )

    def __init__(
        self,
        timeout_s: float,
        cancel: Callable[[str], Awaitable[None]],
        is_open: Callable[[str], Awaitable[bool]],
        on_fire: Callable[[str, list[str]], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 0.5,
    ):
        self.timeout_s = timeout_s
        self.cancel = cancel
        self.is_open = is_open
        self.on_fire = on_fire
        self.clock = clock
        self.tick_s = tick_s
        self._last_seen: dict[str, float] = {}
        self._orders: dict[str, set[str]] = {}

    def seen(self, caller: Caller) -> None:
        self._last_seen[caller.key_id] = self.clock()

    def restore_orders(self, owned: dict[str, set[str]]) -> None:
        """After a restart: each credential's open orders (from the ledger, named by the
        journal), the credential counted as seen now, so it gets a full timeout to show up."""
        now = self.clock()
        for key_id, order_ids in owned.items():
            self._orders.setdefault(key_id, set()).update(order_ids)
            self._last_seen.setdefault(key_id, now)

    def accepted(self, caller: Caller, order: Order) -> None:
        if order.status.is_open:
            self._orders.setdefault(caller.key_id, set()).add(order.id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.sweep()

    async def sweep(self) -> None:
        now = self.clock()
        for key_id, last in list(self._last_seen.items()):
            if now - last < self.timeout_s or not self._orders.get(key_id):
                continue
            order_ids = self._orders.pop(key_id)
            canceled = []
            for order_id in sorted(order_ids):
                try:
                    if await self.is_open(order_id):
                        await self.cancel(order_id)
                        canceled.append(order_id)
                except GatewayError as exc:
                    log.warning("dead man's switch could not cancel an order: %s", exc.kind)
            await self.on_fire(key_id, canceled)
