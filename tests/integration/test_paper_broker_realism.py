"""The standalone paper broker behaves like Alpaca where it changes a client's behaviour: held
quantities, order shapes, the rate limit, and open-order lists that page. Driven by alpaca-py and
aiohttp over real sockets; the CLI flags are tested on a `gatewayctl paper-broker` process."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest, StopLossRequest

from gateway.model import OrderQuery
from gateway.paper_broker import build_paper_broker_app
from gateway.venues.paper import PaperVenue
from tests.conftest import PAPER_KEY_ID, PAPER_SECRET, start_app

from .support import free_port, paper_broker_subprocess

HEADERS = {"APCA-API-KEY-ID": PAPER_KEY_ID, "APCA-API-SECRET-KEY": PAPER_SECRET}


@pytest.fixture  # one per test: the rate-limit test spends the budget (tests run in random order)
def strict_broker():
    """`gatewayctl paper-broker --dialect alpaca --rate-limit 40/min` (Alpaca's rules are on by
    default)."""
    port = free_port()
    args = ("--key-id", PAPER_KEY_ID, "--secret", PAPER_SECRET, "--rate-limit", "40/min")
    with paper_broker_subprocess(port, *args):
        yield f"http://127.0.0.1:{port}"


async def call(session, method, url, **kw):
    async with session.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def stats(session, url) -> dict:
    status, body, _ = await call(session, "GET", f"{url}/_paper/stats")
    assert status == 200
    return body


async def test_held_shares_cannot_be_sold_twice_and_the_refusal_is_alpacas(strict_broker):
    client = TradingClient(PAPER_KEY_ID, PAPER_SECRET, url_override=strict_broker)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        await call(session, "POST", f"{strict_broker}/_paper/prices", json={"XOM": "110"})
        protected = MarketOrderRequest(
            symbol="XOM", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OTO, stop_loss=StopLossRequest(stop_price=100),
        )
        await asyncio.to_thread(client.submit_order, protected)
        sell = {"symbol": "XOM", "qty": "10", "side": "sell", "type": "market", "time_in_force": "day"}
        status, body, _ = await call(session, "POST", f"{strict_broker}/v2/orders", json=sell)
    assert status == 403
    assert body == {"code": 40310000, "message": "insufficient qty available for order (requested: 10, available: 0)"}
    with pytest.raises(APIError) as refused:  # alpaca-py reads the same refusal
        await asyncio.to_thread(client.close_position, "XOM")
    assert refused.value.status_code == 403 and refused.value.code == 40310000


async def test_crypto_oto_is_refused_but_a_crypto_stop_limit_is_accepted(strict_broker):
    client = TradingClient(PAPER_KEY_ID, PAPER_SECRET, url_override=strict_broker)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        await call(session, "POST", f"{strict_broker}/_paper/prices", json={"ETH/USD": "3000"})
        oto = {
            "symbol": "ETH/USD", "qty": "0.5", "side": "buy", "type": "market", "time_in_force": "gtc",
            "order_class": "oto", "stop_loss": {"stop_price": "2800"},
        }
        status, body, _ = await call(session, "POST", f"{strict_broker}/v2/orders", json=oto)
    assert status == 422 and body["code"] == 42210000 and "crypto orders must be simple" in body["message"]
    order = await asyncio.to_thread(
        client.submit_order,
        LimitOrderRequest(symbol="ETH/USD", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=2900),
    )
    assert order.status == "new"


async def test_rate_limit_answers_429_beyond_n_a_minute_and_stats_count_the_requests(strict_broker):
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        before = await stats(session, strict_broker)
        budget = before["limit_per_min"] - before["used_last_min"]
        assert before["limit_per_min"] == 40 and budget > 0
        answers = [await call(session, "GET", f"{strict_broker}/v2/account") for _ in range(budget + 3)]
        after = await stats(session, strict_broker)
    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * budget + [429] * 3
    status, body, headers = answers[-1]
    assert body == {"code": 42910000, "message": "too many requests: the limit is 40 a minute"}
    assert answers[0][2]["X-RateLimit-Limit"] == "40" and headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Served requests are counted (the stats calls themselves are not); refusals separately.
    assert after["requests"] - before["requests"] == budget
    assert after["rate_limited"] - before["rate_limited"] == 3
    assert after["by_route"]["GET /v2/account"] >= budget


async def test_stats_need_the_key(strict_broker):
    async with aiohttp.ClientSession() as session:
        status, body, _ = await call(session, "GET", f"{strict_broker}/_paper/stats")
    assert status == 401 and body["code"] == 40110000


async def test_lenient_flag_accepts_what_alpaca_refuses():
    port = free_port()
    with paper_broker_subprocess(port, "--key-id", PAPER_KEY_ID, "--secret", PAPER_SECRET, "--lenient"):
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            await call(session, "POST", f"{url}/_paper/prices", json={"BTC/USD": "60000"})
            oto = {
                "symbol": "BTC/USD", "qty": "0.1", "side": "buy", "type": "market", "time_in_force": "gtc",
                "order_class": "oto", "stop_loss": {"stop_price": "55000"},
            }
            status, body, _ = await call(session, "POST", f"{url}/v2/orders", json=oto)
            assert status == 200 and body["order_class"] == "oto"
            status, body, headers = await call(session, "GET", f"{url}/v2/account")
    assert status == 200 and "X-RateLimit-Limit" not in headers  # no limit unless asked for


async def test_600_open_orders_page_by_submission_time_with_alpaca_py():
    venue = PaperVenue(starting_equity=Decimal(10_000_000))
    await venue.set_prices({"AAPL": Decimal(190)})
    app = build_paper_broker_app(venue, key_id=PAPER_KEY_ID, secret=PAPER_SECRET)
    runner, port = await start_app(app)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            placed = []
            for i in range(600):
                body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "gtc",
                        "limit_price": str(100 + i % 50), "client_order_id": f"rest-{i}"}
                status, order, _ = await call(session, "POST", f"{url}/v2/orders", json=body)
                assert status == 200
                placed.append(order["id"])
            status, refused, _ = await call(session, "GET", f"{url}/v2/orders", params={"limit": "501"})
            assert status == 422 and "limit" in refused["message"]
        client = TradingClient(PAPER_KEY_ID, PAPER_SECRET, url_override=url)

        def page(**kw):
            return client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, **kw))

        # Oldest first: ask for what was submitted after the last one seen.
        forward, after = [], None
        while True:
            batch = await asyncio.to_thread(page, direction="asc", after=after)
            forward += [str(o.id) for o in batch]
            if len(batch) < 500:
                break
            after = batch[-1].submitted_at
        # Newest first (the default): ask for what was submitted until the last one seen.
        backward, until = [], None
        while True:
            batch = await asyncio.to_thread(page, until=until)
            backward += [str(o.id) for o in batch]
            if len(batch) < 500:
                break
            until = batch[-1].submitted_at
    finally:
        await runner.cleanup()
    assert forward == placed
    assert backward == placed[::-1]
    assert len(await venue.list_orders(OrderQuery(limit=10_000))) == 500  # one call never returns more


async def test_binance_dialect_limits_request_weight_with_binances_429():
    from yarl import URL

    from gateway.paper_broker import build_binance_paper_broker_app

    from .test_binance_paper_broker import BROKER_KEY, BROKER_SECRET, sign

    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    app = build_binance_paper_broker_app(venue, key_id=BROKER_KEY, secret=BROKER_SECRET, rate_limit=100)
    runner, port = await start_app(app)
    try:
        async with aiohttp.ClientSession(headers={"X-MBX-APIKEY": BROKER_KEY}) as session:

            async def open_orders(**params):
                url = URL(f"http://127.0.0.1:{port}/fapi/v1/openOrders?{sign(params, BROKER_SECRET)}", encoded=True)
                return await call(session, "GET", url)

            first = await open_orders()  # 40 weight without a symbol
            second = await open_orders(symbol="BTCUSDT")  # 1 with one
            third = await open_orders()
            refused = await open_orders()  # 40 + 1 + 40 + 40 > 100
            stats_url = URL(f"http://127.0.0.1:{port}/_paper/stats?{sign({}, BROKER_SECRET)}", encoded=True)
            counted = await call(session, "GET", stats_url)
    finally:
        await runner.cleanup()
    assert [first[0], second[0], third[0], refused[0]] == [200, 200, 200, 429]
    assert refused[1] == {"code": -1003, "msg": "too many requests: the limit is 100 a minute"}
    assert first[2]["X-MBX-USED-WEIGHT-1M"] == "40" and third[2]["X-MBX-USED-WEIGHT-1M"] == "81"
    assert 1 <= int(refused[2]["Retry-After"]) <= 60
    assert counted[1]["weight"] == 81 and counted[1]["requests"] == 3 and counted[1]["rate_limited"] == 1


async def test_market_data_is_metered_apart_from_the_trading_api(paper_broker):
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        await call(session, "POST", f"{paper_broker.url}/_paper/prices", json={"AAPL": "190", "BTC/USD": "60000"})
        await call(session, "GET", f"{paper_broker.url}/v2/stocks/AAPL/trades/latest")
        await call(session, "GET", f"{paper_broker.url}/v1beta3/crypto/us/latest/trades", params={"symbols": "BTC/USD"})
        await call(session, "GET", f"{paper_broker.url}/v2/account")
        counted = await stats(session, paper_broker.url)
    assert counted["requests"] == 1 and counted["by_route"] == {"GET /v2/account": 1}
    assert counted["market_data"]["requests"] == 2
    assert counted["market_data"]["by_route"]["GET /v2/stocks/{symbol}/trades/latest"] == 1
