"""The Binance USDⓈ-M codec: requests in, responses out, and the error codes ccxt maps."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import ccxt
import pytest

from gateway.errors import InvalidRequest
from gateway.model import (
    Account,
    Asset,
    AssetClass,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)
from gateway.venues.base import TradingRules
from gateway.wire import binance as wire

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def rules(symbol: str = "BTC/USDT", tick: str = "0.1", step: str = "0.001") -> TradingRules:
    asset = Asset(id="x", symbol=symbol, asset_class=AssetClass.CRYPTO, name=symbol, exchange="PAPER")
    return TradingRules(asset, Decimal(tick), Decimal(step), min_qty=Decimal(step), max_leverage=125)


BOOK = wire.SymbolBook([rules(), rules("ETH/USDT", "0.01", "0.001"), rules("AAPL")])


def order(**fields) -> Order:
    base = dict(
        id="1f0e",
        client_order_id="cid-1",
        symbol="BTC/USDT",
        asset_class=AssetClass.CRYPTO,
        side=Side.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        status=OrderStatus.NEW,
        created_at=NOW,
        updated_at=NOW,
        submitted_at=NOW,
        qty=Decimal("0.010"),
        limit_price=Decimal("50000"),
    )
    return Order(**{**base, **fields})


# ---------------------------------------------------------------------------------------
# Error codes: every one must be mapped by ccxt's binance class under any host.


def _exact(code: int) -> type:
    return ccxt.binanceusdm().exceptions["exact"][str(code)]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (wire.BAD_ORDER, ccxt.InvalidOrder),
        (wire.ORDER_REJECTED, ccxt.InvalidOrder),
        (wire.INSUFFICIENT_MARGIN, ccxt.InsufficientFunds),
        (wire.BAD_SIGNATURE, ccxt.AuthenticationError),
        (wire.BAD_API_KEY, ccxt.AuthenticationError),
        (wire.REJECTED_API_KEY, ccxt.AuthenticationError),
        (wire.NO_SUCH_ORDER, ccxt.OrderNotFound),
        (wire.CANCEL_REJECTED, ccxt.OrderNotFound),
        (wire.BAD_SYMBOL, ccxt.BadSymbol),
        (wire.BAD_LEVERAGE, ccxt.BadRequest),
        (wire.BAD_PARAMETER, ccxt.BadRequest),
        (wire.MANDATORY_PARAMETER, ccxt.BadRequest),
        (wire.TOO_MANY_REQUESTS, ccxt.RateLimitExceeded),
        (wire.UPSTREAM_UNKNOWN, ccxt.RequestTimeout),
    ],
)
def test_codes_are_in_ccxts_host_independent_table(code, expected):
    assert _exact(code) is expected


def test_expired_timestamp_is_not_invalid_nonce():
    # -1021 would be InvalidNonce, which bots retry; an expired request is an auth failure.
    assert not issubclass(_exact(-1021), ccxt.AuthenticationError)
    assert issubclass(_exact(wire.BAD_SIGNATURE), ccxt.AuthenticationError)


def test_every_kind_has_a_mapped_code():
    table = ccxt.binanceusdm().exceptions["exact"]
    for kind, (status, code) in wire.CODES_BY_KIND.items():
        assert str(code) in table, kind
        assert status != 504


# ---------------------------------------------------------------------------------------
# Symbols


def test_symbols_both_ways():
    assert wire.wire_symbol("BTC/USDT") == "BTCUSDT"
    assert BOOK.resolve("BTCUSDT") == "BTC/USDT"
    assert BOOK.resolve("ethusdt") == "ETH/USDT"
    assert BOOK.resolve("DOGEUSDT") == "DOGE/USDT"  # not listed: split by its quote asset
    assert "AAPL" not in BOOK.markets  # only crypto is served


@pytest.mark.parametrize("raw", ["BTC/USDT", "BTC USDT", "X" * 30, "USDT", "btc-usdt", "AAPL"])
def test_bad_symbols(raw):
    with pytest.raises(wire.BinanceError) as info:
        BOOK.resolve(raw)
    assert info.value.code == wire.BAD_SYMBOL


# ---------------------------------------------------------------------------------------
# Orders in


def test_market_and_limit_orders():
    intent = wire.parse_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.010",
            "newClientOrderId": "x-abc_1",
            "newOrderRespType": "RESULT",
            "reduceOnly": "true",
            "timestamp": "1",
        },
        BOOK,
    )
    assert (intent.symbol, intent.side, intent.type, intent.qty) == (
        "BTC/USDT",
        Side.BUY,
        OrderType.MARKET,
        Decimal("0.010"),
    )
    assert intent.client_order_id == "x-abc_1" and intent.reduce_only and intent.asset_class is AssetClass.CRYPTO
    limit = wire.parse_order(
        {
            "symbol": "ETHUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "quantity": "1",
            "price": "3100.5",
            "timeInForce": "IOC",
        },
        BOOK,
    )
    assert limit.limit_price == Decimal("3100.5") and limit.time_in_force is TimeInForce.IOC and not limit.reduce_only


def test_algo_orders():
    stop = wire.parse_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "quantity": "0.01",
            "triggerPrice": "55000",
            "clientAlgoId": "s1",
            "workingType": "MARK_PRICE",
        },
        BOOK,
    )
    assert stop.type is OrderType.STOP and stop.stop_price == Decimal(55000) and stop.client_order_id == "s1"
    stop_limit = wire.parse_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "STOP",
            "quantity": "0.01",
            "triggerPrice": "65000",
            "price": "65100",
        },
        BOOK,
    )
    assert stop_limit.type is OrderType.STOP_LIMIT and stop_limit.limit_price == Decimal(65100)
    trailing = wire.parse_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "TRAILING_STOP_MARKET",
            "quantity": "0.01",
            "callbackRate": "1.5",
        },
        BOOK,
    )
    assert trailing.type is OrderType.TRAILING_STOP and trailing.trail_percent == Decimal("1.5")


def test_gtx_is_a_post_only_limit_order():
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"}
    intent = wire.parse_order({**params, "timeInForce": "GTX"}, BOOK)
    assert intent.post_only and intent.time_in_force is TimeInForce.GTC
    assert not wire.parse_order(params, BOOK).post_only


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": "NaN"},
        {"quantity": "-1"},
        {"quantity": "0"},
        {"quantity": "1e308"},
        {"quantity": "Infinity"},
        {"quantity": "0x10"},
        {"quantity": "1.0000000000001"},
        {"quantity": ""},
        {"price": "nan"},
        {"price": "-5"},
        {"price": "1e20"},
        {"type": "BOGUS"},
        {"side": "HOLD"},
        {"type": "MARKET", "price": "", "timeInForce": "GTX"},  # post-only is for LIMIT orders
        {"timeInForce": "GTD"},
        {"positionSide": "LONG"},
        {"closePosition": "true"},
        {"reduceOnly": "maybe"},
        {"newClientOrderId": "has space"},
        {"newClientOrderId": "x" * 37},
        {"priceMatch": "OPPONENT"},
        {"leverage": "50"},  # unknown parameters are refused, not ignored
        {"type": "STOP_MARKET", "stopPrice": "1"},  # conditional types go to algoOrder
        {"type": "TAKE_PROFIT_MARKET"},
    ],
)
def test_bad_order_input(change):
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000", **change}
    with pytest.raises((InvalidRequest, wire.BinanceError)):
        wire.parse_order(params, BOOK)


def test_take_profit_close_position_and_activation_parse():
    base = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "triggerPrice": "65000"}
    tp = wire.parse_algo_order({**base, "type": "TAKE_PROFIT_MARKET", "quantity": "0.01"}, BOOK)
    assert tp.type is OrderType.STOP and tp.profit_trigger and tp.stop_price == Decimal(65000)
    tpl = wire.parse_algo_order({**base, "type": "TAKE_PROFIT", "quantity": "0.01", "price": "64900"}, BOOK)
    assert tpl.type is OrderType.STOP_LIMIT and tpl.profit_trigger and tpl.limit_price == Decimal(64900)
    close = wire.parse_algo_order({**base, "type": "STOP_MARKET", "closePosition": "true"}, BOOK)
    assert close.close_position and close.reduce_only and close.qty is None and not close.profit_trigger
    trail = wire.parse_algo_order(
        {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "TRAILING_STOP_MARKET",
         "quantity": "0.01", "callbackRate": "1", "activatePrice": "66000"},
        BOOK,
    )
    assert trail.activation_price == Decimal(66000)


@pytest.mark.parametrize(
    "change",
    [
        {"algoType": "VP"},
        {"type": "TAKE_PROFIT_MARKET", "closePosition": "true"},  # quantity cannot be sent with it
        {"quantity": None, "closePosition": "true", "reduceOnly": "true"},  # nor reduceOnly
        {"type": "STOP", "price": "54000", "quantity": None, "closePosition": "true"},  # market types only
        {"type": "TAKE_PROFIT", "triggerPrice": "65000"},  # a take-profit limit needs its price
        {"type": "LIMIT"},
        {"triggerPrice": "NaN"},
        {"triggerPrice": None},
        {"activatePrice": "60000"},
        {"timeInForce": "IOC"},
    ],
)
def test_bad_algo_input(change):
    params = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "quantity": "0.01",
        "triggerPrice": "55000",
        **change,
    }
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises((InvalidRequest, wire.BinanceError)):
        wire.parse_algo_order(params, BOOK)


def test_missing_parameters_name_themselves():
    with pytest.raises(wire.BinanceError) as info:
        wire.parse_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}, BOOK)
    assert info.value.code == wire.MANDATORY_PARAMETER and "quantity" in info.value.message


@pytest.mark.parametrize("value", ["0", "126", "1.5", "-1", "abc", "", "99999"])
def test_bad_leverage(value):
    with pytest.raises(wire.BinanceError) as info:
        wire.parse_leverage({"leverage": value})
    assert info.value.code in (wire.BAD_LEVERAGE, wire.MANDATORY_PARAMETER)


def test_leverage_and_margin_type():
    assert wire.parse_leverage({"leverage": "20"}) == 20
    assert wire.parse_margin_type({"marginType": "ISOLATED"}) == "isolated"
    assert wire.parse_margin_type({"marginType": "CROSSED"}) == "cross"
    with pytest.raises(InvalidRequest):
        wire.parse_margin_type({"marginType": "PORTFOLIO"})


def test_history_query_bounds_are_inclusive():
    query = wire.parse_history_query({"startTime": "1000", "endTime": "2000", "limit": "1000"}, "BTC/USDT")
    assert query.after == wire.from_ms(999) and query.until == wire.from_ms(2001)
    assert query.limit == wire.INTERNAL_LIST_LIMIT and query.symbols == ("BTC/USDT",) and query.status == "all"
    with pytest.raises(InvalidRequest):
        wire.parse_history_query({"limit": "5000"}, None)


# ---------------------------------------------------------------------------------------
# Responses out


def test_plain_order_shape():
    body = wire.order_to_wire(
        order(status=OrderStatus.PARTIALLY_FILLED, filled_qty=Decimal("0.004"), filled_avg_price=Decimal("50000"))
    )
    assert body["orderId"] == "1f0e" and body["symbol"] == "BTCUSDT" and body["status"] == "PARTIALLY_FILLED"
    assert body["origQty"] == "0.01" and body["executedQty"] == "0.004" and body["cumQuote"] == "200"
    assert body["price"] == "50000" and body["type"] == "LIMIT" and body["side"] == "BUY"
    assert body["positionSide"] == "BOTH" and body["time"] == wire.ms(NOW)
    assert wire.order_to_wire(order(id="123456"))["orderId"] == 123456  # numeric ids go out as numbers


def test_conditional_orders_render_as_algo_orders():
    stop = order(type=OrderType.STOP, limit_price=None, stop_price=Decimal("55000"), side=Side.SELL)
    body = wire.order_to_wire(stop)
    assert body["algoId"] == "1f0e" and body["clientAlgoId"] == "cid-1" and body["orderType"] == "STOP_MARKET"
    assert body["algoStatus"] == "NEW" and body["triggerPrice"] == "55000" and body["quantity"] == "0.01"
    filled = wire.algo_order_to_wire(
        order(
            type=OrderType.STOP,
            stop_price=Decimal(1),
            status=OrderStatus.FILLED,
            filled_qty=Decimal("0.01"),
            filled_at=NOW,
        )
    )
    assert filled["algoStatus"] == "FINISHED" and filled["executedQty"] == "0.01"
    assert wire.algo_cancel_to_wire(stop) == {
        "algoId": "1f0e",
        "clientAlgoId": "cid-1",
        "code": "200",
        "msg": "success",
    }


def test_account_and_positions():
    account = Account(
        id="a",
        equity=Decimal("100100"),
        cash=Decimal("100000"),
        buying_power=Decimal("99500"),
        long_market_value=Decimal("600"),
        short_market_value=Decimal(0),
        last_equity=Decimal("100000"),
        currency="USDT",
        initial_margin=Decimal("600"),
    )
    body = wire.account_to_wire(account, [], 123, version=3)
    asset = body["assets"][0]
    assert asset["asset"] == "USDT" and asset["marginBalance"] == "100100" and asset["availableBalance"] == "99500"
    assert asset["initialMargin"] == "600" and asset["updateTime"] == 123  # ccxt skips updateTime 0
    assert body["totalUnrealizedProfit"] == "100" and body["totalWalletBalance"] == "100000"
    position = Position("BTC/USDT", AssetClass.CRYPTO, Decimal("-0.01"), Decimal("60000"), Decimal("59000"))
    risk = wire.position_to_wire(position, 5, "isolated", 123)
    assert risk["positionAmt"] == "-0.01" and risk["notional"] == "-590" and risk["unRealizedProfit"] == "10"
    assert risk["leverage"] == "5" and risk["marginType"] == "isolated" and risk["initialMargin"] == "118"
    assert wire.balance_to_wire(account, 5)[0]["balance"] == "100000"


def test_exchange_info_lets_ccxt_build_markets():
    info = wire.exchange_info_to_wire([rules()], 1)
    exchange = ccxt.binanceusdm()
    market = exchange.parse_market(info["symbols"][0])
    assert market["symbol"] == "BTC/USDT:USDT" and market["swap"] and market["linear"] and market["active"]
    assert market["precision"]["price"] == 0.1 and market["precision"]["amount"] == 0.001
    assert {"STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"} <= set(info["symbols"][0]["orderTypes"])


def test_leverage_bracket_advertises_the_callers_ceiling():
    bracket = wire.leverage_bracket_to_wire("BTC/USDT", 3)
    assert bracket["symbol"] == "BTCUSDT" and bracket["brackets"][0]["initialLeverage"] == 3


def test_ticker_and_coins():
    ticker = wire.ticker_to_wire("BTC/USDT", Decimal("60000.5"), 10**12)
    assert ticker["lastPrice"] == "60000.5" and ticker["symbol"] == "BTCUSDT"
    coins = wire.coins_to_wire([rules(), rules("ETH/USDT")])
    assert [c["coin"] for c in coins] == ["BTC", "ETH", "USDT"]
    assert ccxt.binanceusdm().parse_currency(coins[0])["code"] == "BTC"
