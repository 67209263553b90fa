"""What the gateway knows survives a restart: the audit log is the ledger's journal. Orders it
placed keep their owner and role, a stop it owes a position is placed again, a suspended
credential stays suspended, and the dead man's switch still watches a silent bot's orders.
The gateway is stopped and a new one started on the same home, in front of the same paper-broker
process (the broker's state lives on)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest

from gateway.ledger import Role
from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import configure, start_gateway, store_broker_key, wait_for

RESTING = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "limit_price": 150, "time_in_force": "gtc"}


@pytest.fixture
async def broker(paper_broker_process, gateway_home):
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(gateway_home)
    return paper_broker_process


async def restart(home, broker):
    return await start_gateway(home, venue="alpaca", upstream_url=broker.url)


async def post(gw, body) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
            return resp.status, await resp.json()


async def test_orders_keep_their_owner_and_role_across_a_restart(gateway_home, broker):
    gw = await restart(gateway_home, broker)
    status, order = await post(gw, RESTING)
    assert status == 200
    await gw.gateway.stop()
    gw = await restart(gateway_home, broker)
    try:
        known = gw.gateway.pipeline.ledger.find(order["id"])
        assert known is not None and known.key_id == gw.key_id and known.role is Role.ENTRY
        assert known.client_order_id == order["client_order_id"]
    finally:
        await gw.gateway.stop()


async def test_a_stop_the_gateway_owes_is_placed_again_after_a_restart(default_policy_home, paper_broker_process):
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(default_policy_home)
    gw = await restart(default_policy_home, paper_broker_process)
    status, _ = await post(gw, {"symbol": "BTC/USD", "qty": "0.01", "side": "buy", "type": "market",
                                "time_in_force": "gtc"})
    assert status == 200
    stops = [o for o in gw.gateway.pipeline.ledger.open_orders() if o.role is Role.PROTECTIVE]
    assert len(stops) == 1  # crypto at Alpaca carries no leg: the gateway placed its own stop
    await gw.gateway.stop()
    # While the gateway is down, the stop disappears at the broker.
    async with aiohttp.ClientSession(headers=paper_broker_process.headers) as session:
        async with session.delete(f"{paper_broker_process.url}/v2/orders/{stops[0].venue_id}") as resp:
            assert resp.status == 204
    gw = await restart(default_policy_home, paper_broker_process)
    try:
        ledger = gw.gateway.pipeline.ledger

        def protected():
            live = [o for o in ledger.open_orders("BTC/USD") if o.role is Role.PROTECTIVE and o.venue_id]
            return sum((o.remaining for o in live), Decimal(0)) == Decimal("0.01")

        await wait_for(protected, timeout=10)
        placed = [r for r in await paper_broker_process.open_orders() if r["symbol"] == "BTC/USD"]
        assert [(r["side"], Decimal(r["qty"]), r["stop_price"]) for r in placed] == [("sell", Decimal("0.01"), "54000")]
    finally:
        await gw.gateway.stop()


async def test_a_suspended_credential_stays_suspended_across_a_restart(gateway_home, broker):
    configure(gateway_home.home, rejection_burst={"count": 2, "window_s": 60})
    gw = await restart(gateway_home, broker)
    for _ in range(2):
        assert (await post(gw, {**RESTING, "qty": 500}))[0] == 403  # 50% of equity: rejected
    status, body = await post(gw, RESTING)
    assert status == 403 and "suspended" in body["message"]
    await gw.gateway.stop()
    gw = await restart(gateway_home, broker)
    try:
        status, body = await post(gw, RESTING)
        assert status == 403 and "suspended" in body["message"]
        connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
        async with aiohttp.ClientSession(connector=connector) as operator:
            async with operator.post("http://gateway/keys/unsuspend", json={"key_id": gw.key_id}) as resp:
                assert resp.status == 200
    finally:
        await gw.gateway.stop()
    gw = await restart(gateway_home, broker)
    try:
        assert (await post(gw, RESTING))[0] == 200  # lifted before the restart: stays lifted
    finally:
        await gw.gateway.stop()


async def test_the_dead_mans_switch_still_watches_orders_placed_before_a_restart(gateway_home, broker):
    configure(gateway_home.home, dead_man_switch_s=0.5)
    gw = await restart(gateway_home, broker)
    status, order = await post(gw, RESTING)
    assert status == 200
    await gw.gateway.stop()
    gw = await restart(gateway_home, broker)
    try:
        async def closed() -> bool:
            return not (await gw.gateway.venue.get_order(order["id"])).status.is_open

        deadline = asyncio.get_running_loop().time() + 10
        while not await closed():
            assert asyncio.get_running_loop().time() < deadline, "the silent bot's order was never cancelled"
            await asyncio.sleep(0.1)
    finally:
        await gw.gateway.stop()
