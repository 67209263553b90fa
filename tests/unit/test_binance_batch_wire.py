"""Parsing of Binance ``batchOrders`` and order amend (``PUT /fapi/v1/order``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.errors import InvalidRequest
from gateway.model import AssetClass, Order, OrderStatus, OrderType, Side, TimeInForce
from gateway.wire import binance_batch as batch
from gateway.wire.binance import BinanceError

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"}


def test_a_batch_is_a_list_of_parameter_maps_as_strings():
    raw = json.dumps([ORDER, {**ORDER, "quantity": 0.02, "reduceOnly": True}])
    first, second = batch.parse_batch({"batchOrders": raw, "timestamp": "1", "signature": "x"})
    assert first == ORDER
    assert second["quantity"] == "0.02" and second["reduceOnly"] == "true"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{}",
        "[]",
        json.dumps([ORDER] * 6),  # Binance's limit is 5
        "[" + ",".join(["{}"] * 3) + "]" + " " * batch.MAX_BATCH_CHARS,
    ],
)
def test_a_malformed_batch_is_refused_whole(raw):
    with pytest.raises((InvalidRequest, BinanceError)):  # an empty one is a missing parameter
        batch.parse_batch({"batchOrders": raw})


def test_unknown_batch_parameters_are_refused():
    with pytest.raises(InvalidRequest):
        batch.parse_batch({"batchOrders": json.dumps([ORDER]), "symbol": "BTCUSDT"})


@pytest.mark.parametrize(
    "order",
    ["text", [ORDER], {**ORDER, "price": {"nested": 1}}, {**ORDER, "timestamp": "1"}, {**ORDER, "quantity": None}],
)
def test_a_malformed_order_is_marked_for_its_own_error(order):
    (parsed,) = batch.parse_batch({"batchOrders": json.dumps([order])})
    assert "_malformed" in parsed


def test_nan_is_never_a_number_in_a_batch():
    with pytest.raises(InvalidRequest):
        batch.parse_batch({"batchOrders": '[{"quantity": NaN}]'})


def _order(kind: OrderType = OrderType.LIMIT) -> Order:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Order(
        id="1",
        client_order_id="c",
        symbol="BTC/USDT",
        asset_class=AssetClass.CRYPTO,
        side=Side.BUY,
        type=kind,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.NEW,
        created_at=now,
        updated_at=now,
        submitted_at=now,
        qty=Decimal("0.01"),
        limit_price=Decimal(50000),
    )


def test_amend_is_a_replace_of_quantity_and_price():
    change = batch.parse_amend({"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.02", "price": "50100", "orderId": "1"}, _order())
    assert change.qty == Decimal("0.02") and change.limit_price == Decimal(50100)


@pytest.mark.parametrize(
    "params, kind",
    [
        ({"side": "SELL", "quantity": "0.02", "price": "50100"}, OrderType.LIMIT),  # the side cannot change
        ({"side": "BUY", "quantity": "0.02"}, OrderType.LIMIT),  # price is mandatory
        ({"side": "BUY", "quantity": "NaN", "price": "50100"}, OrderType.LIMIT),
        ({"side": "BUY", "quantity": "0.02", "price": "50100", "priceMatch": "QUEUE"}, OrderType.LIMIT),
        ({"side": "BUY", "quantity": "0.02", "price": "50100", "leverage": "5"}, OrderType.LIMIT),
        ({"side": "BUY", "quantity": "0.02", "price": "50100"}, OrderType.MARKET),  # LIMIT orders only
    ],
)
def test_bad_amends_are_refused(params, kind):
    with pytest.raises((InvalidRequest, BinanceError)):
        batch.parse_amend({"symbol": "BTCUSDT", "orderId": "1", **params}, _order(kind))
