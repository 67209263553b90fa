"""Finding 6: a venue outage does not suspend the bots that retry through it. Its refusals
(stale_account, no_reference_price, leverage_unverified) say the venue is down, not that the bot
is broken; once the venue is back the same credential trades without an operator."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.venues.paper_engine import DEFAULT_MARKS
from tests.integration.support import (
    BROKER_KEY_ID,
    BROKER_SECRET,
    PaperBrokerProcess,
    configure,
    free_port,
    paper_broker_subprocess,
    start_gateway,
    store_broker_key,
)

ORDER = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
PRICES = {symbol: str(price) for symbol, price in DEFAULT_MARKS.items()}


async def _broker(port: int):
    context = paper_broker_subprocess(port, "--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET)
    process = context.__enter__()
    await PaperBrokerProcess(f"http://127.0.0.1:{port}", BROKER_KEY_ID, BROKER_SECRET, process).set_prices(PRICES)
    return context


async def test_refusals_during_a_venue_outage_do_not_suspend_the_bot(gateway_home):
    configure(gateway_home.home, rejection_burst={"count": 3, "window_s": 60})
    store_broker_key(gateway_home)
    port = free_port()
    broker = await _broker(port)
    gw = await start_gateway(
        gateway_home, venue="alpaca", upstream_url=f"http://127.0.0.1:{port}", max_snapshot_age_s=1.0, reconcile_interval_s=0.2
    )
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async def post() -> tuple[int, dict]:
                async with session.post(f"{gw.url}/v2/orders", json=ORDER) as resp:
                    return resp.status, await resp.json()

            assert (await post())[0] == 200
            broker.__exit__(None, None, None)  # the venue goes away
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            outage = []
            while len(outage) < 10:
                status, body = await post()
                assert status != 403, body  # never rejected as the bot's fault, never suspended
                if status == 503 and "stale_account" in body["message"]:
                    outage.append(body)  # refused by the gateway for want of a fresh account
                assert loop.time() < deadline, "the outage was never reported as 503"
            broker = await _broker(port)  # the venue is back
            deadline = loop.time() + 20
            while (result := await post())[0] != 200:
                assert result[0] != 403 or "suspended" not in result[1]["message"], result
                assert loop.time() < deadline, f"not trading again after the outage: {result}"
                await asyncio.sleep(0.1)
        assert gw.gateway.rejection_burst.suspended == {}
    finally:
        await gw.gateway.stop()
        broker.__exit__(None, None, None)
