"""The paper venue publishes its engine's events through the Venue port and declares what it
carries natively."""

from __future__ import annotations

from decimal import Decimal as D

from gateway.model import (
    AssetClass,
    OrderClass,
    OrderEventType,
    OrderIntent,
    OrderUpdate,
    PositionUpdate,
    Side,
    StreamStatus,
    OrderType,
    TimeInForce,
)
from gateway.venues.paper import PaperVenue


def market_buy(symbol="AAPL", qty="2"):
    return OrderIntent(symbol, AssetClass.US_EQUITY, Side.BUY, OrderType.MARKET, TimeInForce.DAY, qty=D(qty))


async def test_subscribers_get_stream_status_then_order_and_position_events_until_unsubscribed():
    venue = PaperVenue(starting_equity=D(100000))
    await venue.set_prices({"AAPL": D(100)})
    seen: list = []
    unsubscribe = venue.subscribe(seen.append)
    await venue.start()
    order = await venue.submit_order(market_buy())
    assert isinstance(seen[0], StreamStatus) and seen[0].connected
    updates = [e for e in seen if isinstance(e, OrderUpdate)]
    assert [(u.event, u.order.id) for u in updates] == [(OrderEventType.NEW, order.id), (OrderEventType.FILL, order.id)]
    assert [(p.symbol, p.qty) for p in seen if isinstance(p, PositionUpdate)] == [("AAPL", D(2))]
    unsubscribe()
    count = len(seen)
    await venue.submit_order(market_buy())
    assert len(seen) == count


async def test_a_failing_subscriber_does_not_starve_the_next():
    venue = PaperVenue(starting_equity=D(100000))
    await venue.set_prices({"AAPL": D(100)})

    def broken(event):
        raise RuntimeError("consumer bug")

    seen: list = []
    venue.subscribe(broken)
    venue.subscribe(seen.append)
    await venue.submit_order(market_buy())
    assert any(isinstance(e, OrderUpdate) and e.event is OrderEventType.FILL for e in seen)


def test_capabilities_follow_the_engine():
    lenient, strict, futures = PaperVenue(), PaperVenue(alpaca_rules=True), PaperVenue(futures=True)
    for venue in (lenient, strict, futures):
        assert venue.capabilities.event_stream and venue.capabilities.environment == "paper"
    assert lenient.capabilities.native_legs(AssetClass.CRYPTO, OrderClass.OTO)
    assert not strict.capabilities.native_legs(AssetClass.CRYPTO, OrderClass.OTO)
    assert strict.capabilities.native_legs(AssetClass.US_EQUITY, OrderClass.BRACKET)
    assert strict.capabilities.held_for_orders and not lenient.capabilities.held_for_orders
    assert not futures.capabilities.native_legs(AssetClass.CRYPTO, OrderClass.OTO)
    assert futures.capabilities.native_legs(AssetClass.CRYPTO, OrderClass.SIMPLE)
