"""alpaca-py's TradingClient through the gateway, over real sockets, on both venues:
the embedded paper venue, and --venue alpaca in front of a standalone paper-broker process."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
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

from gateway.model import OrderQuery
from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import BROKER_SECRET, RunningGateway, free_port, start_gateway, store_broker_key, wait_for


def client(gw: RunningGateway) -> TradingClient:
    return TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)


async def call(fn, *args, **kwargs):
    """alpaca-py is synchronous: run it in a thread so the gateway keeps serving."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture(params=["paper", "alpaca"])
async def gateway(request, gateway_home):
    """The gateway on the embedded venue, and on --venue alpaca in front of a paper-broker process."""
    if request.param == "paper":
        running = await start_gateway(gateway_home, venue="paper")
    else:
        broker = request.getfixturevalue("paper_broker_process")
        await broker.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
        store_broker_key(gateway_home)
        running = await start_gateway(gateway_home, venue="alpaca", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.mark.compat('alpaca-py TradingClient', 'get_account', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'submit_order', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'replace_order_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_order_by_client_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_order_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'cancel_order_by_id', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_orders', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_all_positions', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_open_position', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'close_position', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'cancel_orders', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'close_all_positions', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_clock', 'works')
@pytest.mark.compat('alpaca-py TradingClient', 'get_asset', 'works')
async def test_every_trading_client_call(gateway: RunningGateway):
    tc = client(gateway)
    account = await call(tc.get_account)
    assert Decimal(account.equity) == Decimal("100000")

    bought = await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    assert bought.status == OrderStatus.FILLED and bought.filled_qty == "5"
    by_notional = await call(tc.submit_order, MarketOrderRequest(symbol="MSFT", notional=500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    assert by_notional.notional == "500"

    resting = await call(tc.submit_order, LimitOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                                                            limit_price=450, client_order_id="my-limit-1"))
    assert resting.status in (OrderStatus.NEW, OrderStatus.ACCEPTED)
    replaced = await call(tc.replace_order_by_id, resting.id, ReplaceOrderRequest(qty=2, limit_price=460))
    assert replaced.replaces == resting.id and replaced.qty == "2" and replaced.limit_price == "460"
    assert (await call(tc.get_order_by_client_id, "my-limit-1")).id == resting.id
    assert (await call(tc.get_order_by_id, replaced.id)).limit_price == "460"
    await call(tc.cancel_order_by_id, replaced.id)
    assert (await call(tc.get_order_by_id, replaced.id)).status == OrderStatus.CANCELED

    await call(tc.submit_order, StopOrderRequest(symbol="QQQ", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, stop_price=440))
    await call(tc.submit_order, StopLimitOrderRequest(symbol="TSLA", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                                                      stop_price=260, limit_price=265))
    await call(tc.submit_order, TrailingStopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC,
                                                         trail_percent=5))
    bracket = await call(tc.submit_order, MarketOrderRequest(
        symbol="TSLA", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=300), stop_loss=StopLossRequest(stop_price=230)))
    assert bracket.order_class == OrderClass.BRACKET and len(bracket.legs or []) == 2
    oco = await call(tc.submit_order, LimitOrderRequest(
        symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, order_class=OrderClass.OCO, limit_price=210,
        take_profit=TakeProfitRequest(limit_price=210), stop_loss=StopLossRequest(stop_price=180)))
    assert oco.order_class == OrderClass.OCO
    oto = await call(tc.submit_order, MarketOrderRequest(
        symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, order_class=OrderClass.OTO,
        stop_loss=StopLossRequest(stop_price=480)))
    assert oto.order_class == OrderClass.OTO

    crypto = await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty=0.01, side=OrderSide.BUY, time_in_force=TimeInForce.GTC))
    assert crypto.status == OrderStatus.FILLED

    listed = await call(tc.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL, limit=100, symbols=["SPY"]))
    assert {o.symbol for o in listed} == {"SPY"} and len(listed) >= 2
    open_only = await call(tc.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN, side=OrderSide.BUY))
    assert all(o.side == OrderSide.BUY for o in open_only)

    positions = {p.symbol: p for p in await call(tc.get_all_positions)}
    assert {"AAPL", "MSFT", "BTC/USD", "TSLA", "SPY"} <= set(positions)
    assert (await call(tc.get_open_position, "BTC/USD")).qty == "0.01"
    assert (await call(tc.get_open_position, "AAPL")).qty == "5"

    half_btc = await call(tc.close_position, "BTC/USD", ClosePositionRequest(qty="0.005"))
    assert half_btc.side == OrderSide.SELL and half_btc.qty == "0.005"
    half_msft = await call(tc.close_position, "MSFT", ClosePositionRequest(percentage="50"))
    assert half_msft.side == OrderSide.SELL

    canceled = await call(tc.cancel_orders)
    assert len(canceled) >= 3 and all(r.status == 200 for r in canceled)
    closed = await call(tc.close_all_positions, cancel_orders=True)
    assert len(closed) >= 4
    assert await call(tc.get_all_positions) == []

    clock = await call(tc.get_clock)
    assert clock.is_open in (True, False) and clock.next_close > clock.timestamp
    asset = await call(tc.get_asset, "AAPL")
    assert asset.symbol == "AAPL" and asset.tradable


