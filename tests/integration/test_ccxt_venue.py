"""CcxtVenue (ccxt.async_support binanceusdm) against the Binance futures paper broker over a real
socket: reads, orders, emulated oto/bracket exits, leverage, and the error mapping, including
an order whose answer is lost."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from aiohttp import web

from gateway.errors import (
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from gateway.model import (
    AssetClass,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderStatus,
    OrderType,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
)
from gateway.paper_broker import build_binance_paper_broker_app
from gateway.venues.ccxt import CcxtVenue
from gateway.venues.paper import PaperVenue

KEY = "BNUPSTREAM0000000042"
SECRET = "binance-upstream-secret-do-not-leak-8d1f"
D = Decimal


def intent(symbol="BTC/USDT", side=Side.BUY, qty="0.01", type=OrderType.MARKET, **fields) -> OrderIntent:
    return OrderIntent(
        symbol, AssetClass.CRYPTO, side, type, fields.pop("time_in_force", TimeInForce.GTC), qty=D(qty), **fields
    )


class Broker:
    """The paper broker in-process, with a switch to lose the answer to the next order."""

    def __init__(self):
        self.paper = PaperVenue(starting_equity=D(100000), seed_marks=True, futures=True)
        self.app = build_binance_paper_broker_app(self.paper, key_id=KEY, secret=SECRET)
        self.app.middlewares.insert(0, self._trouble)
        self.mode: str | None = None  # "lose": place, then answer too late; "drop": never place
        # A held answer waits for this (set when the test ends), not for a guessed duration:
        # the venue's own timeout is what ends the wait, however loaded the machine is.
        self.hang = asyncio.Event()
        # (method, path) -> (status, JSON body or text): answered instead of the paper broker.
        self.canned: dict[tuple[str, str], tuple[int, dict | str]] = {}
        self.canned_hits: list[str] = []

    @web.middleware
    async def _trouble(self, request, handler):
        canned = self.canned.get((request.method, request.path))
        if canned is not None:
            self.canned_hits.append(request.path)
            status, body = canned
            return web.json_response(body, status=status) if isinstance(body, dict) else web.Response(status=status, text=body)
        if self.mode and request.method == "POST" and request.path in ("/fapi/v1/order", "/fapi/v1/algoOrder"):
            mode, self.mode = self.mode, None
            if mode == "lose":
                response = await handler(request)
                await self.hang.wait()
                return response
            if mode == "5xx":
                return web.Response(status=502, text="bad gateway")
            await self.hang.wait()
            return web.Response(status=503)
        return await handler(request)

    async def orders(self) -> list:
        return await self.paper.list_orders(OrderQuery(status="all", limit=500))


@pytest.fixture
async def broker(serve_app):
    broker = Broker()
    broker.url = await serve_app(broker.app)
    yield broker
    broker.hang.set()


@pytest.fixture
async def venue(broker):
    # Long enough that no ordinary request times out on a loaded machine; only held answers do.
    venue = CcxtVenue("binanceusdm", lambda: (KEY, SECRET), urls={"api": broker.url}, timeout_ms=1500)
    await venue.start()
    try:
        yield venue
    finally:
        await venue.close()


async def test_reads(venue, broker):
    account = await venue.get_account()
    assert (account.equity, account.cash, account.currency) == (D(100000), D(100000), "USDT")
    assert account.last_equity == D(100000)
    markets = {m.asset.symbol: m for m in await venue.list_markets()}
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    assert (markets["BTC/USDT"].tick_size, markets["BTC/USDT"].step_size) == (D("0.1"), D("0.001"))
    assert await venue.latest_price("BTC/USDT", AssetClass.CRYPTO) == D(60000)
    asset = await venue.get_asset("ETH/USDT")
    assert asset.asset_class is AssetClass.CRYPTO and asset.tradable and asset.shortable
    with pytest.raises(NotFound):
        await venue.get_asset("NOPE/USDT")
    assert (await venue.get_clock()).is_open


async def test_orders_positions_and_leverage(venue, broker):
    assert await venue.set_leverage("BTC/USDT", 2) == 2
    assert await venue.get_leverage("BTC/USDT") == 2
    await venue.set_margin_mode("BTC/USDT", "isolated")
    await venue.set_margin_mode("BTC/USDT", "isolated")  # again: still fine
    assert await venue.get_margin_mode("BTC/USDT") == "isolated"

    bought = await venue.submit_order(intent(client_order_id="buy-1"))
    assert (
        bought.status is OrderStatus.FILLED
        and bought.filled_avg_price == D(60000)
        and bought.client_order_id == "buy-1"
    )
    assert (await venue.submit_order(intent(client_order_id="buy-1"))).id == bought.id  # idempotent
    limit = await venue.submit_order(intent(type=OrderType.LIMIT, limit_price=D(50000), qty="0.02"))
    stop = await venue.submit_order(intent(side=Side.SELL, type=OrderType.STOP, stop_price=D(55000), reduce_only=True))
    trailing = await venue.submit_order(
        intent(side=Side.SELL, type=OrderType.TRAILING_STOP, trail_percent=D(3), qty="0.005")
    )
    assert stop.type is OrderType.STOP and stop.stop_price == D(55000) and stop.status is OrderStatus.NEW
    assert trailing.type is OrderType.TRAILING_STOP

    opened = await venue.list_orders(OrderQuery(status="open"))
    assert {o.id for o in opened} == {limit.id, stop.id, trailing.id}
    assert (await venue.get_order(stop.id)).stop_price == D(55000)
    assert (await venue.get_order_by_client_id("buy-1")).id == bought.id
    await venue.cancel_order(limit.id)
    assert (await venue.get_order(limit.id)).status is OrderStatus.CANCELED

    (position,) = await venue.list_positions()
    assert (position.symbol, position.qty, position.avg_entry_price) == ("BTC/USDT", D("0.01"), D(60000))
    account = await venue.get_account()
    assert account.initial_margin == D(300) and account.long_market_value == D(600)

    short = await venue.submit_order(intent("ETH/USDT", Side.SELL, "0.1"))
    assert short.status is OrderStatus.FILLED
    assert {p.symbol: p.qty for p in await venue.list_positions()}["ETH/USDT"] == D("-0.1")
    history = await venue.list_orders(OrderQuery(status="all", limit=500))
    assert {bought.id, limit.id, stop.id, short.id} <= {o.id for o in history}

    results = await venue.cancel_all_orders()
    assert {r.id for r in results} == {stop.id, trailing.id} and all(r.status == 200 for r in results)
    closed = await venue.close_all_positions()
    assert {r.id for r in closed} == {"BTC/USDT", "ETH/USDT"} and all(r.status == 200 for r in closed)
    assert await venue.list_positions() == []


async def test_oto_exit_follows_the_fill(venue, broker):
    # A market entry: its stop goes out at once, rounded toward the entry onto the 0.1 tick.
    entry = await venue.submit_order(intent(order_class=OrderClass.OTO, stop_loss=StopLoss(D("54000.05"))))
    assert entry.status is OrderStatus.FILLED and len(entry.legs) == 1
    (leg,) = entry.legs
    assert (leg.side, leg.type, leg.stop_price, leg.qty) == (Side.SELL, OrderType.STOP, D("54000.1"), D("0.01"))
    # A resting entry: the stop waits for the fill, then follows on the next listing.
    resting = await venue.submit_order(
        intent(
            "ETH/USDT",
            type=OrderType.LIMIT,
            limit_price=D(2900),
            qty="0.1",
            order_class=OrderClass.OTO,
            stop_loss=StopLoss(D(2610)),
        )
    )
    assert resting.legs == [] and resting.status is OrderStatus.NEW
    assert {o.symbol for o in await venue.list_orders(OrderQuery(status="open"))} == {"BTC/USDT", "ETH/USDT"}
    await broker.paper.set_prices({"ETH/USDT": D(2890)})
    opened = await venue.list_orders(OrderQuery(status="open"))
    eth = [o for o in opened if o.symbol == "ETH/USDT"]
    assert [(o.side, o.type, o.stop_price, o.qty) for o in eth] == [(Side.SELL, OrderType.STOP, D(2610), D("0.1"))]


async def test_bracket_exits_cancel_each_other(venue, broker):
    entry = await venue.submit_order(
        intent(
            "ETH/USDT",
            qty="0.1",
            order_class=OrderClass.BRACKET,
            stop_loss=StopLoss(D(2700)),
            take_profit=TakeProfit(D(3300)),
        )
    )
    assert sorted(leg.type.value for leg in entry.legs) == ["limit", "stop"]
    await broker.paper.set_prices({"ETH/USDT": D(3400)})  # the take-profit fills
    await venue.list_orders(OrderQuery(status="open"))  # the venue notices and cancels the stop
    assert await venue.list_orders(OrderQuery(status="open")) == []
    assert await venue.list_positions() == []


async def test_rejections(venue, broker):
    with pytest.raises(InsufficientFunds):
        await venue.submit_order(intent(qty="5"))
    with pytest.raises(OrderRejected, match="LOT_SIZE"):
        await venue.submit_order(intent(qty="0.0001"))  # off the 0.001 grid: refused, not rounded
    with pytest.raises(OrderRejected, match="PRICE_FILTER"):
        await venue.submit_order(intent(type=OrderType.LIMIT, limit_price=D("50000.05")))
    with pytest.raises(OrderRejected, match="notional"):
        await venue.submit_order(
            OrderIntent("BTC/USDT", AssetClass.CRYPTO, Side.BUY, OrderType.MARKET, TimeInForce.GTC, notional=D(100))
        )
    with pytest.raises(OrderRejected, match="day"):
        await venue.submit_order(intent(time_in_force=TimeInForce.DAY))
    with pytest.raises(NotFound):
        await venue.cancel_order("no-such-order")
    with pytest.raises(NotFound):
        await venue.get_order_by_client_id("no-such-client-id")
    assert await broker.orders() == []


async def test_lost_answer_is_resolved_by_client_order_id(venue, broker):
    await venue.list_markets()
    broker.mode = "lose"
    order = await venue.submit_order(intent(client_order_id="lost-1"))
    assert order.client_order_id == "lost-1" and order.status is OrderStatus.FILLED
    assert len(await broker.orders()) == 1


@pytest.mark.parametrize("mode", ["drop", "5xx"])
async def test_unconfirmed_order_is_uncertain(venue, broker, mode):
    await venue.list_markets()
    broker.mode = mode
    with pytest.raises(UpstreamUncertain) as info:
        await venue.submit_order(intent(client_order_id="never-1"))
    assert "never-1" in info.value.message
    assert await broker.orders() == []


async def test_bad_credentials_and_no_exchange(broker, free_tcp_port):
    wrong = CcxtVenue("binanceusdm", lambda: (KEY, "not-the-secret"), urls={"api": broker.url})
    await wrong.start()  # public markets load; the key is refused on the first private call
    try:
        with pytest.raises(UpstreamUnavailable, match="^upstream rejected the gateway's broker credentials$"):
            await wrong.get_account()
        with pytest.raises(UpstreamUnavailable) as info:
            await wrong.submit_order(intent())
        assert "not-the-secret" not in info.value.message and KEY not in info.value.message
    finally:
        await wrong.close()
    down = CcxtVenue("binanceusdm", lambda: (KEY, SECRET), urls={"api": f"http://127.0.0.1:{free_tcp_port}"})
    await down.start()  # logs, does not raise: the gateway fails closed until the venue answers
    try:
        with pytest.raises(UpstreamUnavailable):
            await down.submit_order(intent())
        with pytest.raises(UpstreamUnavailable):
            await down.get_account()
    finally:
        await down.close()
    with pytest.raises(UpstreamUnavailable, match="credentials"):
        empty = CcxtVenue("binanceusdm", lambda: ("", ""), urls={"api": broker.url})
        await empty.start()
        try:
            await empty.get_account()
        finally:
            await empty.close()
    assert await broker.orders() == []


def test_unknown_exchange_is_refused():
    with pytest.raises(ValueError, match="no exchange"):
        CcxtVenue("not-an-exchange", lambda: ("k", "s"))


async def test_key_rotation_applies_to_the_next_call(broker):
    keys = {"current": ("OLDKEY", "old-secret")}
    venue = CcxtVenue("binanceusdm", lambda: keys["current"], urls={"api": broker.url})
    await venue.start()
    try:
        with pytest.raises(UpstreamUnavailable):
            await venue.get_account()
        keys["current"] = (KEY, SECRET)
        assert (await venue.get_account()).equity == D(100000)
    finally:
        await venue.close()


async def test_resubmitting_an_uncertain_order_places_it_once(venue, broker):
    await venue.list_markets()
    broker.mode = "drop"
    with pytest.raises(UpstreamUncertain):
        await venue.submit_order(intent(client_order_id="retry-1"))
    placed = await venue.submit_order(intent(client_order_id="retry-1"))  # not there: placed now
    again = await venue.submit_order(intent(client_order_id="retry-1"))  # there: the same order
    assert placed.id == again.id and len(await broker.orders()) == 1


# ---------------------------------------------------------------------------------------
# Error classification: what the exchange answers decides what the bot is told


ORDER_PATH = ("POST", "/fapi/v1/order")
ACCOUNT_PATHS = [("GET", f"/fapi/{v}/{what}") for v in ("v2", "v3") for what in ("account", "balance")]


@pytest.mark.parametrize(
    "status, body, expected, fragment",
    [
        (400, {"code": -4050, "msg": "Cross balance insufficient."}, InsufficientFunds, "Cross balance insufficient."),
        # Binance's own -2019 is mapped by ccxt on binance.com only; elsewhere it is still a refusal.
        (400, {"code": -2019, "msg": "Margin is insufficient."}, OrderRejected, "Margin is insufficient."),
        (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"}, OrderRejected, "LOT_SIZE"),
        (400, {"code": -1121, "msg": "Invalid symbol."}, NotFound, "Invalid symbol."),
        (400, {"code": -9999, "msg": "something the exchange refused"}, OrderRejected, "something the exchange refused"),
        (429, {"code": -1003, "msg": "Too many requests"}, RateLimited, "rate limiting the gateway"),
        (418, {"code": -1003, "msg": "Way too many requests; IP banned"}, RateLimited, "rate limiting the gateway"),
        (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, UpstreamUnavailable,
         "upstream rejected the gateway's broker credentials"),
        # A 5xx may have been applied: looked up by client id, still absent, so uncertain.
        (503, "Service Unavailable", UpstreamUncertain, "did not confirm order classified-1 and does not list it yet"),
    ],
)
async def test_an_order_refusal_is_classified_by_what_the_exchange_said(venue, broker, status, body, expected, fragment):
    await venue.list_markets()
    broker.canned[ORDER_PATH] = (status, body)
    with pytest.raises(expected) as info:
        await venue.submit_order(intent(client_order_id="classified-1"))
    assert fragment in info.value.message
    assert SECRET not in info.value.message and KEY not in info.value.message
    assert broker.canned_hits == ["/fapi/v1/order"]  # asked once: a refusal is not retried
    assert await broker.orders() == []


@pytest.mark.parametrize(
    "status, body, expected, fragment",
    [
        (503, "Service Unavailable", UpstreamUnavailable, "binanceusdm is unavailable"),
        (429, {"code": -1003, "msg": "Too many requests"}, RateLimited, "rate limiting the gateway"),
        (401, {"code": -2015, "msg": "Invalid API-key"}, UpstreamUnavailable, "credentials"),
        (400, {"code": -9999, "msg": "odd"}, UpstreamUnavailable, "answered with an error"),
        (200, "<html>not json</html>", UpstreamUnavailable, "could not be read"),
    ],
)
async def test_a_failed_read_is_unavailable_never_a_rejection(venue, broker, status, body, expected, fragment):
    for path in ACCOUNT_PATHS:
        broker.canned[path] = (status, body)
    with pytest.raises(expected) as info:
        await venue.get_account()
    assert fragment in info.value.message


async def test_exits_that_cannot_be_placed_are_given_up_after_three_tries(venue, broker, caplog):
    resting = await venue.submit_order(
        intent("ETH/USDT", type=OrderType.LIMIT, limit_price=D(2900), qty="0.1",
               order_class=OrderClass.OTO, stop_loss=StopLoss(D(2610)))
    )
    broker.canned[("POST", "/fapi/v1/algoOrder")] = (400, {"code": -2021, "msg": "Order would immediately trigger."})
    await broker.paper.set_prices({"ETH/USDT": D(2890)})  # the entry fills; its stop must follow
    for attempt in range(1, 4):
        await venue.list_orders(OrderQuery(status="open"))
        assert broker.canned_hits.count("/fapi/v1/algoOrder") == attempt
    assert any(
        r.levelname == "ERROR" and "gave up placing the sl exit" in r.getMessage() and resting.id in r.getMessage()
        for r in caplog.records
    )
    await venue.list_orders(OrderQuery(status="open"))  # given up: no fourth try
    assert broker.canned_hits.count("/fapi/v1/algoOrder") == 3
    assert [o for o in await venue.list_orders(OrderQuery(status="open")) if o.symbol == "ETH/USDT"] == []
