"""CcxtVenue (binanceusdm) listens to the user data stream and publishes venue events: against a
`gatewayctl paper-broker --dialect binance-futures` process (plain and conditional orders,
replace, fills, positions), and against an in-process broker whose listenKey expires or is kept
alive."""

from __future__ import annotations

from decimal import Decimal

from gateway.dialects import binance_futures
from gateway.dialects.binance_user_stream import listen_keys
from gateway.model import (
    AssetClass,
    OrderEventType,
    OrderIntent,
    OrderReplace,
    OrderType,
    PositionUpdate,
    Side,
    TimeInForce,
)
from gateway.paper_broker import build_binance_paper_broker_app
from gateway.paper_traffic import METER
from gateway.venues.ccxt import CcxtVenue
from gateway.venues.ccxt.user_stream import private_ws_url
from gateway.venues.paper import PaperVenue

from .test_alpaca_venue_stream import Recorder
from .test_binance_paper_broker import BROKER_KEY, BROKER_SECRET, BinanceBroker, broker_process

D = Decimal


def intent(side=Side.BUY, qty="0.01", type=OrderType.MARKET, **fields) -> OrderIntent:
    return OrderIntent("BTC/USDT", AssetClass.CRYPTO, side, type, TimeInForce.GTC, qty=D(qty), **fields)


def connected(seen: Recorder):
    return lambda events: True in seen.statuses()


async def test_orders_fills_and_positions_arrive_from_the_paper_broker_process():
    with broker_process() as broker:
        venue = CcxtVenue("binanceusdm", lambda: (BROKER_KEY, BROKER_SECRET), urls={"api": broker.url})
        assert venue.capabilities.event_stream and venue.capabilities.environment == "paper"
        seen = Recorder()
        venue.subscribe(seen)
        await venue.start()
        try:
            await seen.until(connected(seen), "the stream")
            resting = await venue.submit_order(intent(type=OrderType.LIMIT, limit_price=D(59000), client_order_id="bot-l-1"))
            replaced = await venue.replace_order(resting.id, OrderReplace(limit_price=D(58000)))
            await venue.cancel_order(replaced.id)
            bought = await venue.submit_order(intent())
            stop = await venue.submit_order(intent(side=Side.SELL, type=OrderType.STOP, stop_price=D(55000)))
            await broker.set_prices({"BTCUSDT": "54000"})
            await seen.until(lambda events: (OrderEventType.FILL, stop.id) in seen.updates(stop.id), "the stop's fill")
            flat = ("BTC/USDT", D(0))
            await seen.until(lambda events: flat in [(p.symbol, p.qty) for p in events if isinstance(p, PositionUpdate)],
                             "the position after it")
        finally:
            await venue.close()
    assert seen.updates(resting.id, replaced.id, bought.id, stop.id) == [
        (OrderEventType.NEW, resting.id),
        (OrderEventType.CANCELED, resting.id),  # the venue replaces by cancel + new
        (OrderEventType.NEW, replaced.id),
        (OrderEventType.CANCELED, replaced.id),
        (OrderEventType.NEW, bought.id),
        (OrderEventType.FILL, bought.id),
        (OrderEventType.NEW, stop.id),
        (OrderEventType.TRIGGERED, stop.id),
        (OrderEventType.FILL, stop.id),
    ]
    updates = {(e.event, e.order.id): e for e in seen.events if hasattr(e, "order")}
    assert updates[(OrderEventType.NEW, resting.id)].order.client_order_id == "bot-l-1"
    buy_fill, stop_fill = updates[(OrderEventType.FILL, bought.id)], updates[(OrderEventType.FILL, stop.id)]
    assert (buy_fill.qty, buy_fill.price) == (D("0.01"), D(60000))
    assert (stop_fill.qty, stop_fill.price, stop_fill.order.type) == (D("0.01"), D(54000), OrderType.STOP)
    assert stop_fill.order.client_order_id == stop.client_order_id
    positions = [(p.symbol, p.qty) for p in seen.events if isinstance(p, PositionUpdate)]
    assert positions == [("BTC/USDT", D("0.01")), ("BTC/USDT", D(0))]
    assert seen.statuses() == [True, False]


async def in_process(serve_app) -> tuple[BinanceBroker, object]:
    paper = PaperVenue(starting_equity=D(100000), seed_marks=True, futures=True)
    app = build_binance_paper_broker_app(paper, key_id=BROKER_KEY, secret=BROKER_SECRET)
    url = await serve_app(app)
    return BinanceBroker(url, BROKER_KEY, BROKER_SECRET), app


async def test_an_expired_listen_key_is_a_drop_and_a_new_key_reconnects(serve_app):
    broker, app = await in_process(serve_app)
    listen_keys(app[binance_futures.STATE]).ttl_s = 0.3  # no keep-alive comes that soon
    venue = CcxtVenue("binanceusdm", lambda: (BROKER_KEY, BROKER_SECRET), urls={"api": broker.url})
    venue.user_stream.min_backoff_s = 0.01
    seen = Recorder()
    venue.subscribe(seen)
    await venue.start()
    try:
        await seen.until(lambda events: seen.statuses()[:3] == [True, False, True], "expiry and reconnect")
        down = [e for e in seen.events if hasattr(e, "connected") and not e.connected][0]
    finally:
        await venue.close()
    assert down.reason == "listenKey expired"
    assert venue.user_stream.connections >= 2


async def test_keep_alive_holds_the_key_past_its_ttl(serve_app):
    broker, app = await in_process(serve_app)
    listen_keys(app[binance_futures.STATE]).ttl_s = 0.3
    venue = CcxtVenue("binanceusdm", lambda: (BROKER_KEY, BROKER_SECRET), urls={"api": broker.url})
    venue.user_stream.keepalive_s = 0.08
    seen = Recorder()
    venue.subscribe(seen)
    await venue.start()
    meter = app[METER]
    try:
        await seen.until(lambda events: meter.by_route["PUT /fapi/v1/listenKey"] >= 6, "six keep-alives")
    finally:
        await venue.close()
    assert seen.statuses() == [True, False]  # up the whole time (0.48 s and more, ttl 0.3 s) until closed
    assert meter.by_route["POST /fapi/v1/listenKey"] == 1 and meter.by_route["DELETE /fapi/v1/listenKey"] == 1


def test_socket_url_follows_ccxt_pros_rule_and_binances_hosts():
    import ccxt.async_support as ccxt

    exchange = ccxt.binanceusdm()
    assert private_ws_url(exchange, "K") == "wss://fstream.binance.com/private/ws?listenKey=K"
    exchange.urls["api"]["fapiPrivate"] = "http://127.0.0.1:9/fapi/v1"
    assert private_ws_url(exchange, "K") == "ws://127.0.0.1:9/private/ws?listenKey=K"
    exchange.urls["api"]["ws"] = {"linear": "wss://fstream.example.com/stream"}
    assert private_ws_url(exchange, "K") == "wss://fstream.example.com/stream/K"


def test_only_usd_m_futures_venues_stream():
    spot = CcxtVenue("binance", lambda: ("k", "s"))
    futures = CcxtVenue("binance", lambda: ("k", "s"), options={"defaultType": "future"})
    other = CcxtVenue("bybit", lambda: ("k", "s"))
    assert spot.user_stream is None and not spot.capabilities.event_stream
    assert futures.user_stream is not None and futures.capabilities.event_stream
    assert other.user_stream is None and other.capabilities.environment == "live"
