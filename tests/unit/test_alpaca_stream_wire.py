"""The trade_updates codec, both directions."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from gateway.errors import InvalidRequest
from gateway.model import AssetClass, Order, OrderEventType, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from gateway.wire import alpaca_stream as wire

AT = datetime(2025, 1, 6, 15, 0, tzinfo=timezone.utc)


def order(status=OrderStatus.FILLED) -> Order:
    return Order(
        id=str(uuid.uuid4()), client_order_id="bot-1", symbol="BTC/USD", asset_class=AssetClass.CRYPTO,
        side=Side.SELL, type=OrderType.MARKET, time_in_force=TimeInForce.GTC, status=status,
        created_at=AT, updated_at=AT, submitted_at=AT, qty=D("0.5"), filled_qty=D("0.5"), filled_avg_price=D("60000"),
    )


def test_fill_round_trips_with_its_execution_and_a_negative_position():
    update = OrderUpdate(OrderEventType.FILL, order(), AT, qty=D("0.5"), price=D("60000"),
                         position_qty=D("-1.25"), execution_id=str(uuid.uuid4()))
    message = wire.trade_update_to_wire(update)
    assert message["stream"] == "trade_updates"
    assert message["data"]["qty"] == "0.5" and message["data"]["position_qty"] == "-1.25"
    back = wire.trade_update_from_wire(message["data"])
    assert back == update


def test_triggered_goes_out_as_alpacas_new():
    message = wire.trade_update_to_wire(OrderUpdate(OrderEventType.TRIGGERED, order(OrderStatus.NEW), AT))
    assert message["data"]["event"] == "new"
    assert wire.trade_update_from_wire(message["data"]).event is OrderEventType.NEW


def test_events_the_model_does_not_track_are_skipped():
    data = wire.trade_update_to_wire(OrderUpdate(OrderEventType.NEW, order(OrderStatus.NEW), AT))["data"]
    assert wire.trade_update_from_wire({**data, "event": "restated"}) is None


@pytest.mark.parametrize("data", [[], {"event": "fill"}, {"event": "fill", "order": {"id": "x"}}], ids=["list", "no-order", "bad-order"])
def test_unreadable_updates_are_invalid(data):
    with pytest.raises(InvalidRequest):
        wire.trade_update_from_wire(data)


def test_both_auth_shapes_and_nothing_else():
    assert wire.parse_auth({"action": "auth", "key": "K", "secret": "S"}) == ("K", "S")
    assert wire.parse_auth({"action": "authenticate", "data": {"key_id": "K", "secret_key": "S"}}) == ("K", "S")
    for bad in ({"action": "listen"}, {"action": "auth", "key": "K"}, {"action": "auth", "key": "K", "secret": 5}):
        with pytest.raises(InvalidRequest):
            wire.parse_auth(bad)
