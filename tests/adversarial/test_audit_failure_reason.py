"""Finding 11: after the audit disk fails, the lock's reason says what is true (it holds across
restarts) and how to recover, instead of "until restart"."""

from __future__ import annotations

import aiohttp

from gateway.model import TradingState
from tests.integration.support import start_gateway

from .cli import arun

ORDER = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}


async def test_the_audit_failure_lock_says_it_survives_a_restart_and_how_to_lift_it(gateway_home):
    home = str(gateway_home.home)
    gw = await start_gateway(gateway_home, venue="paper")

    def broken_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    try:
        gw.gateway.audit._sync = broken_disk  # the writer's injectable fsync: the disk fails from now on
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async with session.post(f"{gw.url}/v2/orders", json=ORDER) as resp:
                assert resp.status == 403
            async with session.post(f"{gw.url}/v2/orders", json=ORDER) as resp:
                message = (await resp.json())["message"]
        assert "audit log unavailable" in message and "until restart" not in message
        reason = gw.gateway.control.current.reason
        assert "until restart" not in reason
        assert "stays locked across restarts" in reason and "gatewayctl unlock" in reason and "audit verify" in reason
    finally:
        await gw.gateway.stop()

    again = await start_gateway(gateway_home, venue="paper")  # the disk is fine again
    try:
        assert again.gateway.control.state is TradingState.LOCKED  # true to its word
        assert "stays locked across restarts" in again.gateway.control.current.reason
        code, out = await arun("unlock", "--home", home, "--reason", "disk replaced, log verified")
        assert code == 0, out
        async with aiohttp.ClientSession(headers=again.headers) as session:
            async with session.post(f"{again.url}/v2/orders", json=ORDER) as resp:
                assert resp.status == 200
    finally:
        await again.gateway.stop()
