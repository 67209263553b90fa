"""AlpacaVenue listens to its upstream's trade_updates and publishes them as venue events: against
a `gatewayctl paper-broker` process (submit, replace, cancel, fill), and against an in-process
paper broker that goes away and comes back (StreamStatus on drop and reconnect)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiohttp import web

from gateway.model import (
    AssetClass,
    OrderEventType,
    OrderIntent,
    OrderReplace,
    OrderType,
    OrderUpdate,
    Side,
    StreamStatus,
    TimeInForce,
)
from gateway.paper_broker import build_paper_broker_app
from gateway.venues.alpaca import AlpacaVenue
from gateway.venues.paper import PaperVenue
from .support import BROKER_KEY_ID, BROKER_SECRET, free_port


class Recorder:
    """The venue's events, with a way to wait (polling, with a deadline) for one."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    async def until(self, predicate, what: str, timeout: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.events):
            assert asyncio.get_running_loop().time() < deadline, f"never saw {what}: {self.events[-5:]}"
            await asyncio.sleep(0.02)

    def updates(self, *ids: str) -> list[tuple[OrderEventType, str]]:
        return [(e.event, e.order.id) for e in self.events if isinstance(e, OrderUpdate) and e.order.id in ids]

    def statuses(self) -> list[bool]:
        return [e.connected for e in self.events if isinstance(e, StreamStatus)]


def limit_buy(qty="2", price="180", client_order_id=None) -> OrderIntent:
    return OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.LIMIT, TimeInForce.DAY,
                       qty=Decimal(qty), limit_price=Decimal(price), client_order_id=client_order_id)


async def test_submit_replace_cancel_and_fill_arrive_in_order(paper_broker_process):
    await paper_broker_process.set_prices({"AAPL": "190"})
    venue = AlpacaVenue(lambda: (BROKER_KEY_ID, BROKER_SECRET), base_url=paper_broker_process.url)
    assert venue.capabilities.event_stream and venue.capabilities.environment == "paper"
    seen = Recorder()
    venue.subscribe(seen)
    await venue.start()
    try:
        await seen.until(lambda events: True in [e.connected for e in events if isinstance(e, StreamStatus)], "connected")
        resting = await venue.submit_order(limit_buy(client_order_id="bot-limit-1"))
        replaced = await venue.replace_order(resting.id, OrderReplace(qty=Decimal(3)))
        await venue.cancel_order(replaced.id)
        market = await venue.submit_order(
            OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.MARKET, TimeInForce.DAY, qty=Decimal(1))
        )
        await seen.until(lambda events: (OrderEventType.FILL, market.id) in seen.updates(market.id), "the fill")
    finally:
        await venue.close()
    assert seen.updates(resting.id, replaced.id, market.id) == [
        (OrderEventType.NEW, resting.id),
        (OrderEventType.REPLACED, resting.id),
        (OrderEventType.NEW, replaced.id),
        (OrderEventType.CANCELED, replaced.id),
        (OrderEventType.NEW, market.id),
        (OrderEventType.FILL, market.id),
    ]
    by_id = {(e.event, e.order.id): e for e in seen.events if isinstance(e, OrderUpdate)}
    assert by_id[(OrderEventType.NEW, resting.id)].order.client_order_id == "bot-limit-1"
    assert by_id[(OrderEventType.REPLACED, resting.id)].order.replaced_by == replaced.id
    assert by_id[(OrderEventType.NEW, replaced.id)].order.qty == Decimal(3)
    fill = by_id[(OrderEventType.FILL, market.id)]
    assert (fill.qty, fill.price, fill.position_qty) == (Decimal(1), Decimal(190), Decimal(1))
    assert seen.statuses() == [True, False]  # up, then down when the venue closed


async def serve_on(port: int, venue: PaperVenue) -> web.AppRunner:
    runner = web.AppRunner(build_paper_broker_app(venue, key_id=BROKER_KEY_ID, secret=BROKER_SECRET),
                           access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


async def test_drop_and_reconnect_are_reported_and_events_resume():
    port = free_port()
    paper = PaperVenue(starting_equity=Decimal(100000))
    await paper.set_prices({"AAPL": Decimal(190)})
    runner = await serve_on(port, paper)
    venue = AlpacaVenue(lambda: (BROKER_KEY_ID, BROKER_SECRET), base_url=f"http://127.0.0.1:{port}")
    venue.stream.min_backoff_s = 0.05  # reconnect quickly in a test
    seen = Recorder()
    venue.subscribe(seen)
    await venue.start()
    try:
        await seen.until(lambda events: seen.statuses() == [True], "the first connection")
        await runner.cleanup()  # the upstream goes away
        await seen.until(lambda events: seen.statuses() == [True, False], "the drop")
        runner = await serve_on(port, paper)
        await seen.until(lambda events: seen.statuses() == [True, False, True], "the reconnect")
        order = await venue.submit_order(limit_buy())
        await seen.until(lambda events: seen.updates(order.id) == [(OrderEventType.NEW, order.id)], "events after it")
    finally:
        await venue.close()
        await runner.cleanup()
    assert venue.stream.connections == 2


async def test_wrong_stream_credentials_report_down_once_and_keep_trying(paper_broker):
    venue = AlpacaVenue(lambda: (paper_broker.key_id, "not-the-secret"), base_url=paper_broker.url)
    venue.stream.min_backoff_s = 0.01
    venue.stream.max_backoff_s = 0.02
    seen = Recorder()
    venue.subscribe(seen)
    await venue.start()
    try:
        await seen.until(lambda events: venue.stream.attempts >= 3, "three attempts")
        reason = next(e.reason for e in seen.events if isinstance(e, StreamStatus))
    finally:
        await venue.close()
    assert reason == "the upstream refused the stream credentials" and "not-the-secret" not in reason
    assert seen.statuses() == [False]  # once per outage, however many attempts


@pytest.mark.parametrize(("url", "environment"), [
    ("https://paper-api.alpaca.markets", "paper"), ("https://api.alpaca.markets", "live"),
    ("https://broker.example.com", "live"), ("http://127.0.0.1:9", "paper"),
])
def test_environment_is_live_unless_known_paper(url, environment):
    assert AlpacaVenue(lambda: ("k", "s"), base_url=url, stream=False).capabilities.environment == environment
