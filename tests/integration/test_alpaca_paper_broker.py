"""The real alpaca-py TradingClient against the standalone paper broker, over a real socket.

alpaca-py is synchronous (requests), and the broker runs in the test's event loop, so every
client call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from gateway.model import AssetClass, OrderQuery
from gateway.paper_broker import run_paper_broker
from gateway.wire.alpaca import asset_id_for


def call(fn, *args, **kwargs):
    return asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def broker(paper_broker):
    await paper_broker.venue.set_prices({"AAPL": Decimal(190), "MSFT": Decimal(420), "BTC/USD": Decimal(60000)})
    return paper_broker


@pytest.fixture
def client(broker) -> TradingClient:
    return TradingClient(broker.key_id, broker.secret, paper=True, url_override=broker.url)


def market(symbol="AAPL", side=OrderSide.BUY, tif=TimeInForce.DAY, **size):
    size = size or {"qty": 1}
    return MarketOrderRequest(symbol=symbol, side=side, time_in_force=tif, **size)


def headers(broker) -> dict[str, str]:
    return {"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": broker.secret}


# ---------------------------------------------------------------------------------------
# Account, clock, assets


async def test_account(client):
    account = await call(client.get_account)
    assert account.equity == "100000" and account.cash == "100000"
    assert account.status.value == "ACTIVE" and account.portfolio_value == "100000"
    assert Decimal(account.buying_power) > 0


async def test_clock_and_assets(client):
    clock = await call(client.get_clock)
    assert clock.is_open is True and clock.next_close > clock.timestamp
    asset = await call(client.get_asset, "AAPL")
    assert asset.symbol == "AAPL" and asset.asset_class.value == "us_equity" and asset.tradable
    crypto = await call(client.get_asset, "BTC/USD")
    assert crypto.symbol == "BTC/USD" and crypto.exchange.value == "CRYPTO"
    with pytest.raises(APIError) as caught:
        await call(client.get_asset, "ZZZZ")
    assert caught.value.status_code == 404 and caught.value.code == 40410000


# ---------------------------------------------------------------------------------------
# Positions


async def test_positions_and_closing(client):
    await call(client.submit_order, market(qty=10))
    await call(client.submit_order, market("BTC/USD", tif=TimeInForce.GTC, notional=1200))

    positions = {p.symbol: p for p in await call(client.get_all_positions)}
    assert set(positions) == {"AAPL", "BTC/USD"}
    assert positions["AAPL"].qty == "10" and positions["AAPL"].market_value == "1900"
    btc = await call(client.get_open_position, "BTC/USD")
    assert btc.qty == "0.02" and btc.side.value == "long" and str(btc.asset_id) == asset_id_for("BTC/USD")
    by_asset_id = await call(client.get_open_position, uuid.UUID(asset_id_for("AAPL")))
    assert by_asset_id.symbol == "AAPL"

    closed = await call(client.close_position, "AAPL", ClosePositionRequest(qty="4"))
    assert closed.side == OrderSide.SELL and closed.qty == "4" and closed.status == OrderStatus.FILLED
    closed = await call(client.close_position, "AAPL", ClosePositionRequest(percentage="50"))
    assert closed.qty == "3"
    assert (await call(client.get_open_position, "AAPL")).qty == "3"
    closed = await call(client.close_position, "BTC/USD", ClosePositionRequest(percentage="50"))
    assert closed.symbol == "BTC/USD" and closed.qty == "0.01"

    with pytest.raises(APIError) as caught:
        await call(client.get_open_position, "MSFT")
    assert caught.value.status_code == 404 and caught.value.code == 40410000


async def test_close_all_positions_cancels_orders(client):
    await call(client.submit_order, market(qty=2))
    await call(client.submit_order, market("MSFT", qty=1))
    resting = await call(client.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                                 time_in_force=TimeInForce.DAY, limit_price=150))
    results = await call(client.close_all_positions, True)
    assert sorted(r.symbol for r in results) == ["AAPL", "MSFT"]
    assert all(r.status == 200 and r.body.status == OrderStatus.FILLED for r in results)
    assert await call(client.get_all_positions) == []
    assert (await call(client.get_order_by_id, resting.id)).status == OrderStatus.CANCELED


# ---------------------------------------------------------------------------------------
# Orders of every type


async def test_market_qty_and_notional(client):
    order = await call(client.submit_order, market(qty=2))
    assert order.type == OrderType.MARKET and order.status == OrderStatus.FILLED
    assert order.filled_qty == "2" and order.filled_avg_price == "190"
    order = await call(client.submit_order, market("MSFT", notional=210))
    assert order.notional == "210" and order.qty is None and order.filled_qty == "0.5"


async def test_limit_stop_stop_limit_trailing(client, broker):
    await call(client.submit_order, market(qty=5))
    limit = await call(client.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                               time_in_force=TimeInForce.GTC, limit_price=180.5))
    assert limit.type == OrderType.LIMIT and limit.limit_price == "180.5" and limit.status == OrderStatus.NEW
    stop = await call(client.submit_order, StopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL,
                                                             time_in_force=TimeInForce.DAY, stop_price=185))
    assert stop.type == OrderType.STOP and stop.stop_price == "185"
    stop_limit = await call(client.submit_order, StopLimitOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, stop_price=184, limit_price=183))
    assert stop_limit.type == OrderType.STOP_LIMIT and stop_limit.limit_price == "183"
    trailing = await call(client.submit_order, TrailingStopOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, trail_percent=2))
    assert trailing.type == OrderType.TRAILING_STOP and trailing.trail_percent == "2"
    trailing_price = await call(client.submit_order, TrailingStopOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, trail_price=3))
    assert trailing_price.trail_price == "3"

    # Moving the mark through the stops (via the broker's own price endpoint) fills them.
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{broker.url}/_paper/prices", json={"AAPL": "184.5"}, headers=headers(broker)) as r,
    ):
        assert r.status == 200 and await r.json() == {"AAPL": "184.5"}
    assert (await call(client.get_order_by_id, stop.id)).status == OrderStatus.FILLED
    assert (await call(client.get_order_by_id, trailing_price.id)).status == OrderStatus.FILLED
    assert (await call(client.get_order_by_id, limit.id)).status == OrderStatus.NEW


async def test_bracket_oco_oto(client):
    bracket = await call(client.submit_order, LimitOrderRequest(
        symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=189,
        order_class=OrderClass.BRACKET, take_profit=TakeProfitRequest(limit_price=200),
        stop_loss=StopLossRequest(stop_price=180, limit_price=179)))
    assert bracket.order_class == OrderClass.BRACKET and len(bracket.legs) == 2
    assert {leg.type for leg in bracket.legs} == {OrderType.LIMIT, OrderType.STOP_LIMIT}
    assert all(leg.status == OrderStatus.HELD and leg.side == OrderSide.SELL for leg in bracket.legs)

    await call(client.submit_order, market("MSFT", qty=3))
    oco = await call(client.submit_order, LimitOrderRequest(
        symbol="MSFT", qty=3, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, order_class=OrderClass.OCO,
        take_profit=TakeProfitRequest(limit_price=450), stop_loss=StopLossRequest(stop_price=400)))
    assert oco.order_class == OrderClass.OCO and oco.limit_price == "450" and len(oco.legs) == 1

    oto = await call(client.submit_order, MarketOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, order_class=OrderClass.OTO,
        stop_loss=StopLossRequest(stop_price=170)))
    assert oto.order_class == OrderClass.OTO and oto.status == OrderStatus.FILLED
    assert len(oto.legs) == 1 and oto.legs[0].type == OrderType.STOP


# ---------------------------------------------------------------------------------------
# Reading, replacing and canceling orders


async def test_read_orders_with_filters(client):
    start = datetime.now(UTC) - timedelta(seconds=5)
    filled = await call(client.submit_order, market(qty=1, client_order_id="bot-read-1"))
    open_aapl = await call(client.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                                   time_in_force=TimeInForce.DAY, limit_price=100))
    open_msft = await call(client.submit_order, LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY,
                                                                   time_in_force=TimeInForce.DAY, limit_price=100))
    bracket = await call(client.submit_order, LimitOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=150,
        order_class=OrderClass.BRACKET, take_profit=TakeProfitRequest(limit_price=200),
        stop_loss=StopLossRequest(stop_price=140)))

    got = await call(client.get_order_by_id, filled.id)
    assert got.id == filled.id and got.client_order_id == "bot-read-1"
    assert (await call(client.get_order_by_client_id, "bot-read-1")).id == filled.id
    nested = await call(client.get_order_by_id, bracket.id, GetOrderByIdRequest(nested=True))
    assert len(nested.legs) == 2

    open_ids = {o.id for o in await call(client.get_orders)}
    assert {open_aapl.id, open_msft.id, bracket.id} <= open_ids and filled.id not in open_ids
    msft = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["MSFT"]))
    assert [o.id for o in msft] == [open_msft.id]
    closed = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.CLOSED, side=OrderSide.BUY))
    assert [o.id for o in closed] == [filled.id]
    everything = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL, after=start,
                                                                 direction="asc", nested=True))
    assert everything[0].id == filled.id and everything[-1].id == bracket.id
    assert len(everything[-1].legs) == 2
    limited = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2))
    assert len(limited) == 2
    future = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL,
                                                            after=datetime.now(UTC) + timedelta(hours=1)))
    assert future == []

    with pytest.raises(APIError) as caught:
        await call(client.get_order_by_id, uuid.uuid4())
    assert caught.value.status_code == 404 and caught.value.code == 40410000
    with pytest.raises(APIError) as caught:
        await call(client.get_order_by_client_id, "no-such-order")
    assert caught.value.code == 40410000


async def test_replace_and_cancel(client):
    order = await call(client.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                               time_in_force=TimeInForce.DAY, limit_price=150))
    new = await call(client.replace_order_by_id, order.id, ReplaceOrderRequest(qty=2, limit_price=151.25))
    assert new.id != order.id and new.replaces == order.id
    assert new.qty == "2" and new.limit_price == "151.25" and new.status == OrderStatus.NEW
    old = await call(client.get_order_by_id, order.id)
    assert old.status == OrderStatus.REPLACED and old.replaced_by == new.id

    assert await call(client.cancel_order_by_id, new.id) is None
    assert (await call(client.get_order_by_id, new.id)).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as caught:
        await call(client.cancel_order_by_id, new.id)
    assert caught.value.status_code == 422 and caught.value.code == 42210000

    a = await call(client.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                           time_in_force=TimeInForce.DAY, limit_price=140))
    b = await call(client.submit_order, LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY,
                                                           time_in_force=TimeInForce.DAY, limit_price=300))
    results = await call(client.cancel_orders)
    assert {r.id for r in results} == {a.id, b.id} and all(r.status == 200 for r in results)
    assert await call(client.get_orders) == []


# ---------------------------------------------------------------------------------------
# Errors as alpaca-py sees them


async def test_wrong_credentials_are_401_with_alpaca_code(broker):
    for key, secret in [(broker.key_id, "wrong-secret"), ("PKWRONG", broker.secret)]:
        bad = TradingClient(key, secret, paper=True, url_override=broker.url)
        with pytest.raises(APIError) as caught:
            await call(bad.get_account)
        assert caught.value.status_code == 401 and caught.value.code == 40110000
        assert broker.secret not in str(caught.value)


async def test_oauth_token_is_refused(broker):
    oauth = TradingClient(oauth_token="some-oauth-token", paper=True, url_override=broker.url)
    with pytest.raises(APIError) as caught:
        await call(oauth.get_account)
    assert caught.value.status_code == 401 and "OAuth" in caught.value.message


async def test_insufficient_buying_power_is_403(client):
    with pytest.raises(APIError) as caught:
        await call(client.submit_order, market(qty=5000))
    assert caught.value.status_code == 403 and caught.value.code == 40310000


async def test_duplicate_client_order_id_is_422(client):
    await call(client.submit_order, market(qty=1, client_order_id="same"))
    with pytest.raises(APIError) as caught:
        await call(client.submit_order, market(qty=1, client_order_id="same"))
    assert caught.value.status_code == 422 and "client_order_id" in caught.value.message


# ---------------------------------------------------------------------------------------
# Raw HTTP: what alpaca-py would never send


async def raw(broker, method, path, *, data=None, json=None, auth=True, extra=None):
    hdrs = headers(broker) if auth else {}
    hdrs.update(extra or {})
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, broker.url + path, data=data, json=json, headers=hdrs) as response,
    ):
        return response.status, await response.json(content_type=None), response.headers


async def test_body_too_large_is_413(broker):
    status, body, _ = await raw(broker, "POST", "/v2/orders", data=b"{" + b" " * 70000 + b"}")
    assert status == 413 and body["code"] == 41310000


async def test_malformed_and_non_object_json_are_422(broker):
    for data in [b"{not json", b"[1, 2]", b"", b'{"qty": NaN}', b"\xff\xfe", b'{"qty": 1, "qty": 2}']:
        status, body, _ = await raw(broker, "POST", "/v2/orders", data=data)
        assert status == 422 and body["code"] == 42210000, data


async def test_invalid_order_names_the_field(broker):
    order = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
    status, body, _ = await raw(broker, "POST", "/v2/orders", json=order | {"leverage": 50})
    assert status == 422 and "leverage" in body["message"]
    status, body, _ = await raw(broker, "POST", "/v2/orders", json=order | {"notional": 5})
    assert status == 422 and "qty and notional" in body["message"]
    status, body, _ = await raw(broker, "POST", "/v2/orders", json=order | {"qty": "1e308"})
    assert status == 422 and "qty" in body["message"]


async def test_unknown_route_and_wrong_method(broker):
    status, body, _ = await raw(broker, "GET", "/v2/no_such_endpoint")
    assert status == 404 and body["code"] == 40410000
    status, body, hdrs = await raw(broker, "PUT", "/v2/orders")
    assert status == 405 and body["code"] == 40510000 and "POST" in hdrs["Allow"]


async def test_unauthenticated_never_reaches_the_broker(broker):
    status, body, _ = await raw(broker, "POST", "/v2/orders", auth=False,
                                json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"})
    assert status == 401 and body["code"] == 40110000
    status, _, _ = await raw(broker, "POST", "/_paper/prices", auth=False, json={"AAPL": 1})
    assert status == 401
    assert await broker.venue.list_orders(OrderQuery(status="all")) == []
    assert await broker.venue.latest_price("AAPL", AssetClass.US_EQUITY) == Decimal(190)


async def test_health_and_prices_endpoint(broker):
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{broker.url}/health") as r,
    ):
        assert r.status == 200 and (await r.json())["status"] == "ok"
    status, body, _ = await raw(broker, "POST", "/_paper/prices", json={"AAPL": "nan"})
    assert status == 422 and body["code"] == 42210000
    status, body, _ = await raw(broker, "POST", "/_paper/prices", json={"not a symbol": 1})
    assert status == 422
    status, body, _ = await raw(broker, "POST", "/_paper/prices", json={})
    assert status == 422
    status, body, _ = await raw(broker, "POST", "/_paper/prices", json={"ETH/USD": 3000.5, "SPY": "500"})
    assert status == 200 and body == {"ETH/USD": "3000.5", "SPY": "500"}


async def test_market_data_endpoints(broker):
    status, body, _ = await raw(broker, "GET", "/v2/stocks/AAPL/trades/latest")
    assert status == 200 and body["symbol"] == "AAPL" and body["trade"]["p"] == 190
    status, body, _ = await raw(broker, "GET", "/v1beta3/crypto/us/latest/trades?symbols=BTC/USD,ETH/USD")
    assert status == 200 and body["trades"]["BTC/USD"]["p"] == 60000 and "ETH/USD" not in body["trades"]
    status, body, _ = await raw(broker, "GET", "/v2/stocks/ZZZZ/trades/latest")
    assert status == 404


async def test_run_paper_broker_serves_until_cancelled(free_tcp_port):
    task = asyncio.create_task(run_paper_broker("127.0.0.1", free_tcp_port, equity=Decimal(5000),
                                                key_id="PKRUN", secret="run-secret"))
    url = f"http://127.0.0.1:{free_tcp_port}"
    client = TradingClient("PKRUN", "run-secret", paper=True, url_override=url)
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            try:
                account = await call(client.get_account)
                break
            except requests.ConnectionError:  # not listening yet
                assert asyncio.get_running_loop().time() < deadline, "the paper broker never listened"
                await asyncio.sleep(0.02)
        assert account.equity == "5000"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_paper_broker_refuses_unknown_dialect(free_tcp_port):
    with pytest.raises(ValueError, match="fix"):
        await run_paper_broker("127.0.0.1", free_tcp_port, equity=Decimal(1), key_id="k", secret="s",
                               dialect="fix")
