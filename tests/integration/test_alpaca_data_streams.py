"""Alpaca's market data websockets through the gateway, read by alpaca-py's StockDataStream and
CryptoDataStream (msgpack) and by a bare aiohttp websocket (JSON): on the embedded paper venue
and with ``--venue alpaca`` in front of the standalone paper broker process."""

from __future__ import annotations

import pytest

import asyncio
import contextlib
from decimal import Decimal

import aiohttp
import msgpack
import orjson
from alpaca.data.live.crypto import CryptoDataStream
from alpaca.data.live.option import OptionDataStream
from alpaca.data.live.stock import StockDataStream

from gateway.dialects import alpaca_data_stream
from gateway.dialects import data_stream_hub

from .support import RunningGateway, start_gateway, store_broker_key, wait_for


def ws_base(gateway: RunningGateway) -> str:
    return gateway.url.replace("http://", "ws://")


@contextlib.asynccontextmanager
async def running(stream):
    task = asyncio.create_task(stream._run_forever())
    try:
        yield stream
    finally:
        await stream.stop_ws()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.close()


async def until_received(queue: asyncio.Queue, move, count: int, timeout: float = 10.0) -> list:
    """Move prices until ``count`` messages arrived (the subscription is live only once the
    client's subscribe has been answered, which alpaca-py does not expose): poll with a deadline."""
    got: list = []
    deadline = asyncio.get_running_loop().time() + timeout
    step = 0
    while len(got) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(got)} of {count} messages arrived"
        await move(step)
        step += 1
        with contextlib.suppress(TimeoutError):
            got.append(await asyncio.wait_for(queue.get(), 0.2))
        while not queue.empty():
            got.append(queue.get_nowait())
    return got


def collector(queue: asyncio.Queue, kind: str):
    async def handler(item):
        await queue.put((kind, item))

    return handler


async def stock_stream_receives_everything(gateway: RunningGateway, move) -> None:
    stream = StockDataStream(gateway.key_id, gateway.secret, url_override=f"{ws_base(gateway)}/v2/iex")
    queue: asyncio.Queue = asyncio.Queue()
    stream.subscribe_trades(collector(queue, "trade"), "AAPL")
    stream.subscribe_quotes(collector(queue, "quote"), "AAPL")
    stream.subscribe_bars(collector(queue, "bar"), "AAPL")
    stream.subscribe_updated_bars(collector(queue, "updated"), "AAPL")
    stream.subscribe_daily_bars(collector(queue, "daily"), "AAPL")
    async with running(stream):
        got = await until_received(queue, move, 5)
    kinds = {kind for kind, _ in got}
    assert kinds == {"trade", "quote", "bar", "updated", "daily"}
    for kind, item in got:
        assert item.symbol == "AAPL"
        assert item.timestamp.tzinfo is not None
        if kind == "trade":
            assert item.price > 0 and item.size > 0
        elif kind == "quote":
            assert 0 < item.bid_price < item.ask_price
        else:
            assert item.low <= item.open <= item.high and item.low <= item.close <= item.high


async def crypto_stream_receives_trades_and_quotes(gateway: RunningGateway, move) -> None:
    stream = CryptoDataStream(gateway.key_id, gateway.secret, url_override=f"{ws_base(gateway)}/v1beta3/crypto/us")
    queue: asyncio.Queue = asyncio.Queue()
    stream.subscribe_trades(collector(queue, "trade"), "BTC/USD")
    stream.subscribe_quotes(collector(queue, "quote"), "BTC/USD")
    stream.subscribe_bars(collector(queue, "bar"), "BTC/USD")
    async with running(stream):
        got = await until_received(queue, move, 3)
    assert {kind for kind, _ in got} == {"trade", "quote", "bar"}
    assert all(item.symbol == "BTC/USD" for _, item in got)


def embedded_mover(gateway: RunningGateway, symbol: str, base: Decimal):
    async def move(step: int) -> None:
        await gateway.gateway.venue.set_prices({symbol: base + step})

    return move


def broker_mover(broker, symbol: str, base: Decimal):
    async def move(step: int) -> None:
        await broker.set_prices({symbol: str(base + step)})

    return move


