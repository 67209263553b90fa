"""PaperVenue: the async Venue face of the paper engine."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from gateway.errors import InvalidRequest, NotFound, OrderRejected
from gateway.model import (
    AssetClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from gateway.venues.base import DirectBackend, Venue
from gateway.venues.paper import PaperVenue
from gateway.venues.paper_engine import DEFAULT_MARKS, PaperEngine


def order(side=Side.BUY, type=OrderType.MARKET, qty="1", symbol="AAPL", **kw):
    return OrderIntent(
        symbol=symbol,
        asset_class=AssetClass.US_EQUITY,
        side=side,
        type=type,
        time_in_force=TimeInForce.DAY,
        qty=D(qty),
        **kw,
    )


@pytest.fixture
async def venue():
    v = PaperVenue(starting_equity=D(50000))
    await v.start()
    await v.set_prices({"AAPL": D(100)})
    yield v
    await v.close()


def test_is_a_venue_named_paper():
    venue = PaperVenue()
    assert isinstance(venue, Venue) and venue.name == "paper"
    assert isinstance(venue.engine, PaperEngine)


def test_wraps_the_engine_it_is_given():
    engine = PaperEngine()
    assert PaperVenue(engine).engine is engine


def test_seed_marks_option():
    assert PaperVenue(seed_marks=True).engine.marks() == DEFAULT_MARKS
    assert PaperVenue().engine.marks() == {}


async def test_starting_equity_reaches_the_account(venue):
    account = await venue.get_account()
    assert account.equity == D(50000) and account.buying_power == D(100000)


async def test_submit_fill_and_position_round_trip(venue):
    placed = await venue.submit_order(order(qty="3"))
    assert placed.status is OrderStatus.FILLED
    position = await venue.get_position("AAPL")
    assert position.qty == D(3)
    assert [p.symbol for p in await venue.list_positions()] == ["AAPL"]
    assert (await venue.get_order(placed.id)).status is OrderStatus.FILLED
    assert (await venue.get_order_by_client_id(placed.client_order_id)).id == placed.id


async def test_price_moves_through_the_venue_trigger_orders(venue):
    resting = await venue.submit_order(order(type=OrderType.LIMIT, limit_price=D(90)))
    await venue.set_prices({"AAPL": D(89)})
    assert (await venue.get_order(resting.id)).status is OrderStatus.FILLED
    assert await venue.latest_price("AAPL", AssetClass.US_EQUITY) == D(89)


async def test_results_are_copies(venue):
    placed = await venue.submit_order(order(qty="2"))
    placed.filled_qty = D(999)
    position = await venue.get_position("AAPL")
    account = await venue.get_account()
    assert (await venue.get_order(placed.id)).filled_qty == D(2)
    listed = await venue.list_orders(OrderQuery(status="all"))
    listed[0].status = OrderStatus.CANCELED
    assert (await venue.get_order(placed.id)).status is OrderStatus.FILLED
    assert position.qty == D(2) and account.long_market_value == D(200)


async def test_replace_and_cancel(venue):
    resting = await venue.submit_order(order(type=OrderType.LIMIT, limit_price=D(90)))
    new = await venue.replace_order(resting.id, OrderReplace(limit_price=D(91)))
    assert new.replaces == resting.id
    await venue.cancel_order(new.id)
    assert (await venue.get_order(new.id)).status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected):
        await venue.cancel_order(new.id)


async def test_bulk_operations(venue):
    await venue.submit_order(order(qty="2"))
    resting = await venue.submit_order(order(type=OrderType.LIMIT, limit_price=D(50)))
    canceled = await venue.cancel_all_orders()
    assert [(r.id, r.status) for r in canceled] == [(resting.id, 200)]
    closed = await venue.close_all_positions()
    assert [(r.id, r.status) for r in closed] == [("AAPL", 200)]
    assert await venue.list_positions() == []


async def test_close_position_by_percentage(venue):
    await venue.submit_order(order(qty="4"))
    closing = await venue.close_position("AAPL", percentage=D(25))
    assert closing.qty == D(1) and closing.side is Side.SELL
    assert (await venue.get_position("AAPL")).qty == D(3)


async def test_errors_pass_through(venue):
    with pytest.raises(NotFound):
        await venue.get_position("MSFT")
    with pytest.raises(NotFound):
        await venue.get_asset("MSFT")
    with pytest.raises(InvalidRequest):
        await venue.set_prices({"AAPL": D(-1)})


async def test_clock_and_asset(venue):
    clock = await venue.get_clock()
    assert clock.is_open
    asset = await venue.get_asset("AAPL")
    assert asset.symbol == "AAPL" and asset.exchange == "NASDAQ"


async def test_served_by_direct_backend(venue):
    backend = DirectBackend(venue)
    placed = await backend.submit_order(None, order())
    assert (await backend.get_order(None, placed.id)).id == placed.id


async def test_a_cash_venue_answers_1x_and_refuses_any_other_leverage():
    from gateway.errors import OrderRejected

    venue = PaperVenue(seed_marks=True)
    assert await venue.set_leverage("BTC/USD", 1) == 1
    assert await venue.get_leverage("BTC/USD") == 1
    with pytest.raises(OrderRejected, match="does not support leverage"):
        await venue.set_leverage("BTC/USD", 2)
