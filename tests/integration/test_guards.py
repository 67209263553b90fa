"""Automatic safeguards on a running gateway: rejection bursts, the dead man's switch, the
state webhook, the TCP operator listener, and tamper detection through `gatewayctl audit`."""

from __future__ import annotations

import asyncio
import subprocess
import time
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.audit.verify import iter_records
from gateway.model import OrderQuery, TradingState

from .support import configure, free_port, start_gateway, wait_for

CLI = [sys.executable, "-m", "gateway.cli"]
ORDER = {"qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}


def audit_types(home: Path) -> list[str]:
    return [r.type for r in iter_records(Path(home) / "audit" / "audit.log")]


async def test_a_burst_of_rejections_suspends_the_credential(gateway_home):
    configure(gateway_home.home, rejection_burst={"count": 3, "window_s": 60})
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async def post(**body):
                async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": "AAPL", **body}) as resp:
                    return resp.status, await resp.json()

            status, resting = await post(type="limit", limit_price=100, time_in_force="gtc")
            assert status == 200
            for _ in range(3):
                assert (await post(qty=500))[0] == 403  # 50% of equity: rejected
            status, body = await post()  # a perfectly good order, from a suspended credential
            assert status == 403 and "suspended" in body["message"]
            async with session.delete(f"{gw.url}/v2/orders/{resting['id']}") as resp:
                assert resp.status == 204  # cancels still pass
            connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
            async with aiohttp.ClientSession(connector=connector) as operator:
                async with operator.post("http://gateway/keys/unsuspend", json={"key_id": gw.key_id}) as resp:
                    assert resp.status == 200
            assert (await post())[0] == 200
    finally:
        await gw.gateway.stop()
    types = audit_types(gateway_home.home)
    assert "key.suspended" in types and "key.unsuspended" in types


async def test_refusals_during_a_lockdown_do_not_suspend_the_bot(gateway_home):
    configure(gateway_home.home, rejection_burst={"count": 3, "window_s": 60})
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            gw.gateway.control.set(TradingState.LOCKED, "drill", "test")
            for _ in range(10):
                async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": "AAPL"}) as resp:
                    assert (await resp.json())["reject_codes"] == ["trading_locked"]
            gw.gateway.control.set(TradingState.ACTIVE, "drill over", "test")
            async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": "AAPL"}) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await gw.gateway.stop()
    assert "key.suspended" not in audit_types(gateway_home.home)


async def test_the_dead_mans_switch_cancels_a_silent_bots_orders(gateway_home):
    configure(gateway_home.home, dead_man_switch_s=0.4)
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            body = {**ORDER, "symbol": "SPY", "type": "limit", "limit_price": 400, "time_in_force": "gtc"}
            silent_since = time.monotonic()  # at latest, the bot's last request arrives after this
            async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                order = await resp.json()
            # When and what it fires on is pinned on a test clock in tests/unit/test_dead_man.py;
            # here: the switch configured in gateway.json runs, cancels and records.
            deadline = silent_since + 10
            while (await gw.gateway.venue.get_order(order["id"])).status.is_open:
                assert time.monotonic() < deadline, "the silent bot's order was never cancelled"
                await asyncio.sleep(0.05)
            assert time.monotonic() - silent_since >= 0.4, "cancelled before the bot was silent for the timeout"
            await wait_for(lambda: "deadman.fired" in audit_types(gateway_home.home))
    finally:
        await gw.gateway.stop()


async def test_every_state_change_calls_the_webhook(gateway_home):
    received: list[dict] = []

    async def hook(request):
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    configure(gateway_home.home, webhook_url=f"http://127.0.0.1:{port}/hook")
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        # A change made straight to the state file (as the CLI does) is noticed too.
        gw.gateway.control.set(TradingState.LOCKED, "drill", "test")
        await wait_for(lambda: bool(received), timeout=10)
    finally:
        await gw.gateway.stop()
        await runner.cleanup()
    assert received and received[0]["state"] == "LOCKED" and received[0]["from"] == "ACTIVE"
    assert received[0]["reason"] == "drill"


async def test_the_tcp_operator_listener_requires_the_operator_token(gateway_home):
    port = free_port()
    gw = await start_gateway(gateway_home, venue="paper", operator_listen=("127.0.0.1", port))
    token = Path(gateway_home.operator_token).read_text().strip()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/status") as resp:
                assert resp.status == 401
            async with session.get(f"http://127.0.0.1:{port}/status", headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200 and b"gateway_trading_state" in await resp.read()
    finally:
        await gw.gateway.stop()


def _verify(home) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "audit", "verify", "--home", str(home)], capture_output=True, text=True)


async def test_audit_verify_detects_tampering_through_the_cli(gateway_home):
    gw = await start_gateway(gateway_home, venue="paper")
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        for symbol in ("AAPL", "MSFT", "SPY"):
            async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": symbol}) as resp:
                assert resp.status == 200
    await gw.gateway.stop()  # closing writes a signed checkpoint
    log = Path(gateway_home.home) / "audit" / "audit.log"
    original = log.read_bytes()
    assert _verify(gateway_home.home).returncode == 0

    lines = original.splitlines(keepends=True)
    changed = original.replace(b'"MSFT"', b'"MSFU"', 1)
    deleted = b"".join(lines[:3] + lines[4:])
    reordered = b"".join(lines[:3] + [lines[4], lines[3]] + lines[5:])
    truncated = b"".join(lines[:-2])
    for name, tampered in (("changed byte", changed), ("deleted record", deleted),
                           ("reordered pair", reordered), ("truncated tail", truncated)):
        log.write_bytes(tampered)
        result = _verify(gateway_home.home)
        assert result.returncode == 1, f"{name} went unnoticed"
    log.write_bytes(original)
    assert _verify(gateway_home.home).returncode == 0
    assert await gw.gateway.venue.list_orders(OrderQuery(status="all")) != []
