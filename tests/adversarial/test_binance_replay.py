"""Findings 2 and 8: the memory of accepted Binance order signatures.

2. A signature is remembered only after the order parsed and its credential may trade, and each
   credential has its own bound: no key, read-only or trading, can fill it for the others.
8. An order signed before the gateway started is refused: a request captured before a restart
   cannot be replayed within its recvWindow after it."""

from __future__ import annotations

import aiohttp

from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault
from gateway.model import OrderQuery
from tests.integration.support import start_gateway

from .binance import ORDER, send, signed

CAPACITY = 25  # the per-credential bound, lowered so the test fills it quickly


async def test_no_credential_can_fill_the_replay_memory_for_the_others(paper_gateway):
    gw = paper_gateway
    home = Home.at(gw.init.home)
    creds = BotCredentials(home, Vault.open(home))
    reader = creds.issue(label="reader", scopes=["read_only"])
    flooder = creds.issue(label="flooder")
    gw.gateway.binance.replay.capacity = CAPACITY
    order_url = f"{gw.url}/fapi/v1/order"
    async with aiohttp.ClientSession() as session:
        for i in range(CAPACITY + 5):
            garbage = {**ORDER, "quantity": f"x{i}"}
            status, body = await send(session, "POST", order_url, reader.key_id, signed(garbage, reader.secret))
            assert status == 400 and body["code"] < 0  # malformed: not remembered
            status, body = await send(session, "POST", order_url, reader.key_id, signed(ORDER, reader.secret))
            assert (status, body["code"]) == (403, -2015)  # no trade scope: not remembered
        # A trading key fills only its own memory (its orders are refused by the policy: an
        # unknown symbol), then gets 429 itself.
        for i in range(CAPACITY + 1):
            unknown = {**ORDER, "symbol": "BTCUSDT", "newClientOrderId": f"flood-{i}"}  # each signature distinct
            # A 60 s window keeps each signature remembered however slowly the loop runs.
            body_text = signed(unknown, flooder.secret, recvWindow=60_000)
            status, body = await send(session, "POST", order_url, flooder.key_id, body_text)
        assert status == 429 and body["code"] == -1003
        status, body = await send(session, "POST", order_url, gw.key_id, signed(ORDER, gw.secret))
        assert status == 200, body


async def test_an_order_captured_before_a_restart_is_refused_after_it(gateway_home):
    first = await start_gateway(gateway_home, venue="paper")
    captured = signed(ORDER, first.secret, recvWindow=60_000)
    try:
        async with aiohttp.ClientSession() as session:
            status, _ = await send(session, "POST", f"{first.url}/fapi/v1/order", first.key_id, captured)
            assert status == 200
    finally:
        await first.gateway.stop()
    second = await start_gateway(gateway_home, venue="paper")
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await send(session, "POST", f"{second.url}/fapi/v1/order", second.key_id, captured)
            assert (status, body["code"]) == (401, -1022) and "before the gateway started" in body["msg"]
            status, _ = await send(session, "POST", f"{second.url}/fapi/v1/order", second.key_id, signed(ORDER, second.secret))
            assert status == 200  # a freshly signed order passes
        orders = await second.gateway.venue.list_orders(OrderQuery(status="all"))
        assert len(orders) == 1
    finally:
        await second.gateway.stop()
