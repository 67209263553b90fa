"""AlpacaVenue against the standalone paper broker over a real socket: every Venue method, the
error mapping, resolving uncertain submits, and that the secret never leaks."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiohttp import web

from gateway.errors import (
    GatewayError,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    OrderRejected,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from gateway.model import (
    AssetClass,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
)
from gateway.paper_broker import build_paper_broker_app
from gateway.venues.alpaca import AlpacaVenue
from gateway.venues.paper import PaperVenue

OPTION = "AAPL250117C00190000"
KEY_ID = "PKFAULTY000000000001"
SECRET = "faulty-broker-secret-0c8d2b7e"


def intent(symbol="AAPL", side=Side.BUY, qty="1", **fields) -> OrderIntent:
    fields.setdefault("type", OrderType.MARKET)
    fields.setdefault("time_in_force", TimeInForce.GTC if "/" in symbol else TimeInForce.DAY)
    asset_class = AssetClass.CRYPTO if "/" in symbol else AssetClass.US_EQUITY
    size = {"qty": Decimal(qty)} if "notional" not in fields else {}
    return OrderIntent(symbol=symbol, asset_class=asset_class, side=side, **size, **fields)


def limit(price, symbol="AAPL", **fields) -> OrderIntent:
    return intent(symbol, type=OrderType.LIMIT, limit_price=Decimal(price), **fields)


@pytest.fixture
async def venue(paper_broker):
    await paper_broker.venue.set_prices({"AAPL": Decimal(190), "BTC/USD": Decimal(60000), OPTION: Decimal("4.25")})
    v = AlpacaVenue(lambda: (paper_broker.key_id, paper_broker.secret), base_url=paper_broker.url, timeout_s=5)
    await v.start()
    yield v
    await v.close()


# ---------------------------------------------------------------------------------------
# Every Venue method


async def test_account_clock_asset_prices(venue):
    account = await venue.get_account()
    assert account.equity == Decimal(100000) and account.cash == Decimal(100000)
    clock = await venue.get_clock()
    assert clock.is_open
    asset = await venue.get_asset("BTC/USD")
    assert asset.asset_class is AssetClass.CRYPTO and asset.symbol == "BTC/USD"
    assert await venue.latest_price("AAPL", AssetClass.US_EQUITY) == Decimal(190)
    assert await venue.latest_price("BTC/USD", AssetClass.CRYPTO) == Decimal(60000)
    assert await venue.latest_price(OPTION, AssetClass.US_OPTION) == Decimal("4.25")
    with pytest.raises(NotFound):
        await venue.latest_price("MSFT", AssetClass.US_EQUITY)
    with pytest.raises(NotFound):
        await venue.latest_price("ETH/USD", AssetClass.CRYPTO)
    with pytest.raises(NotFound):
        await venue.get_asset("ZZZZ")


async def test_orders_positions_round_trip(venue):
    filled = await venue.submit_order(intent(qty="10", client_order_id="v-1"))
    assert filled.status is OrderStatus.FILLED and filled.filled_qty == Decimal(10)
    assert filled.filled_avg_price == Decimal(190) and filled.client_order_id == "v-1"
    crypto = await venue.submit_order(intent("BTC/USD", notional=Decimal(1200), qty=None))
    assert crypto.notional == Decimal(1200) and crypto.filled_qty == Decimal("0.02")

    positions = {p.symbol: p for p in await venue.list_positions()}
    assert positions["AAPL"].qty == Decimal(10) and positions["AAPL"].market_value == Decimal(1900)
    btc = await venue.get_position("BTC/USD")
    assert btc.qty == Decimal("0.02") and btc.asset_class is AssetClass.CRYPTO
    with pytest.raises(NotFound):
        await venue.get_position("MSFT")

    order = await venue.close_position("AAPL", qty=Decimal(4))
    assert order.side is Side.SELL and order.qty == Decimal(4)
    order = await venue.close_position("BTC/USD", percentage=Decimal(50))
    assert order.qty == Decimal("0.01")

    assert (await venue.get_order(filled.id)).id == filled.id
    assert (await venue.get_order_by_client_id("v-1")).id == filled.id

    results = await venue.close_all_positions(cancel_orders=True)
    assert sorted(r.id for r in results) == ["AAPL", "BTC/USD"]
    assert all(r.status == 200 and r.order.status is OrderStatus.FILLED for r in results)
    assert await venue.list_positions() == []


async def test_resting_orders_replace_cancel_list(venue):
    resting = await venue.submit_order(limit("150"))
    assert resting.status is OrderStatus.NEW and resting.limit_price == Decimal(150)
    new = await venue.replace_order(resting.id, OrderReplace(qty=Decimal(2), limit_price=Decimal("151.5")))
    assert new.replaces == resting.id and new.qty == Decimal(2) and new.limit_price == Decimal("151.5")
    assert (await venue.get_order(resting.id)).status is OrderStatus.REPLACED

    bracket = await venue.submit_order(limit("150", order_class=OrderClass.BRACKET,
                                             take_profit=TakeProfit(Decimal(200)), stop_loss=StopLoss(Decimal(140))))
    assert len(bracket.legs) == 2 and all(leg.status is OrderStatus.HELD for leg in bracket.legs)
    assert len((await venue.get_order(bracket.id, nested=True)).legs) == 2

    open_orders = await venue.list_orders(OrderQuery(status="open", symbols=("AAPL",), side=Side.BUY))
    assert {o.id for o in open_orders} == {new.id, bracket.id}
    assert len(await venue.list_orders(OrderQuery(status="all", limit=1))) == 1

    await venue.cancel_order(new.id)
    assert (await venue.get_order(new.id)).status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected):
        await venue.cancel_order(new.id)
    results = await venue.cancel_all_orders()
    assert bracket.id in {r.id for r in results} and all(r.status == 200 for r in results)
    assert await venue.list_orders(OrderQuery()) == []


async def test_resubmitting_a_client_order_id_returns_the_existing_order(venue):
    first = await venue.submit_order(intent(client_order_id="retry-me"))
    again = await venue.submit_order(intent(client_order_id="retry-me"))
    assert again.id == first.id
    assert len(await venue.list_orders(OrderQuery(status="all"))) == 1


async def test_venue_sets_a_client_order_id_when_the_bot_did_not(venue):
    order = await venue.submit_order(intent())
    assert order.client_order_id and (await venue.get_order_by_client_id(order.client_order_id)).id == order.id


# ---------------------------------------------------------------------------------------
# Error mapping


async def test_broker_refusals_map_to_gateway_errors(venue):
    with pytest.raises(InsufficientFunds):
        await venue.submit_order(intent(qty="5000"))
    with pytest.raises(OrderRejected) as caught:
        await venue.submit_order(intent("BTC/USD", side=Side.SELL))  # no BTC to sell
    assert "insufficient balance" in caught.value.message
    with pytest.raises(NotFound):
        await venue.get_order("7a1c0e9e-2b7d-4f4e-9d1c-0f3b2a1e4d5c")
    with pytest.raises(NotFound):
        await venue.get_order("not-a-uuid")
    with pytest.raises(NotFound):
        await venue.get_order_by_client_id("never-sent")
    with pytest.raises(InvalidRequest):
        await venue.get_position("../account")


async def test_wrong_key_is_upstream_unavailable_and_secret_free(paper_broker):
    venue = AlpacaVenue(lambda: (paper_broker.key_id, "a-wrong-secret-value-123456"), base_url=paper_broker.url)
    await venue.start()
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await venue.get_account()
        assert "broker credentials" in caught.value.message
        assert_secret_free(caught.value, "a-wrong-secret-value-123456")
    finally:
        await venue.close()


async def test_credentials_are_read_per_request(paper_broker):
    current = {"pair": ("PKOLD", "old-secret")}
    venue = AlpacaVenue(lambda: current["pair"], base_url=paper_broker.url)
    await venue.start()
    try:
        with pytest.raises(UpstreamUnavailable):
            await venue.get_account()
        current["pair"] = (paper_broker.key_id, paper_broker.secret)  # a rotation
        assert (await venue.get_account()).equity == Decimal(100000)
    finally:
        await venue.close()


async def test_connection_refused_is_upstream_unavailable(free_tcp_port):
    venue = AlpacaVenue(lambda: ("k", "refused-secret"), base_url=f"http://127.0.0.1:{free_tcp_port}", timeout_s=2)
    await venue.start()
    try:
        for call in (venue.get_account(), venue.submit_order(intent())):
            with pytest.raises(UpstreamUnavailable) as caught:
                await call
            assert_secret_free(caught.value, "refused-secret")
    finally:
        await venue.close()


async def test_not_started_fails_closed():
    with pytest.raises(UpstreamUnavailable):
        await AlpacaVenue(lambda: ("k", "s")).get_account()


async def test_missing_broker_credentials_fail_closed(paper_broker):
    def no_key():
        raise KeyError("alpaca key PKSECRETISH not found")

    for credentials in (no_key, lambda: ("", "")):
        venue = AlpacaVenue(credentials, base_url=paper_broker.url)
        await venue.start()
        try:
            with pytest.raises(UpstreamUnavailable) as caught:
                await venue.get_account()
            assert "credentials" in caught.value.message and caught.value.__context__ is None
        finally:
            await venue.close()


def test_data_url_defaults_and_repr():
    assert AlpacaVenue(lambda: ("k", "s")).data_url == "https://data.alpaca.markets"
    assert AlpacaVenue(lambda: ("k", "s"), base_url="https://api.alpaca.markets/").data_url == "https://data.alpaca.markets"
    assert AlpacaVenue(lambda: ("k", "s"), base_url="http://127.0.0.1:9/").data_url == "http://127.0.0.1:9"
    venue = AlpacaVenue(lambda: ("k", "s"), base_url="http://x", data_url="http://md/")
    assert venue.data_url == "http://md" and "s'" not in repr(venue)


# ---------------------------------------------------------------------------------------
# A misbehaving upstream: the paper broker with a fault injected in front of it


def assert_secret_free(exc: BaseException, secret: str) -> None:
    seen = set()
    while exc is not None and id(exc) not in seen:  # the whole chain, not just the top
        seen.add(id(exc))
        assert secret not in str(exc) and secret not in repr(exc) and secret not in repr(exc.args)
        exc = exc.__cause__ or exc.__context__


@pytest.fixture
async def faulty_broker(serve_app):
    """``venue, paper = await faulty_broker(fault)``: a paper broker whose requests first pass
    through ``fault(request, handler)``, and an AlpacaVenue (1.5 s timeout) pointed at it.
    A fault that must outlast the timeout awaits ``faulty_broker.hang`` (set when the test
    ends), not a sleep."""
    venues: list[AlpacaVenue] = []
    hang = asyncio.Event()

    async def start(fault):
        paper = PaperVenue()
        await paper.set_prices({"AAPL": Decimal(190)})
        app = build_paper_broker_app(paper, key_id=KEY_ID, secret=SECRET)
        app.middlewares.insert(0, web.middleware(fault))
        url = await serve_app(app)
        venue = AlpacaVenue(lambda: (KEY_ID, SECRET), base_url=url, timeout_s=1.5)
        await venue.start()
        venues.append(venue)
        return venue, paper

    start.hang = hang
    yield start
    hang.set()
    for venue in venues:
        await venue.close()


async def test_lost_answer_to_a_submit_is_resolved_by_client_order_id(faulty_broker):
    async def slow_after_placing(request, handler):
        response = await handler(request)
        if request.method == "POST":
            await faulty_broker.hang.wait()  # the order is placed, the answer never arrives in time
        return response

    venue, paper = await faulty_broker(slow_after_placing)
    order = await venue.submit_order(intent(client_order_id="lost-1"))
    assert order.client_order_id == "lost-1" and order.status is OrderStatus.FILLED
    assert len(paper.engine.list_orders(OrderQuery(status="all"))) == 1


async def test_submit_that_never_arrived_is_uncertain_not_retried(faulty_broker):
    async def broken_writes(request, handler):
        if request.method in ("POST", "PATCH"):
            return web.json_response({"code": 50010000, "message": "boom"}, status=500)
        return await handler(request)

    venue, paper = await faulty_broker(broken_writes)
    with pytest.raises(UpstreamUncertain):
        await venue.submit_order(intent())
    with pytest.raises(UpstreamUncertain):
        await venue.replace_order("7a1c0e9e-2b7d-4f4e-9d1c-0f3b2a1e4d5c", OrderReplace(qty=Decimal(1)))
    assert paper.engine.list_orders(OrderQuery(status="all")) == []


async def test_timeout_on_read_is_unavailable_and_garbage_is_unavailable(faulty_broker):
    async def misbehave(request, handler):
        if request.path == "/v2/clock":
            await faulty_broker.hang.wait()
        if request.path == "/v2/account":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        if request.path == "/v2/positions":
            return web.json_response({"not": "a list"})
        return await handler(request)

    venue, _ = await faulty_broker(misbehave)
    for call in (venue.get_clock, venue.get_account, venue.list_positions):
        with pytest.raises(UpstreamUnavailable):
            await call()


async def test_upstream_messages_are_truncated_and_scrubbed(faulty_broker):
    leaked = "sk_live_" + "Q" * 40

    async def chatty(request, handler):
        message = f"key {KEY_ID} secret {SECRET} token {leaked} order 7a1c0e9e-2b7d-4f4e-9d1c-0f3b2a1e4d5c"
        return web.json_response({"code": 40310000, "message": message + " x" * 500}, status=403)

    venue, _ = await faulty_broker(chatty)
    with pytest.raises(GatewayError) as caught:
        await venue.get_account()
    message = caught.value.message
    assert SECRET not in message and KEY_ID not in message and leaked not in message
    assert "7a1c0e9e-2b7d-4f4e-9d1c-0f3b2a1e4d5c" in message and len(message) <= 220
    assert_secret_free(caught.value, SECRET)
