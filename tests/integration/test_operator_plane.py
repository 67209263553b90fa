"""Lockdown, restart persistence, audit failure and metrics on a running gateway."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp

from gateway.audit.verify import iter_records
from gateway.model import OrderQuery, TradingState

from .support import RunningGateway, start_gateway, wait_for

ORDER = {"qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}


async def post_order(session: aiohttp.ClientSession, gw: RunningGateway, symbol: str, **extra) -> tuple[int, dict]:
    async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": symbol, **extra}) as resp:
        return resp.status, await resp.json()


async def operator(gw: RunningGateway, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, f"http://gateway{path}", json=body) as resp:
            return resp.status, await resp.read()


async def test_lockdown_with_50_orders_in_flight(gateway_home):
    gw = await start_gateway(gateway_home, venue="paper", paper_equity=Decimal("10000000"))
    symbols = [f"L{i:02d}" for i in range(50)]
    gw.gateway.venue.engine.set_prices({s: Decimal(100) for s in symbols})
    try:
        async with aiohttp.ClientSession(headers=gw.headers, connector=aiohttp.TCPConnector(limit=5)) as session:
            in_flight = [asyncio.create_task(post_order(session, gw, s)) for s in symbols]
            # Lock down once the stream is under way: some orders decided, the rest still coming.
            await wait_for(lambda: gw.gateway.audit.seq >= 8, timeout=30)
            status, out = await operator(gw, "POST", "/lockdown", {"reason": "drill: 50 in flight", "actor": "test"})
            assert status == 200, out
            venue_orders_at_return = len(await gw.gateway.venue.list_orders(OrderQuery(status="all", limit=500)))
            results = await asyncio.gather(*in_flight)
            # Every order has its answer, so any forward has happened by now: nothing reached
            # the venue after the command returned.
            assert len(await gw.gateway.venue.list_orders(OrderQuery(status="all", limit=500))) == venue_orders_at_return
            accepted = sum(1 for status, _ in results if status == 200)
            assert accepted == venue_orders_at_return
            refused = [body for status, body in results if status != 200]
            assert refused and all(body.get("reject_codes") == ["trading_locked"] for body in refused)
            status, body = await post_order(session, gw, "L00")
            assert status == 403 and "trading_locked" in body["message"]
    finally:
        await gw.gateway.stop()

    # The state survives a restart, and cancels still pass while LOCKED.
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        assert gw.gateway.control.state is TradingState.LOCKED
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            status, _ = await post_order(session, gw, "AAPL")
            assert status == 403
            async with session.delete(f"{gw.url}/v2/orders") as resp:
                assert resp.status == 207
    finally:
        await gw.gateway.stop()
    types = [r.type for r in iter_records(gateway_home.home / "audit" / "audit.log")]
    assert "control.lockdown" in types and "order.cancel_all" in types


async def test_cancel_passes_while_locked(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        status, order = await post_order(session, gw, "SPY", type="limit", limit_price=400, time_in_force="gtc")
        assert status == 200 and order["status"] in ("new", "accepted")
        status, _ = await operator(gw, "POST", "/lockdown", {"reason": "drill", "actor": "test"})
        assert status == 200
        async with session.delete(f"{gw.url}/v2/orders/{order['id']}") as resp:
            assert resp.status == 204
        status, body = await post_order(session, gw, "SPY")
        assert status == 403 and body["reject_codes"] == ["trading_locked"]


async def test_reduce_only_lockdown_refuses_entries_and_passes_exits(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        assert (await post_order(session, gw, "AAPL", qty=5))[0] == 200
        await gw.gateway.pipeline.reconcile()
        assert (await operator(gw, "POST", "/lockdown", {"reason": "wind down", "reduce_only": True}))[0] == 200
        status, body = await post_order(session, gw, "MSFT")
        assert status == 403 and body["reject_codes"] == ["reduce_only"]
        status, body = await post_order(session, gw, "AAPL", qty=2, side="sell")
        assert status == 200, body


async def test_lockdown_cancel_open_and_flatten(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        assert (await post_order(session, gw, "AAPL", qty=5))[0] == 200
        assert (await post_order(session, gw, "SPY", type="limit", limit_price=400, time_in_force="gtc"))[0] == 200
    status, body = await operator(gw, "POST", "/lockdown", {"reason": "flatten all", "cancel_open": True, "flatten": True})
    assert status == 200
    assert await gw.gateway.venue.list_orders(OrderQuery(status="open")) == []
    assert await gw.gateway.venue.list_positions() == []


async def test_failing_audit_writer_locks_the_gateway(paper_gateway):
    gw = paper_gateway

    def broken_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    gw.gateway.audit._sync = broken_disk  # the writer's injectable fsync: the disk fails from now on
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        status, body = await post_order(session, gw, "AAPL")
        assert status == 403 and isinstance(body["code"], int)
        assert gw.gateway.control.state is TradingState.LOCKED
        status, body = await post_order(session, gw, "AAPL")
        assert status == 403
    assert await gw.gateway.venue.list_orders(OrderQuery(status="all")) == []


async def test_metrics_and_status_on_the_operator_socket(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        assert (await post_order(session, gw, "AAPL", qty=5))[0] == 200
        assert (await post_order(session, gw, "AAPL", qty=50))[0] == 403
    status, body = await operator(gw, "GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert 'gateway_decisions_total{code="",result="allow"} 1.0' in text
    assert 'gateway_decisions_total{code="max_position_pct",result="deny"} 1.0' in text
    assert 'gateway_trading_state{state="ACTIVE"} 1.0' in text
    assert 'gateway_limit{limit="account.max_exposure_pct"} 20.0' in text
    assert "gateway_order_seconds_bucket" in text
    status, body = await operator(gw, "GET", "/status")
    assert status == 200 and b'"account.max_position_pct"' in body
