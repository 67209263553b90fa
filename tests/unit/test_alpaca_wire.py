"""The Alpaca codec: round trips, alpaca-py model compatibility, and every refusal of a bad order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum

import pytest
from alpaca.trading import models as alpaca_models
from alpaca.trading import requests as alpaca_requests
from alpaca.trading.enums import OrderClass as AlpacaOrderClass
from alpaca.trading.enums import OrderSide, PositionIntent
from alpaca.trading.enums import TimeInForce as AlpacaTif

from gateway.errors import InvalidRequest
from gateway.model import (
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Clock,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
)
from gateway.wire import alpaca as wire

T0 = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
OID = "2f0b6c3e-8a51-4d0e-9a57-1c2d3e4f5a6b"
LEG1 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
LEG2 = "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"


def make_order(**overrides) -> Order:
    fields = {
        "id": OID,
        "client_order_id": "bot-1",
        "symbol": "AAPL",
        "asset_class": AssetClass.US_EQUITY,
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "time_in_force": TimeInForce.DAY,
        "status": OrderStatus.NEW,
        "created_at": T0,
        "updated_at": T0,
        "submitted_at": T0,
        "qty": Decimal("2.5"),
        "limit_price": Decimal("190.01"),
    }
    fields.update(overrides)
    return Order(**fields)


def bracket_order() -> Order:
    take = make_order(id=LEG1, client_order_id="leg-tp", side=Side.SELL, status=OrderStatus.HELD,
                      limit_price=Decimal(200))
    stop = make_order(id=LEG2, client_order_id="leg-sl", side=Side.SELL, type=OrderType.STOP,
                      status=OrderStatus.HELD, limit_price=None, stop_price=Decimal(180))
    return make_order(order_class=OrderClass.BRACKET, legs=[take, stop])


def order_body(**overrides) -> dict:
    body = {"symbol": "AAPL", "qty": 2.0, "side": "buy", "type": "market", "time_in_force": "day"}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


# ---------------------------------------------------------------------------------------
# Responses


class TestOrderWire:
    def test_numbers_are_strings_and_times_are_utc(self):
        data = wire.order_to_wire(make_order(filled_qty=Decimal("1.50")))
        assert data["qty"] == "2.5" and data["limit_price"] == "190.01" and data["filled_qty"] == "1.5"
        assert data["notional"] is None and data["filled_avg_price"] is None
        assert data["created_at"] == "2025-03-14T15:09:26.535897Z"
        assert data["type"] == data["order_type"] == "limit"

    def test_round_trip_with_legs(self):
        order = bracket_order()
        back = wire.order_from_wire(wire.order_to_wire(order))
        assert back == order

    def test_validates_with_alpaca_py(self):
        model = alpaca_models.Order(**wire.order_to_wire(bracket_order()))
        assert str(model.id) == OID
        assert model.order_class == AlpacaOrderClass.BRACKET
        assert [str(leg.id) for leg in model.legs] == [LEG1, LEG2]
        assert model.qty == "2.5"

    def test_asset_id_is_stable_uuid_per_symbol(self):
        a = wire.order_to_wire(make_order())["asset_id"]
        assert a == wire.asset_id_for("AAPL") == wire.order_to_wire(make_order(id=LEG1))["asset_id"]
        assert a != wire.asset_id_for("MSFT")

    def test_upstream_status_without_internal_name_counts_as_open(self):
        data = wire.order_to_wire(make_order()) | {"status": "done_for_day"}
        assert wire.order_from_wire(data).status.is_open

    def test_upstream_mleg_is_refused(self):
        with pytest.raises(InvalidRequest, match="mleg"):
            wire.order_from_wire(wire.order_to_wire(make_order()) | {"order_class": "mleg"})

    def test_gateway_note_travels(self):
        data = wire.order_to_wire(make_order(gateway_note="qty clamped from 10 to 2.5"))
        assert data["gateway_note"] == "qty clamped from 10 to 2.5"
        alpaca_models.Order(**data)  # an unknown field does not break the client


class TestPositionWire:
    def test_long_round_trip_and_alpaca_py(self):
        pos = Position("BTC/USD", AssetClass.CRYPTO, Decimal("0.5"), Decimal(60000), Decimal(61000), Decimal(59000))
        data = wire.position_to_wire(pos)
        assert data["market_value"] == "30500" and data["unrealized_pl"] == "500"
        assert data["unrealized_intraday_pl"] == "1000" and data["side"] == "long"
        model = alpaca_models.Position(**data)
        assert model.exchange.value == "CRYPTO"
        assert wire.position_from_wire(data) == pos

    def test_short_option_keeps_sign_and_multiplier(self):
        pos = Position("AAPL250117C00190000", AssetClass.US_OPTION, Decimal(-2), Decimal(5), Decimal(4))
        data = wire.position_to_wire(pos)
        assert data["qty"] == "-2" and data["side"] == "short"
        assert data["market_value"] == "-800" and data["unrealized_pl"] == "200"
        alpaca_models.Position(**data)
        back = wire.position_from_wire(data)
        assert back.qty == Decimal(-2) and back.lastday_price == Decimal(4)

    def test_side_short_with_unsigned_qty_is_negative(self):
        data = wire.position_to_wire(Position("AAPL", AssetClass.US_EQUITY, Decimal(3), Decimal(10), Decimal(10)))
        assert wire.position_from_wire(data | {"side": "short"}).qty == Decimal(-3)


class TestAccountClockAssetWire:
    def test_account_round_trip_and_alpaca_py(self):
        account = Account(
            id="0e4c1d5a-3b2f-4c6d-9e8f-7a6b5c4d3e2f",
            equity=Decimal("100250.5"),
            cash=Decimal(-1000),
            buying_power=Decimal(200501),
            long_market_value=Decimal("101250.5"),
            short_market_value=Decimal(0),
            last_equity=Decimal(100000),
            multiplier=Decimal(2),
            created_at=T0,
        )
        data = wire.account_to_wire(account)
        assert data["equity"] == "100250.5" and data["cash"] == "-1000"
        model = alpaca_models.TradeAccount(**data)
        assert str(model.id) == account.id and model.portfolio_value == "100250.5"
        assert wire.account_from_wire(data) == account

    def test_account_with_non_uuid_id_still_validates(self):
        account = Account("paper-1", Decimal(1), Decimal(1), Decimal(1), Decimal(0), Decimal(0), Decimal(1))
        alpaca_models.TradeAccount(**wire.account_to_wire(account))

    def test_clock(self):
        clock = Clock(T0, True, T0 + timedelta(days=1), T0 + timedelta(hours=6))
        data = wire.clock_to_wire(clock)
        assert alpaca_models.Clock(**data).is_open is True
        assert wire.clock_from_wire(data) == clock

    def test_asset_unknown_exchange_becomes_empty(self):
        asset = Asset("x", "AAPL250117C00190000", AssetClass.US_OPTION, "AAPL call", "OPRA")
        data = wire.asset_to_wire(asset)
        model = alpaca_models.Asset(**data)
        assert model.exchange.value == "" and model.asset_class.value == "us_option"
        assert wire.asset_from_wire(data).symbol == asset.symbol

    def test_asset_round_trip(self):
        asset = Asset(wire.asset_id_for("AAPL"), "AAPL", AssetClass.US_EQUITY, "Apple", "NASDAQ")
        assert wire.asset_from_wire(wire.asset_to_wire(asset)) == asset


class TestBulkRows:
    def test_close_rows(self):
        ok = BulkResult(id="AAPL", status=200, order=make_order(side=Side.SELL, type=OrderType.MARKET, limit_price=None))
        bad = BulkResult(id="TSLA", status=403, message="insufficient qty")
        rows = [wire.close_result_to_wire(ok), wire.close_result_to_wire(bad)]
        models = [alpaca_models.ClosePositionResponse(**row) for row in rows]
        assert str(models[0].order_id) == OID and models[1].body.code == 40310000
        assert [wire.close_result_from_wire(row) for row in rows] == [ok, bad]

    def test_cancel_rows(self):
        ok = BulkResult(id=OID, status=200, order=make_order(status=OrderStatus.CANCELED))
        bad = BulkResult(id=LEG1, status=422, message="not cancelable")
        rows = [wire.cancel_result_to_wire(ok), wire.cancel_result_to_wire(bad)]
        for row in rows:
            alpaca_requests.CancelOrderResponse(**row)
        assert rows[1]["body"] == {"code": 42210000, "message": "not cancelable"}
        assert [wire.cancel_result_from_wire(row) for row in rows] == [ok, bad]


# ---------------------------------------------------------------------------------------
# Requests: what alpaca-py sends parses to the right intent


def alpaca_py_body(request) -> dict:
    return request.to_request_fields()


class TestOrderRequestsFromAlpacaPy:
    def test_market_qty(self):
        body = alpaca_py_body(alpaca_requests.MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                                                 time_in_force=AlpacaTif.DAY))
        intent = wire.parse_order_request(body)
        assert intent == OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.MARKET, TimeInForce.DAY,
                                     qty=Decimal(2))

    def test_float_qty_stays_exact(self):
        assert wire.parse_order_request(order_body(qty=0.1)).qty == Decimal("0.1")

    def test_string_numbers_accepted(self):
        intent = wire.parse_order_request(order_body(type="limit", qty="3", limit_price="101.25"))
        assert intent.qty == Decimal(3) and intent.limit_price == Decimal("101.25")

    def test_market_notional_crypto(self):
        body = alpaca_py_body(alpaca_requests.MarketOrderRequest(symbol="BTC/USD", notional=250.5,
                                                                 side=OrderSide.BUY, time_in_force=AlpacaTif.GTC))
        intent = wire.parse_order_request(body)
        assert intent.notional == Decimal("250.5") and intent.qty is None
        assert intent.asset_class is AssetClass.CRYPTO

    def test_stop_limit_with_position_intent_and_option(self):
        body = alpaca_py_body(alpaca_requests.StopLimitOrderRequest(
            symbol="AAPL250117C00190000", qty=1, side=OrderSide.SELL, time_in_force=AlpacaTif.DAY,
            stop_price=4.5, limit_price=4.4, position_intent=PositionIntent.SELL_TO_CLOSE))
        intent = wire.parse_order_request(body)
        assert intent.asset_class is AssetClass.US_OPTION
        assert (intent.stop_price, intent.limit_price) == (Decimal("4.5"), Decimal("4.4"))

    def test_trailing_stop_percent(self):
        body = alpaca_py_body(alpaca_requests.TrailingStopOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=AlpacaTif.GTC, trail_percent=1.5))
        assert wire.parse_order_request(body).trail_percent == Decimal("1.5")

    def test_bracket(self):
        body = alpaca_py_body(alpaca_requests.LimitOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=AlpacaTif.GTC, limit_price=190,
            order_class=AlpacaOrderClass.BRACKET,
            take_profit=alpaca_requests.TakeProfitRequest(limit_price=200),
            stop_loss=alpaca_requests.StopLossRequest(stop_price=180, limit_price=179.5)))
        intent = wire.parse_order_request(body)
        assert intent.order_class is OrderClass.BRACKET
        assert intent.take_profit == TakeProfit(Decimal(200))
        assert intent.stop_loss == StopLoss(Decimal(180), Decimal("179.5"))

    def test_oco_takes_its_limit_from_take_profit(self):
        body = alpaca_py_body(alpaca_requests.LimitOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=AlpacaTif.GTC,
            order_class=AlpacaOrderClass.OCO,
            take_profit=alpaca_requests.TakeProfitRequest(limit_price=200),
            stop_loss=alpaca_requests.StopLossRequest(stop_price=180)))
        assert wire.parse_order_request(body).limit_price == Decimal(200)

    def test_oto_with_stop_loss_only(self):
        body = order_body(order_class="oto", stop_loss={"stop_price": 180})
        intent = wire.parse_order_request(body)
        assert intent.stop_loss == StopLoss(Decimal(180)) and intent.take_profit is None

    def test_empty_order_class_is_simple_and_nulls_are_absent(self):
        intent = wire.parse_order_request(order_body(order_class="", limit_price=None, client_order_id=None))
        assert intent.order_class is OrderClass.SIMPLE and intent.client_order_id is None

    def test_lowercase_symbol_is_normalised(self):
        assert wire.parse_order_request(order_body(symbol="btc/usd", time_in_force="gtc")).symbol == "BTC/USD"

    def test_intent_round_trips_through_the_upstream_body(self):
        intent = OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                             qty=Decimal("1.5"), limit_price=Decimal(190), order_class=OrderClass.BRACKET,
                             take_profit=TakeProfit(Decimal(200)), stop_loss=StopLoss(Decimal(180)),
                             client_order_id="c-1", extended_hours=True)
        body = wire.intent_to_wire(intent, "c-1")
        assert body["qty"] == "1.5" and body["take_profit"] == {"limit_price": "200"}
        assert wire.parse_order_request(body) == intent


# ---------------------------------------------------------------------------------------
# Requests: every refusal names its field


BAD_ORDERS = [
    # size
    (order_body(notional=100), "qty and notional"),
    (order_body(qty=...), "one of qty or notional"),
    (order_body(qty=-1), "qty must not be negative"),
    (order_body(qty=0), "qty must be greater than zero"),
    (order_body(qty="0"), "qty must be greater than zero"),
    (order_body(qty="NaN"), "qty must be finite"),
    (order_body(qty="inf"), "qty must be finite"),
    (order_body(qty=float("nan")), "qty must be finite"),
    (order_body(qty=1e308), "qty exceeds the maximum"),
    (order_body(qty="1e308"), "qty exceeds the maximum"),
    (order_body(qty=True), "qty must be a number"),
    (order_body(qty="two"), "qty is not a number"),
    (order_body(qty=[1]), "qty must be a number"),
    (order_body(qty="0.0000000000001"), "qty has more than"),
    (order_body(qty=..., notional=-5), "notional must not be negative"),
    (order_body(qty=..., notional="1e12"), "notional exceeds the maximum"),
    (order_body(qty=..., notional=100, type="limit", limit_price=10), "notional is only allowed"),
    # enums
    (order_body(type="iceberg"), "type must be one of"),
    (order_body(type=3), "type must be a string"),
    (order_body(side="hold"), "side must be one of"),
    (order_body(time_in_force="forever"), "time_in_force must be one of"),
    (order_body(order_class="fancy"), "order_class must be one of"),
    (order_body(order_class="mleg"), "mleg"),
    (order_body(legs=[{"symbol": "AAPL250117C00190000", "ratio_qty": 1, "side": "buy"}]), "legs"),
    (order_body(position_intent="buy_to_hold"), "position_intent must be one of"),
    (order_body(position_intent="sell_to_open"), "contradicts side"),
    # required / unknown fields
    (order_body(symbol=...), "symbol is required"),
    (order_body(side=...), "side is required"),
    (order_body(type=...), "type is required"),
    (order_body(time_in_force=...), "time_in_force is required"),
    (order_body(leverage=10), "unknown field leverage"),
    (order_body(reduce_only=True), "unknown field reduce_only"),
    (order_body(symbol="not a symbol"), "symbol is not a known symbol shape"),
    (order_body(symbol="A" * 40), "symbol is longer"),
    (order_body(symbol=""), "symbol must be a non-empty string"),
    (order_body(extended_hours="yes"), "extended_hours must be true or false"),
    # client order id
    (order_body(client_order_id="x" * 129), "client_order_id must be at most 128"),
    (order_body(client_order_id=""), "client_order_id must be a non-empty string"),
    (order_body(client_order_id=7), "client_order_id must be a non-empty string"),
    (order_body(client_order_id="a\nb"), "client_order_id must not contain control"),
    # prices per type
    (order_body(type="limit"), "limit_price is required for limit"),
    (order_body(type="stop"), "stop_price is required for stop"),
    (order_body(type="stop_limit", stop_price=10), "limit_price is required for stop_limit"),
    (order_body(type="stop_limit", limit_price=10), "stop_price is required for stop_limit"),
    (order_body(limit_price=10), "limit_price is not allowed for market"),
    (order_body(type="limit", limit_price=10, stop_price=9), "stop_price is not allowed for limit"),
    (order_body(type="limit", limit_price="-1"), "limit_price must not be negative"),
    (order_body(type="limit", limit_price="1e10"), "limit_price exceeds the maximum"),
    # trailing stops
    (order_body(type="trailing_stop"), "exactly one of trail_price or trail_percent"),
    (order_body(type="trailing_stop", trail_price=1, trail_percent=1), "exactly one of trail_price or trail_percent"),
    (order_body(type="trailing_stop", trail_percent=101), "trail_percent exceeds the maximum"),
    (order_body(type="trailing_stop", trail_price=1, limit_price=5), "limit_price is not allowed for trailing_stop"),
    (order_body(trail_price=1), "trail_price is not allowed for market"),
    # brackets and friends
    (order_body(order_class="bracket", take_profit={"limit_price": 200}), "bracket orders require stop_loss"),
    (order_body(order_class="bracket", stop_loss={"stop_price": 180}), "bracket orders require take_profit"),
    (order_body(order_class="bracket", take_profit={"limit_price": 180}, stop_loss={"stop_price": 200}),
     "take_profit.limit_price must be above"),
    (order_body(side="sell", order_class="bracket", take_profit={"limit_price": 200}, stop_loss={"stop_price": 180}),
     "take_profit.limit_price must be below"),
    (order_body(order_class="bracket", take_profit=200, stop_loss={"stop_price": 180}), "take_profit must be an object"),
    (order_body(order_class="bracket", take_profit={"limit_price": 200, "qty": 1}, stop_loss={"stop_price": 180}),
     "unknown field take_profit.qty"),
    (order_body(order_class="bracket", take_profit={}, stop_loss={"stop_price": 180}),
     "take_profit.limit_price must be a number"),
    (order_body(order_class="bracket", take_profit={"limit_price": 200}, stop_loss={"stop_price": "NaN"}),
     "stop_loss.stop_price must be finite"),
    (order_body(order_class="bracket", take_profit={"limit_price": 200}, stop_loss={"stop_price": 180, "trail": 1}),
     "unknown field stop_loss.trail"),
    (order_body(order_class="bracket", time_in_force="ioc", take_profit={"limit_price": 200},
                stop_loss={"stop_price": 180}), "time_in_force day or gtc"),
    (order_body(take_profit={"limit_price": 200}), "take_profit requires order_class"),
    (order_body(stop_loss={"stop_price": 180}), "stop_loss requires order_class"),
    (order_body(order_class="oto"), "exactly one of take_profit or stop_loss"),
    (order_body(order_class="oto", take_profit={"limit_price": 200}, stop_loss={"stop_price": 180}),
     "exactly one of take_profit or stop_loss"),
    (order_body(order_class="oco", side="sell", take_profit={"limit_price": 200}, stop_loss={"stop_price": 180}),
     "oco orders must have type limit"),
    (order_body(order_class="oco", side="sell", type="limit", limit_price=199, take_profit={"limit_price": 200},
                stop_loss={"stop_price": 180}), "must equal take_profit.limit_price"),
]


@pytest.mark.parametrize("body, message", BAD_ORDERS, ids=[m for _, m in BAD_ORDERS])
def test_bad_order_is_refused_naming_the_field(body, message):
    with pytest.raises(InvalidRequest) as caught:
        wire.parse_order_request(body)
    assert message in caught.value.message


@pytest.mark.parametrize("body", [[], "order", None, 3])
def test_non_object_order_is_refused(body):
    with pytest.raises(InvalidRequest, match="JSON object"):
        wire.parse_order_request(body)


class TestReplaceAndQueries:
    def test_replace_from_alpaca_py(self):
        body = alpaca_requests.ReplaceOrderRequest(qty=3, limit_price=191.5, client_order_id="r-1").to_request_fields()
        assert wire.parse_replace_request(body) == OrderReplace(qty=Decimal(3), limit_price=Decimal("191.5"),
                                                                client_order_id="r-1")

    def test_replace_round_trip(self):
        change = OrderReplace(qty=Decimal(2), time_in_force=TimeInForce.GTC, stop_price=Decimal(5), trail=Decimal(1))
        assert wire.parse_replace_request(wire.replace_to_wire(change)) == change

    @pytest.mark.parametrize("body, message", [
        ({}, "at least one of"),
        ({"qty": 0}, "qty must be greater than zero"),
        ({"qty": "inf"}, "qty must be finite"),
        ({"side": "sell"}, "unknown field side"),
        ({"time_in_force": "never"}, "time_in_force must be one of"),
        ({"client_order_id": "z" * 129}, "client_order_id must be at most"),
    ])
    def test_bad_replace(self, body, message):
        with pytest.raises(InvalidRequest) as caught:
            wire.parse_replace_request(body)
        assert message in caught.value.message

    def test_query_from_alpaca_py_params(self):
        request = alpaca_requests.GetOrdersRequest(status="closed", limit=10, after=T0, direction="asc",
                                                   nested=True, side=OrderSide.SELL, symbols=["AAPL", "BTC/USD"])
        params = request.to_request_fields()
        params["symbols"] = ",".join(params["symbols"])  # as TradingClient.get_orders does
        # requests sends a str enum as its value and True as "True"
        params = {k: v.value if isinstance(v, Enum) else str(v) for k, v in params.items()}
        query = wire.parse_order_query(params)
        assert query == OrderQuery(status="closed", limit=10, after=T0, direction="asc", nested=True,
                                   symbols=("AAPL", "BTC/USD"), side=Side.SELL)

    def test_query_round_trip_and_defaults(self):
        assert wire.parse_order_query({}) == OrderQuery()
        query = OrderQuery(status="all", limit=500, until=T0, symbols=("MSFT",), side=Side.BUY)
        assert wire.parse_order_query(wire.order_query_to_params(query)) == query

    def test_unencoded_plus_in_timestamp(self):
        assert wire.parse_order_query({"after": "2025-03-14T15:09:26 00:00"}).after == T0.replace(microsecond=0)

    @pytest.mark.parametrize("params, message", [
        ({"status": "pending"}, "status must be one of"),
        ({"limit": "0"}, "limit must be an integer"),
        ({"limit": "501"}, "limit must be an integer"),
        ({"limit": "-1"}, "limit must be an integer"),
        ({"direction": "sideways"}, "direction must be one of"),
        ({"after": "yesterday"}, "after must be an ISO-8601"),
        ({"nested": "maybe"}, "nested must be true or false"),
        ({"symbols": "AAPL,not valid"}, "symbols is not a known symbol shape"),
        ({"side": "both"}, "side must be one of"),
        ({"symbol": "AAPL"}, "unknown field query parameter symbol"),
    ])
    def test_bad_query(self, params, message):
        with pytest.raises(InvalidRequest) as caught:
            wire.parse_order_query(params)
        assert message in caught.value.message

    def test_close_position_params(self):
        assert wire.parse_close_position_params({"qty": "1.5"}) == (Decimal("1.5"), None)
        assert wire.parse_close_position_params({"percentage": "50"}) == (None, Decimal(50))
        assert wire.parse_close_position_params({}) == (None, None)
        for params, message in [({"qty": "1", "percentage": "5"}, "mutually exclusive"),
                                ({"percentage": "101"}, "percentage exceeds"), ({"qty": "-1"}, "negative"),
                                ({"all": "1"}, "unknown field")]:
            with pytest.raises(InvalidRequest, match=message):
                wire.parse_close_position_params(params)