@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_trades', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_quotes', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_bars', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_updated_bars', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_daily_bars', 'works')
async def test_stock_data_stream_on_the_embedded_venue(paper_gateway):
    await stock_stream_receives_everything(paper_gateway, embedded_mover(paper_gateway, "AAPL", Decimal(190)))


@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_trades', 'works')
@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_quotes', 'works')
@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_bars', 'works')
async def test_crypto_data_stream_on_the_embedded_venue(paper_gateway):
    await crypto_stream_receives_trades_and_quotes(paper_gateway, embedded_mover(paper_gateway, "BTC/USD", Decimal(60000)))


@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_trades', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_quotes', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_bars', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_updated_bars', 'works')
@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_daily_bars', 'works')
async def test_stock_data_stream_through_the_alpaca_venue_to_the_paper_broker(upstream_gateway, paper_broker_process):
    await stock_stream_receives_everything(upstream_gateway, broker_mover(paper_broker_process, "AAPL", Decimal(190)))


@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_trades', 'works')
@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_quotes', 'works')
@pytest.mark.compat('alpaca-py CryptoDataStream', 'subscribe_bars', 'works')
async def test_crypto_data_stream_through_the_alpaca_venue_to_the_paper_broker(upstream_gateway, paper_broker_process):
    await crypto_stream_receives_trades_and_quotes(
        upstream_gateway, broker_mover(paper_broker_process, "BTC/USD", Decimal(60000))
    )


OPTION = "AAPL261218C00190000"


@pytest.mark.compat("alpaca-py OptionDataStream", "subscribe_trades", "works")
@pytest.mark.compat("alpaca-py OptionDataStream", "subscribe_quotes", "works")
async def test_option_data_stream_on_the_embedded_venue(paper_gateway):
    stream = OptionDataStream(paper_gateway.key_id, paper_gateway.secret, url_override=f"{ws_base(paper_gateway)}/v1beta1/indicative")
    queue: asyncio.Queue = asyncio.Queue()
    stream.subscribe_trades(collector(queue, "trade"), OPTION)
    stream.subscribe_quotes(collector(queue, "quote"), OPTION)
    async with running(stream):
        got = await until_received(queue, embedded_mover(paper_gateway, OPTION, Decimal("12.5")), 2)
    assert {kind for kind, _ in got} == {"trade", "quote"}
    assert all(item.symbol == OPTION for _, item in got)


# -- the protocol, over a bare websocket (JSON, the default) ---------------------------------


