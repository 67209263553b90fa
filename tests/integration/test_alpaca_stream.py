"""Alpaca's trading stream (``/stream``) served by the paper broker, read by real clients over a
real socket: alpaca-py's ``TradingStream`` and a bare aiohttp websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

import aiohttp
import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from gateway.dialects.alpaca_stream import trade_updates_handler
from gateway.paper_broker import SingleKeyAuthenticator, build_paper_broker_app
from gateway.ports import DirectBackend
from gateway.venues.paper import PaperVenue
from tests.conftest import PAPER_KEY_ID, PAPER_SECRET


def ws_url(broker) -> str:
    return f"ws://127.0.0.1:{broker.port}/stream"


async def recv_json(ws) -> tuple[dict, aiohttp.WSMsgType]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
    return json.loads(msg.data), msg.type


@contextlib.asynccontextmanager
async def alpaca_py_stream(broker, handler):
    stream = TradingStream(broker.key_id, broker.secret, url_override=ws_url(broker))
    stream.subscribe_trade_updates(handler)
    task = asyncio.create_task(stream._run_forever())
    try:
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.close()


async def test_alpaca_py_trading_stream_gets_new_and_fill_of_a_market_order(paper_broker):
    await paper_broker.venue.set_prices({"AAPL": Decimal(190)})
    updates: asyncio.Queue = asyncio.Queue()

    async def on_update(update):
        await updates.put(update)

    client = TradingClient(paper_broker.key_id, paper_broker.secret, url_override=paper_broker.url)
    async with alpaca_py_stream(paper_broker, on_update):
        # The stream listens once alpaca-py has sent `listen`: probe with resting orders until
        # the first event arrives (polling, with a deadline).
        deadline = asyncio.get_running_loop().time() + 10
        while updates.empty():
            assert asyncio.get_running_loop().time() < deadline, "stream never delivered an event"
            probe = await asyncio.to_thread(
                client.submit_order,
                LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=100),
            )
            await asyncio.to_thread(client.cancel_order_by_id, probe.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(updates.get(), 0.2)
        while not updates.empty():  # the probes' own events
            updates.get_nowait()
        order = await asyncio.to_thread(
            client.submit_order,
            MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY),
        )
        seen = []
        while not any(u.event == "fill" and str(u.order.id) == str(order.id) for u in seen):
            seen.append(await asyncio.wait_for(updates.get(), 5))
    mine = [u for u in seen if str(u.order.id) == str(order.id)]
    assert [u.event for u in mine] == ["new", "fill"]
    fill = mine[-1]
    assert (fill.qty, fill.price, fill.position_qty) == (3.0, 190.0, 3.0)
    assert fill.execution_id is not None
    assert fill.order.status == "filled" and fill.order.filled_avg_price == "190"


async def test_raw_auth_shape_listen_and_binary_frames(paper_broker):
    await paper_broker.venue.set_prices({"AAPL": Decimal(190)})
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(paper_broker)) as ws:
        await ws.send_str(json.dumps({"action": "auth", "key": paper_broker.key_id, "secret": paper_broker.secret}))
        auth, frame = await recv_json(ws)
        assert auth == {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}
        assert frame is aiohttp.WSMsgType.BINARY  # as paper Alpaca sends them
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates", "nope"]}}))
        assert (await recv_json(ws))[0] == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
        headers = {"APCA-API-KEY-ID": paper_broker.key_id, "APCA-API-SECRET-KEY": paper_broker.secret}
        async with aiohttp.ClientSession(headers=headers) as rest:
            body = {"symbol": "AAPL", "qty": "2", "side": "buy", "type": "limit", "time_in_force": "day", "limit_price": "150"}
            async with rest.post(f"{paper_broker.url}/v2/orders", json=body) as resp:
                placed = await resp.json()
            async with rest.delete(f"{paper_broker.url}/v2/orders/{placed['id']}") as resp:
                assert resp.status == 204
        new, _ = await recv_json(ws)
        canceled, _ = await recv_json(ws)
    assert new["stream"] == "trade_updates" and new["data"]["event"] == "new"
    assert new["data"]["order"] == placed  # encoded exactly like the REST answer
    assert canceled["data"]["event"] == "canceled" and canceled["data"]["order"]["status"] == "canceled"
    assert "qty" not in canceled["data"]  # execution fields belong to fills only


async def test_listen_with_no_streams_stops_the_events(paper_broker):
    await paper_broker.venue.set_prices({"AAPL": Decimal(190)})
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(paper_broker)) as ws:
        await ws.send_str(json.dumps({"action": "authenticate", "data": {"key_id": PAPER_KEY_ID, "secret_key": PAPER_SECRET}}))
        assert (await recv_json(ws))[0]["data"]["status"] == "authorized"
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        await recv_json(ws)
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": []}}))
        assert (await recv_json(ws))[0] == {"stream": "listening", "data": {"streams": []}}
        quiet = await place_limit(paper_broker, "140")  # while not listening
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        await recv_json(ws)
        heard = await place_limit(paper_broker, "141")
        first, _ = await recv_json(ws)
    # Nothing about the order placed meanwhile was queued: the first event is the later order's.
    assert first["data"]["order"]["id"] == heard["id"] != quiet["id"]


async def place_limit(broker, price: str) -> dict:
    headers = {"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": broker.secret}
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day", "limit_price": price}
    async with aiohttp.ClientSession(headers=headers) as rest, rest.post(f"{broker.url}/v2/orders", json=body) as resp:
        assert resp.status == 200
        return await resp.json()


@pytest.mark.parametrize(
    "first",
    [
        {"action": "auth", "key": PAPER_KEY_ID, "secret": "wrong"},
        {"action": "authenticate", "data": {"key_id": "PKNOPE", "secret_key": PAPER_SECRET}},
        {"action": "listen", "data": {"streams": ["trade_updates"]}},
        {"action": "auth", "key": PAPER_KEY_ID},
    ],
    ids=["wrong-secret", "unknown-key", "listen-before-auth", "no-secret"],
)
async def test_refused_authentication_is_unauthorized_then_closed(paper_broker, first):
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(paper_broker)) as ws:
        await ws.send_str(json.dumps(first))
        answer, _ = await recv_json(ws)
        assert answer == {"stream": "authorization", "data": {"action": "authenticate", "status": "unauthorized"}}
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert PAPER_SECRET not in json.dumps(answer)


async def test_a_backend_without_events_grants_no_streams(serve_app):
    class NoEvents(DirectBackend):
        def order_events(self, caller, sink):
            return None

    venue = PaperVenue()
    app = build_paper_broker_app(venue, key_id=PAPER_KEY_ID, secret=PAPER_SECRET)
    app.router.add_get("/quiet", trade_updates_handler(NoEvents(venue), SingleKeyAuthenticator(PAPER_KEY_ID, PAPER_SECRET)))
    url = (await serve_app(app)).replace("http://", "ws://")
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/quiet") as ws:
        await ws.send_str(json.dumps({"action": "auth", "key": PAPER_KEY_ID, "secret": PAPER_SECRET}))
        await recv_json(ws)
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert (await recv_json(ws))[0] == {"stream": "listening", "data": {"streams": []}}
