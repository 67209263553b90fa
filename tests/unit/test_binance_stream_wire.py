"""The Binance user-data codec, both directions."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from gateway.errors import InvalidRequest
from gateway.model import (
    AssetClass, Order, OrderEventType, OrderStatus, OrderType, OrderUpdate, PositionUpdate, Side, TimeInForce,
)
from gateway.wire import binance_stream as wire

AT = datetime(2025, 1, 6, 15, 0, tzinfo=timezone.utc)
NOW = 1736175600000


def resolve(symbol: str) -> str | None:
    return {"BTCUSDT": "BTC/USDT"}.get(symbol)


def order(kind=OrderType.LIMIT, status=OrderStatus.NEW, **kw) -> Order:
    fields = dict(
        id=str(uuid.uuid4()), client_order_id="bot-7", symbol="BTC/USDT", asset_class=AssetClass.CRYPTO,
        side=Side.BUY, type=kind, time_in_force=TimeInForce.GTC, status=status,
        created_at=AT, updated_at=AT, submitted_at=AT, qty=D("0.01"),
    )
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        fields["limit_price"] = D(59000)
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        fields["stop_price"] = D(61000)
    fields.update(kw)
    return Order(**fields)


def round_trip(update: OrderUpdate) -> list:
    events = []
    for message in wire.order_event_to_wire(update, NOW):
        events += wire.events_from_wire(message, resolve)
    return events


def test_plain_new_and_fill_round_trip():
    new = round_trip(OrderUpdate(OrderEventType.NEW, order(), AT))
    assert [(e.event, e.order.client_order_id, e.order.limit_price) for e in new] == [(OrderEventType.NEW, "bot-7", D(59000))]
    filled = order(status=OrderStatus.FILLED, filled_qty=D("0.01"), filled_avg_price=D(59000))
    fill = OrderUpdate(OrderEventType.FILL, filled, AT, qty=D("0.01"), price=D(59000), execution_id=str(uuid.uuid4()))
    (back,) = round_trip(fill)
    assert (back.event, back.qty, back.price, back.order.status, back.order.filled_avg_price) == (
        OrderEventType.FILL, D("0.01"), D(59000), OrderStatus.FILLED, D(59000))
    assert back.order.id == filled.id and back.execution_id


def test_replace_is_cancel_of_the_old_order():
    (back,) = round_trip(OrderUpdate(OrderEventType.REPLACED, order(status=OrderStatus.REPLACED), AT))
    assert back.event is OrderEventType.CANCELED


def test_algo_order_new_cancel_and_fire():
    stop = order(OrderType.STOP)
    assert [e.event for e in round_trip(OrderUpdate(OrderEventType.NEW, stop, AT))] == [OrderEventType.NEW]
    assert [e.event for e in round_trip(OrderUpdate(OrderEventType.CANCELED, stop, AT))] == [OrderEventType.CANCELED]
    fired = order(OrderType.STOP, status=OrderStatus.FILLED, filled_qty=D("0.01"), filled_avg_price=D(61500))
    messages = wire.order_event_to_wire(OrderUpdate(OrderEventType.FILL, fired, AT, qty=D("0.01"), price=D(61500)), NOW)
    assert [m["e"] for m in messages] == ["ALGO_UPDATE", "ORDER_TRADE_UPDATE", "ALGO_UPDATE"]
    assert wire.triggered_order_id(messages[0]) == (fired.id, fired.id)
    events = [e for m in messages for e in wire.events_from_wire(m, resolve)]
    assert [e.event for e in events] == [OrderEventType.TRIGGERED, OrderEventType.FILL]  # FINISHED adds nothing
    assert events[1].order.type is OrderType.STOP and events[1].price == D(61500)


@pytest.mark.parametrize("kind", [OrderType.STOP, OrderType.STOP_LIMIT])
def test_take_profit_and_close_position_survive_the_stream(kind):
    tp = order(kind, side=Side.SELL, profit_trigger=True, close_position=kind is OrderType.STOP)
    messages = wire.order_event_to_wire(OrderUpdate(OrderEventType.NEW, tp, AT), NOW)
    assert messages[0]["o"]["o"] == ("TAKE_PROFIT_MARKET" if kind is OrderType.STOP else "TAKE_PROFIT")
    (back,) = round_trip(OrderUpdate(OrderEventType.NEW, tp, AT))
    assert back.order.type is kind and back.order.profit_trigger
    assert back.order.close_position is (kind is OrderType.STOP)


def test_post_only_is_gtx_on_the_stream():
    (back,) = round_trip(OrderUpdate(OrderEventType.NEW, order(post_only=True), AT))
    assert back.order.post_only and back.order.time_in_force is TimeInForce.GTC


def test_account_update_round_trips_positions_and_skips_unknown_symbols():
    message = wire.account_update_to_wire(PositionUpdate("BTC/USDT", AssetClass.CRYPTO, D("-0.02"), D(60000), AT), NOW)
    (position,) = wire.events_from_wire(message, resolve)
    assert (position.symbol, position.qty, position.entry_price) == ("BTC/USDT", D("-0.02"), D(60000))
    message["a"]["P"][0]["s"] = "DOGEUSDT"
    assert wire.events_from_wire(message, resolve) == []


def test_messages_the_model_does_not_track_give_nothing():
    assert wire.events_from_wire({"e": "listenKeyExpired", "E": NOW, "listenKey": "k"}, resolve) == []
    assert wire.events_from_wire({"e": "MARGIN_CALL"}, resolve) == []


@pytest.mark.parametrize(
    "message",
    [[], {"e": "ORDER_TRADE_UPDATE"}, {"e": "ORDER_TRADE_UPDATE", "o": {"s": "BTCUSDT", "x": "NEW", "X": "WHAT"}},
     {"e": "ORDER_TRADE_UPDATE", "o": {"s": "BTCUSDT", "x": "NEW", "X": "NEW", "i": "1", "o": "LIMIT", "S": "UP"}}],
    ids=["list", "no-order", "bad-status", "bad-side"],
)
def test_unreadable_messages_are_invalid(message):
    with pytest.raises(InvalidRequest):
        wire.events_from_wire(message, resolve)