async def receive(ws) -> list[dict]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    return orjson.loads(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else msgpack.unpackb(msg.data, timestamp=3)


@contextlib.asynccontextmanager
async def connected(gateway: RunningGateway, path: str = "/v2/iex", *, authenticate: bool = True, msgpack_: bool = False):
    headers = {"Content-Type": "application/msgpack"} if msgpack_ else {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ws_base(gateway)}{path}", headers=headers) as ws:
            assert await receive(ws) == [{"T": "success", "msg": "connected"}]
            if authenticate:
                await ws.send_str(orjson.dumps({"action": "auth", "key": gateway.key_id, "secret": gateway.secret}).decode())
                assert await receive(ws) == [{"T": "success", "msg": "authenticated"}]
            yield ws


async def send(ws, message: dict) -> None:
    await ws.send_str(orjson.dumps(message).decode())


async def test_a_wrong_credential_is_refused_with_402_and_the_socket_closed(paper_gateway):
    async with connected(paper_gateway, authenticate=False) as ws:
        await send(ws, {"action": "auth", "key": paper_gateway.key_id, "secret": "wrong"})
        assert await receive(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert (await asyncio.wait_for(ws.receive(), 5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_the_broker_key_is_not_a_bot_credential(upstream_gateway, paper_broker_process):
    async with connected(upstream_gateway, authenticate=False) as ws:
        await send(ws, {"action": "auth", "key": paper_broker_process.key_id, "secret": paper_broker_process.secret})
        assert await receive(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]


async def test_subscribing_before_authenticating_is_401(paper_gateway):
    async with connected(paper_gateway, authenticate=False) as ws:
        await send(ws, {"action": "subscribe", "trades": ["AAPL"]})
        assert await receive(ws) == [{"T": "error", "code": 401, "msg": "not authenticated"}]


@pytest.mark.compat('alpaca-py StockDataStream', 'subscribe_trading_statuses', 'not served', why="no venue here carries trading statuses: Alpaca's 410 invalid subscribe action for this feed")
async def test_invalid_syntax_unknown_actions_and_channels(paper_gateway):
    async with connected(paper_gateway) as ws:
        await ws.send_str("{not json")
        assert await receive(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        await send(ws, {"action": "dance"})
        assert await receive(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        await send(ws, {"action": "subscribe", "trades": "AAPL"})  # not a list
        assert await receive(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        await send(ws, {"action": "subscribe", "candles": ["AAPL"]})  # no such channel
        assert await receive(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        await send(ws, {"action": "subscribe", "statuses": ["AAPL"]})  # a channel not carried here
        assert await receive(ws) == [{"T": "error", "code": 410, "msg": "invalid subscribe action for this feed"}]
        await send(ws, {"action": "auth", "key": paper_gateway.key_id, "secret": paper_gateway.secret})
        assert await receive(ws) == [{"T": "error", "code": 403, "msg": "already authenticated"}]


async def test_options_feeds_carry_trades_and_quotes_only(paper_gateway):
    async with connected(paper_gateway, "/v1beta1/indicative") as ws:
        await send(ws, {"action": "subscribe", "bars": ["AAPL250117C00190000"]})
        assert await receive(ws) == [{"T": "error", "code": 410, "msg": "invalid subscribe action for this feed"}]
        await send(ws, {"action": "subscribe", "trades": ["AAPL250117C00190000"]})
        assert await receive(ws) == [{"T": "subscription", "trades": ["AAPL250117C00190000"], "quotes": []}]


async def test_subscription_messages_as_alpaca_sends_them_and_unsubscribe(paper_gateway):
    async with connected(paper_gateway) as ws:
        await send(ws, {"action": "subscribe", "trades": ["AAPL", "msft"], "bars": ["*"]})
        assert await receive(ws) == [{
            "T": "subscription", "trades": ["AAPL", "MSFT"], "quotes": [], "bars": ["*"], "updatedBars": [],
            "dailyBars": [], "corrections": ["AAPL", "MSFT"], "cancelErrors": ["AAPL", "MSFT"],
        }]
        await send(ws, {"action": "unsubscribe", "trades": ["MSFT"], "bars": ["*"]})
        reply = (await receive(ws))[0]
        assert reply["trades"] == ["AAPL"] and reply["bars"] == []
        await paper_gateway.gateway.venue.set_prices({"AAPL": Decimal("191.5")})
        (trade,) = await receive(ws)
        assert trade["T"] == "t" and trade["S"] == "AAPL" and trade["p"] == 191.5
        assert isinstance(trade["t"], str) and trade["t"].endswith("Z")  # RFC 3339, as Alpaca writes it


async def test_msgpack_when_the_client_asks_for_it(paper_gateway):
    async with connected(paper_gateway, "/v1beta3/crypto/us", msgpack_=True) as ws:
        await ws.send_bytes(msgpack.packb({"action": "subscribe", "quotes": ["BTC/USD"]}))
        reply = await receive(ws)
        assert reply[0]["T"] == "subscription" and reply[0]["quotes"] == ["BTC/USD"]
        await paper_gateway.gateway.venue.set_prices({"BTC/USD": Decimal("61000")})
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.BINARY
        (quote,) = msgpack.unpackb(msg.data, timestamp=3)
        assert quote["T"] == "q" and quote["S"] == "BTC/USD" and quote["bp"] < quote["ap"]
        assert quote["t"].tzinfo is not None  # a msgpack Timestamp, as alpaca-py expects


async def test_symbol_limit_is_405(paper_gateway, monkeypatch):
    monkeypatch.setattr(alpaca_data_stream, "MAX_SYMBOLS", 3)
    async with connected(paper_gateway) as ws:
        await send(ws, {"action": "subscribe", "trades": ["A", "B"], "quotes": ["C", "D"]})
        assert await receive(ws) == [{"T": "error", "code": 405, "msg": "symbol limit exceeded"}]
        await send(ws, {"action": "subscribe", "trades": ["A", "B"], "quotes": ["A", "C"]})
        assert (await receive(ws))[0]["T"] == "subscription"


async def test_connection_limit_per_credential_is_406(paper_gateway, monkeypatch):
    monkeypatch.setattr(data_stream_hub, "MAX_SESSIONS_PER_CREDENTIAL", 1)
    async with connected(paper_gateway):
        async with connected(paper_gateway, authenticate=False) as second:
            await send(second, {"action": "auth", "key": paper_gateway.key_id, "secret": paper_gateway.secret})
            assert await receive(second) == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]


async def test_one_upstream_feed_fans_out_to_each_bots_own_subscriptions(paper_gateway):
    venue = paper_gateway.gateway.venue
    async with connected(paper_gateway) as one, connected(paper_gateway) as two:
        await send(one, {"action": "subscribe", "trades": ["AAPL"]})
        await receive(one)
        await send(two, {"action": "subscribe", "trades": ["MSFT"]})
        await receive(two)
        assert len(venue._feeds) == 1  # one feed for both
        await venue.set_prices({"AAPL": Decimal("192"), "MSFT": Decimal("410")})
        assert [m["S"] for m in await receive(one)] == ["AAPL"]
        assert [m["S"] for m in await receive(two)] == ["MSFT"]


async def test_no_auth_within_the_timeout_is_404_auth_timeout(paper_gateway, monkeypatch):
    monkeypatch.setattr(alpaca_data_stream, "AUTH_TIMEOUT_S", 0.3)
    async with connected(paper_gateway, authenticate=False) as ws:
        assert await receive(ws) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
        assert (await asyncio.wait_for(ws.receive(), 5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_every_feed_path_is_served_and_others_are_not(paper_gateway):
    for path in ("/v2/iex", "/v2/sip", "/v2/test", "/v1beta3/crypto/us", "/v1beta1/indicative", "/v1beta1/opra"):
        async with connected(paper_gateway, path):
            pass
    async with aiohttp.ClientSession(headers=paper_gateway.headers) as session:
        async with session.get(f"{paper_gateway.url}/v1beta3/crypto/eu") as response:
            assert response.status == 404


async def test_the_alpaca_venue_keeps_one_upstream_connection_for_every_bot(gateway_home, paper_broker):
    """Two bots on one feed: one connection to the broker (with the broker key), each bot hears
    only its own symbols."""
    await paper_broker.venue.set_prices({"AAPL": Decimal(190), "MSFT": Decimal(410)})
    store_broker_key(gateway_home, paper_broker.key_id, paper_broker.secret)
    gateway = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker.url)
    try:
        async with connected(gateway) as one, connected(gateway) as two:
            await send(one, {"action": "subscribe", "trades": ["AAPL"]})
            await receive(one)
            await send(two, {"action": "subscribe", "trades": ["MSFT"]})
            await receive(two)
            heard: dict[str, set[str]] = {"one": set(), "two": set()}
            deadline = asyncio.get_running_loop().time() + 10
            step = 0
            while not (heard["one"] and heard["two"]):  # the upstream subscribes in the background
                assert asyncio.get_running_loop().time() < deadline, heard
                step += 1
                await paper_broker.venue.set_prices({"AAPL": Decimal(190 + step), "MSFT": Decimal(410 + step)})
                for name, ws in (("one", one), ("two", two)):
                    with contextlib.suppress(TimeoutError):
                        msg = await asyncio.wait_for(ws.receive(), 0.2)
                        heard[name].update(m["S"] for m in orjson.loads(msg.data))
            assert heard == {"one": {"AAPL"}, "two": {"MSFT"}}
            assert len(paper_broker.venue._feeds) == 1  # one upstream connection for both bots
    finally:
        await gateway.gateway.stop()
    await wait_for(lambda: not paper_broker.venue._feeds)  # the broker closes a feed nobody reads


async def test_the_last_bot_to_leave_closes_the_feed(paper_gateway):
    venue = paper_gateway.gateway.venue
    async with connected(paper_gateway) as ws:
        await send(ws, {"action": "subscribe", "quotes": ["AAPL"]})
        await receive(ws)
        assert len(venue._feeds) == 1
    await wait_for(lambda: not venue._feeds)
