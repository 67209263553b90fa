"""The gateway's own /stream: each bot hears its own orders' trade_updates, from the ledger,
through alpaca-py's TradingStream over a real socket."""

from __future__ import annotations

import pytest

import asyncio
import contextlib

from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault

from .support import start_gateway


@contextlib.asynccontextmanager
async def listening(url: str, key: str, secret: str):
    """alpaca-py's TradingStream on the gateway, once it delivers events (probed with resting
    orders the same bot places and cancels, polled with a deadline)."""
    updates: asyncio.Queue = asyncio.Queue()

    async def on_update(update):
        await updates.put(update)

    stream = TradingStream(key, secret, url_override=url.replace("http", "ws", 1) + "/stream")
    stream.subscribe_trade_updates(on_update)
    task = asyncio.create_task(stream._run_forever())
    try:
        yield updates
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.close()


async def ready(updates: asyncio.Queue, client: TradingClient) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while updates.empty():
        assert asyncio.get_running_loop().time() < deadline, "the stream never delivered an event"
        probe = await asyncio.to_thread(client.submit_order, LimitOrderRequest(
            symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=100))
        await asyncio.to_thread(client.cancel_order_by_id, probe.id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(updates.get(), 0.3)
    await asyncio.sleep(0.3)
    while not updates.empty():
        updates.get_nowait()


@pytest.mark.compat('alpaca-py TradingStream', 'subscribe_trade_updates', 'works')
async def test_each_bot_hears_its_own_orders_and_only_them(gateway_home):
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        home = Home.at(gateway_home.home)
        other = BotCredentials(home, Vault.open(home)).issue(label="second bot")
        mine = TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)
        theirs = TradingClient(other.key_id, other.secret, paper=True, url_override=gw.url)
        async with listening(gw.url, gw.key_id, gw.secret) as my_updates, \
                listening(gw.url, other.key_id, other.secret) as their_updates:
            await ready(my_updates, mine)
            await ready(their_updates, theirs)
            order = await asyncio.to_thread(mine.submit_order, MarketOrderRequest(
                symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
            seen = []
            while not any(u.event == "fill" for u in seen):
                seen.append(await asyncio.wait_for(my_updates.get(), 5))
            assert [u.event for u in seen] == ["new", "fill"]
            assert all(str(u.order.id) == str(order.id) for u in seen)
            assert seen[-1].position_qty == 2.0
            await asyncio.sleep(0.3)
            assert their_updates.empty()  # another bot's orders are not its business
    finally:
        await gw.gateway.stop()


async def test_a_credential_limited_to_crypto_cannot_close_a_stock_position(gateway_home):
    """Issue 11, finding 7: a close is an order like any other; admission runs the asset-class
    and guard checks for it too."""
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        home = Home.at(gateway_home.home)
        crypto_only = BotCredentials(home, Vault.open(home)).issue(label="crypto only", asset_classes=["crypto"])
        full = TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)
        limited = TradingClient(crypto_only.key_id, crypto_only.secret, paper=True, url_override=gw.url)
        await asyncio.to_thread(full.submit_order, MarketOrderRequest(
            symbol="AAPL", qty=4, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
        try:
            await asyncio.to_thread(limited.close_position, "AAPL")
        except APIError as refused:
            assert refused.status_code == 403 and "us_equity" in str(refused)
        else:
            raise AssertionError("a crypto-only credential closed a stock position")
        try:
            await asyncio.to_thread(limited.close_all_positions)
        except APIError as refused:
            assert refused.status_code == 403
        else:
            raise AssertionError("a crypto-only credential closed every position")
        assert gw.gateway.portfolio.position("AAPL") == 4
    finally:
        await gw.gateway.stop()


async def test_with_a_price_walk_the_embedded_venue_moves_its_marks(gateway_home):
    """`serve --paper-walk` (what the quickstart uses): a bot sees prices move on their own."""
    gw = await start_gateway(gateway_home, venue="paper", paper_walk_s=0.05)
    try:
        engine = gw.gateway.venue.engine
        first = engine.marks()["BTC/USD"]  # a finer tick than a stock's cent: it shows a move soonest
        deadline = asyncio.get_running_loop().time() + 20
        while engine.marks()["BTC/USD"] == first:
            assert asyncio.get_running_loop().time() < deadline, "the mark never moved"
            await asyncio.sleep(0.05)
    finally:
        await gw.gateway.stop()
