"""The dead man's switch against the real paper venue, on a clock the test moves: when it fires,
what it cancels, and an order accepted while a sweep is cancelling (held on an event)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gateway.guards.dead_man import DeadMansSwitch
from gateway.model import AssetClass, Caller, OrderIntent, OrderType, Side, TimeInForce
from gateway.venues.paper import PaperVenue

TIMEOUT_S = 30.0
BOT = Caller(key_id="GKBOT", dialect="alpaca")
OTHER = Caller(key_id="GKOTHER", dialect="alpaca")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Switch:
    """The guard wired to a paper venue, as the gateway wires it, with its firings noted."""

    def __init__(self, venue: PaperVenue, clock: Clock) -> None:
        self.venue = venue
        self.fired: list[tuple[str, list[str]]] = []
        self.cancel_gate: asyncio.Event | None = None
        self.cancelling = asyncio.Event()
        self.guard = DeadMansSwitch(TIMEOUT_S, self._cancel, self._is_open, self._on_fire, clock=clock)

    async def _cancel(self, order_id: str) -> None:
        self.cancelling.set()
        if self.cancel_gate is not None:
            await self.cancel_gate.wait()
        await self.venue.cancel_order(order_id)

    async def _is_open(self, order_id: str) -> bool:
        return (await self.venue.get_order(order_id)).status.is_open

    async def _on_fire(self, key_id: str, canceled: list[str]) -> None:
        self.fired.append((key_id, canceled))

    async def place(self, caller: Caller, limit: str = "90"):
        """A resting limit order through the venue, reported to the guard as the gateway does."""
        self.guard.seen(caller)
        order = await self.venue.submit_order(
            OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                        qty=Decimal(1), limit_price=Decimal(limit))
        )
        self.guard.accepted(caller, order)
        return order

    async def is_open(self, order) -> bool:
        return await self._is_open(order.id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def switch(clock) -> Switch:
    venue = PaperVenue(starting_equity=Decimal(100000))
    await venue.set_prices({"AAPL": Decimal(100)})
    return Switch(venue, clock)


async def test_a_bot_heard_from_within_the_timeout_keeps_its_orders(switch, clock):
    order = await switch.place(BOT)
    clock.t += TIMEOUT_S - 0.001
    await switch.guard.sweep()
    assert await switch.is_open(order) and switch.fired == []
    switch.guard.seen(BOT)  # any request re-arms it
    clock.t += TIMEOUT_S - 0.001
    await switch.guard.sweep()
    assert await switch.is_open(order) and switch.fired == []


async def test_a_silent_bot_loses_its_open_orders_exactly_at_the_timeout(switch, clock):
    first, second = await switch.place(BOT), await switch.place(BOT, limit="80")
    mine_only = await switch.place(OTHER)
    clock.t += TIMEOUT_S
    switch.guard.seen(OTHER)  # another bot, still talking
    await switch.guard.sweep()
    assert not await switch.is_open(first) and not await switch.is_open(second)
    assert await switch.is_open(mine_only)
    assert switch.fired == [(BOT.key_id, sorted([first.id, second.id]))]
    await switch.guard.sweep()  # nothing left to cancel: it does not fire twice
    assert len(switch.fired) == 1


async def test_an_order_already_closed_is_not_cancelled_again(switch, clock):
    order = await switch.place(BOT)
    await switch.venue.cancel_order(order.id)  # the bot cancelled it itself
    clock.t += TIMEOUT_S
    await switch.guard.sweep()
    assert switch.fired == [(BOT.key_id, [])]


async def test_an_order_accepted_while_a_sweep_is_cancelling_is_kept_and_watched(switch, clock):
    stale = await switch.place(BOT)
    clock.t += TIMEOUT_S
    switch.cancel_gate = asyncio.Event()
    sweep = asyncio.create_task(switch.guard.sweep())
    await asyncio.wait_for(switch.cancelling.wait(), 5)
    fresh = await switch.place(BOT, limit="85")  # the bot comes back mid-sweep
    switch.cancel_gate.set()
    await asyncio.wait_for(sweep, 5)
    assert not await switch.is_open(stale)
    assert await switch.is_open(fresh), "an order placed after the silence must survive the sweep"
    assert switch.fired == [(BOT.key_id, [stale.id])]
    switch.cancel_gate = None
    clock.t += TIMEOUT_S  # silent again: the fresh order is still tracked
    await switch.guard.sweep()
    assert not await switch.is_open(fresh)
    assert switch.fired[-1] == (BOT.key_id, [fresh.id])
