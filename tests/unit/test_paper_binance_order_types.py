"""The paper engine (futures) fills Binance's order types the way Binance does where it matters:
post-only (GTX) expires rather than takes, take-profit triggers fire on a move in the order's
favour, a closePosition stop closes the position there is when it fires (never opens one), and
a trailing stop waits for its activation price."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.model import AssetClass, OrderIntent, OrderReplace, OrderStatus, OrderType, Side, TimeInForce
from gateway.venues.paper_engine import PaperEngine

D = Decimal
BTC = "BTC/USDT"


def intent(side: Side, kind: OrderType, qty: str = "0.01", **fields) -> OrderIntent:
    return OrderIntent(BTC, AssetClass.CRYPTO, side, kind, TimeInForce.GTC, qty=D(qty), **fields)


@pytest.fixture
def engine() -> PaperEngine:
    engine = PaperEngine(starting_equity=D(100000), seed_marks=True, futures=True)
    engine.set_price(BTC, "60000")
    return engine


def test_post_only_rests_or_expires_never_takes(engine):
    maker = engine.submit_order(intent(Side.BUY, OrderType.LIMIT, limit_price=D(59000), post_only=True))
    assert maker.status is OrderStatus.NEW and maker.post_only
    taker = engine.submit_order(intent(Side.BUY, OrderType.LIMIT, limit_price=D(61000), post_only=True))
    assert taker.status is OrderStatus.EXPIRED and taker.filled_qty == 0
    assert engine.list_positions() == []
    engine.set_price(BTC, "58900")  # once resting, it fills like any limit order
    assert engine.get_order(maker.id).status is OrderStatus.FILLED


def test_take_profit_fires_on_a_rise_for_a_sell_and_a_stop_on_a_fall(engine):
    engine.submit_order(intent(Side.BUY, OrderType.MARKET, "0.02"))
    tp = engine.submit_order(intent(Side.SELL, OrderType.STOP, stop_price=D(62000), profit_trigger=True, reduce_only=True))
    sl = engine.submit_order(intent(Side.SELL, OrderType.STOP, stop_price=D(58000), reduce_only=True))
    engine.set_price(BTC, "59000")
    assert engine.get_order(tp.id).status is OrderStatus.NEW and engine.get_order(sl.id).status is OrderStatus.NEW
    engine.set_price(BTC, "62000")
    assert engine.get_order(tp.id).status is OrderStatus.FILLED and engine.get_order(sl.id).status is OrderStatus.NEW
    engine.set_price(BTC, "57000")
    assert engine.get_order(sl.id).status is OrderStatus.FILLED
    assert engine.list_positions() == []


def test_a_buy_take_profit_fires_on_a_fall(engine):
    engine.submit_order(intent(Side.SELL, OrderType.MARKET))
    tp = engine.submit_order(
        intent(Side.BUY, OrderType.STOP_LIMIT, stop_price=D(58000), limit_price=D(58100), profit_trigger=True)
    )
    engine.set_price(BTC, "61000")
    assert engine.get_order(tp.id).status is OrderStatus.NEW
    engine.set_price(BTC, "57900")
    assert engine.get_order(tp.id).status is OrderStatus.FILLED
    assert engine.list_positions() == []


def test_close_position_closes_what_there_is_when_it_fires(engine):
    engine.submit_order(intent(Side.BUY, OrderType.MARKET, "0.01"))
    stop = engine.submit_order(
        intent(Side.SELL, OrderType.STOP, "0.01", stop_price=D(58000), close_position=True, reduce_only=True)
    )
    engine.submit_order(intent(Side.BUY, OrderType.MARKET, "0.02"))  # the position grew since
    engine.set_price(BTC, "57000")
    closed = engine.get_order(stop.id)
    assert closed.status is OrderStatus.FILLED and closed.filled_qty == D("0.03") and closed.close_position
    assert engine.list_positions() == []


def test_close_position_with_nothing_to_close_expires(engine):
    engine.submit_order(intent(Side.BUY, OrderType.MARKET, "0.01"))
    stop = engine.submit_order(
        intent(Side.SELL, OrderType.STOP, "0.01", stop_price=D(58000), close_position=True, reduce_only=True)
    )
    engine.submit_order(intent(Side.SELL, OrderType.MARKET, "0.01"))  # flat before it fires
    engine.set_price(BTC, "57000")
    assert engine.get_order(stop.id).status is OrderStatus.EXPIRED
    assert engine.list_positions() == []  # never opened a short


def test_trailing_stop_waits_for_its_activation_price(engine):
    engine.submit_order(intent(Side.BUY, OrderType.MARKET))
    trail = engine.submit_order(
        intent(Side.SELL, OrderType.TRAILING_STOP, trail_percent=D(1), activation_price=D(62000), reduce_only=True)
    )
    assert engine.get_order(trail.id).stop_price is None
    engine.set_price(BTC, "58000")  # would have fired a plain 1% trail from 60,000
    assert engine.get_order(trail.id).status is OrderStatus.NEW
    engine.set_price(BTC, "62500")
    assert engine.get_order(trail.id).stop_price == D("61875.00")
    engine.set_price(BTC, "61800")
    assert engine.get_order(trail.id).status is OrderStatus.FILLED


def test_a_replace_keeps_the_binance_flags(engine):
    engine.submit_order(intent(Side.BUY, OrderType.MARKET))
    tp = engine.submit_order(intent(Side.SELL, OrderType.STOP, stop_price=D(62000), profit_trigger=True))
    new = engine.replace_order(tp.id, OrderReplace(stop_price=D(63000)))
    assert new.profit_trigger and new.stop_price == D(63000)
    engine.set_price(BTC, "62500")  # still a take-profit: a rise below its new trigger does nothing
    assert engine.get_order(new.id).status is OrderStatus.NEW