@pytest.mark.compat('alpaca-py TradingClient', 'submit_order', 'refused', why="orders beyond the signed policy's limits are rejected with the rule's code")
async def test_three_percent_order_is_rejected_and_nothing_reaches_the_broker(upstream_gateway, paper_broker_process):
    tc = client(upstream_gateway)
    before = await paper_broker_process.orders()
    with pytest.raises(APIError) as raised:
        # 16 x 190 = 3,040 = 3.04% of 100,000
        await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=16, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    error = raised.value
    assert error.status_code == 403
    assert error.code == 40310000
    message = error.message if isinstance(error.message, str) else str(error.message)
    assert "max_position_pct" in message and "3.04%" in message and "limit 2%" in message and "v1" in message
    assert await paper_broker_process.orders() == before


async def test_embedded_venue_rejects_three_percent(paper_gateway):
    with pytest.raises(APIError) as raised:
        await call(client(paper_gateway).submit_order,
                   MarketOrderRequest(symbol="AAPL", qty=16, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    assert raised.value.status_code == 403 and "max_position_pct" in str(raised.value)
    orders = await paper_gateway.gateway.venue.list_orders(OrderQuery(status="all"))
    assert orders == []


async def _concurrent_orders(gw: RunningGateway, symbols: list[str], qty: int) -> list[tuple[int, dict]]:
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        async def one(symbol):
            body = {"symbol": symbol, "qty": qty, "side": "buy", "type": "market", "time_in_force": "day"}
            async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                return resp.status, await resp.json()
        return await asyncio.gather(*(one(s) for s in symbols))


async def test_twenty_concurrent_orders_stay_within_total_exposure(upstream_gateway, paper_broker_process):
    symbols = [f"T{i:02d}" for i in range(20)]
    await paper_broker_process.set_prices({s: 100 for s in symbols})
    results = await _concurrent_orders(upstream_gateway, symbols, qty=15)  # 1.5% each
    accepted = [body for status, body in results if status == 200]
    rejected = [body for status, body in results if status == 403]
    assert len(accepted) + len(rejected) == 20
    total = sum(Decimal(o["qty"]) * 100 for o in accepted)
    assert total <= Decimal("20000")
    assert len(accepted) == 13
    assert all("max_exposure_pct" in body["message"] for body in rejected)
    broker_orders = await paper_broker_process.orders()
    assert len(broker_orders) == len(accepted)


async def test_twenty_concurrent_orders_on_the_embedded_venue(paper_gateway):
    symbols = [f"T{i:02d}" for i in range(20)]
    paper_gateway.gateway.venue.engine.set_prices({s: Decimal(100) for s in symbols})
    results = await _concurrent_orders(paper_gateway, symbols, qty=15)
    accepted = [body for status, body in results if status == 200]
    assert sum(Decimal(o["qty"]) * 100 for o in accepted) <= Decimal("20000")
    assert len(accepted) == 13


async def test_broker_secret_never_appears_in_any_response(upstream_gateway):
    gw = upstream_gateway
    seen: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        async def record(method, path, headers=gw.headers, **kw):
            async with session.request(method, f"{gw.url}{path}", headers=headers, **kw) as resp:
                seen.append(await resp.read())
                seen.append(repr(dict(resp.headers)).encode())
        await record("GET", "/v2/account")
        await record("GET", "/v2/positions")
        await record("POST", "/v2/orders", json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"})
        await record("POST", "/v2/orders", json={"symbol": "AAPL", "qty": 500, "side": "buy", "type": "market", "time_in_force": "day"})
        await record("POST", "/v2/orders", data=b"{not json", headers={**gw.headers, "Content-Type": "application/json"})
        await record("GET", "/v2/orders", params={"status": "all"})
        await record("GET", "/v2/orders/does-not-exist")
        await record("GET", "/v2/account", headers={"APCA-API-KEY-ID": gw.key_id, "APCA-API-SECRET-KEY": "wrong"})
        await record("GET", "/health")
    blob = b"\n".join(seen)
    assert BROKER_SECRET.encode() not in blob
    assert gw.secret.encode() not in blob
    assert b"PKUPSTREAM" not in blob  # not even the upstream key id


async def test_wrong_credentials_are_refused_in_alpaca_format(paper_gateway):
    bad = TradingClient(paper_gateway.key_id, "not-the-secret", paper=True, url_override=paper_gateway.url)
    with pytest.raises(APIError) as raised:
        await call(bad.get_account)
    assert raised.value.status_code == 401 and raised.value.code == 40110000


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"symbol": "AAPL", "qty": 1, "notional": 100, "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": -1, "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": 0, "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": "NaN", "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": "Infinity", "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": 1e308, "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        ({"symbol": "AAPL", "qty": 1, "side": "buy", "type": "teleport", "time_in_force": "day"}, "type"),
        ({"symbol": "AAPL", "qty": 1, "side": "borrow", "type": "market", "time_in_force": "day"}, "side"),
    ],
)
async def test_bad_orders_get_422_and_nothing_is_forwarded(upstream_gateway, paper_broker_process, body, fragment):
    async with aiohttp.ClientSession(headers=upstream_gateway.headers) as session:
        async with session.post(f"{upstream_gateway.url}/v2/orders", json=body) as resp:
            assert resp.status == 422
            error = await resp.json()
    assert error["code"] == 42210000 and fragment in error["message"]
    assert await paper_broker_process.orders() == []


async def test_malformed_json_and_oversized_bodies(paper_gateway):
    async with aiohttp.ClientSession(headers=paper_gateway.headers) as session:
        async with session.post(f"{paper_gateway.url}/v2/orders", data=b"{nope", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 422 and (await resp.json())["code"] == 42210000
        async with session.post(f"{paper_gateway.url}/v2/orders", data=b"{" + b" " * 200_000 + b"}",
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413 and "code" in await resp.json()
    assert await paper_gateway.gateway.venue.list_orders(OrderQuery(status="all")) == []


async def test_upstream_down_is_a_clear_5xx_never_504(gateway_home, short_tmp):
    store_broker_key(gateway_home)
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=dead)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
            async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                # The venue is down, the order is not bad: 503 (alpaca-py does not re-send it),
                # never a rejection (403) and never 504 (which alpaca-py retries).
                error = await resp.json()
                assert resp.status == 503, error
                assert error["code"] == 50310000 and "the venue is unreachable" in error["message"]
            async with session.get(f"{gw.url}/v2/account") as resp:
                assert resp.status == 503 and (await resp.json())["code"] == 50310000
    finally:
        await gw.gateway.stop()


async def test_fills_reach_the_book(paper_gateway):
    tc = client(paper_gateway)
    await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    portfolio = paper_gateway.gateway.portfolio
    await wait_for(lambda: portfolio.book("AAPL") is not None and portfolio.book("AAPL").position_qty == 5)
    await wait_for(lambda: not paper_gateway.gateway.pipeline.ledger.open_orders())
    assert portfolio.committed == Decimal(950)
