"""A bot polling hard through the gateway cannot spend the broker account's whole request budget:
its reads get the gateway's 429 (with Retry-After) before the broker would answer 429, and other
bots' orders still go through. Real sockets: alpaca-py-shaped HTTP to the gateway, the paper broker
as its own process with Alpaca's 200 requests a minute."""

from __future__ import annotations

import aiohttp

from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import BROKER_KEY_ID, BROKER_SECRET, PaperBrokerProcess, free_port, paper_broker_subprocess
from .support import start_gateway, store_broker_key


async def test_a_polling_bot_is_slowed_before_the_broker_refuses_anyone(gateway_home):
    port = free_port()
    args = ("--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET, "--rate-limit", "200/min")
    with paper_broker_subprocess(port, *args) as process:
        broker = PaperBrokerProcess(f"http://127.0.0.1:{port}", BROKER_KEY_ID, BROKER_SECRET, process)
        await broker.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
        store_broker_key(gateway_home)
        gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=broker.url)
        try:
            async with aiohttp.ClientSession(headers=gw.headers) as session:
                statuses = []
                retry_after = None
                for _ in range(200):
                    async with session.get(f"{gw.url}/v2/account") as resp:
                        statuses.append(resp.status)
                        if resp.status == 429:
                            retry_after = resp.headers.get("Retry-After")
                            body = await resp.json()
                            assert body["code"] == 42910000 and "request budget" in body["message"]
                            break
                assert statuses[-1] == 429 and 140 <= len(statuses) <= 151
                assert retry_after is not None and 1 <= int(retry_after) <= 60
                order = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
                async with session.post(f"{gw.url}/v2/orders", json=order) as resp:
                    assert resp.status == 200, await resp.text()  # orders keep their room
            async with aiohttp.ClientSession(headers=broker.headers) as session:
                async with session.get(f"{broker.url}/_paper/stats") as resp:
                    assert (await resp.json())["rate_limited"] == 0  # the broker never had to say no
            assert gw.gateway.pipeline.budget.snapshot()["refused_reads"] == 1
        finally:
            await gw.gateway.stop()


async def test_the_budget_shows_in_status_and_metrics(gateway_home, paper_broker_process):
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
        async with aiohttp.ClientSession(connector=connector) as operator:
            async with operator.get("http://gateway/status") as resp:
                budget = (await resp.json())["upstream_budget"]
            async with operator.get("http://gateway/metrics") as resp:
                metrics = (await resp.read()).decode()
        assert budget["limit_per_min"] == 200 and budget["used_last_min"] >= 3  # the start's reconcile
        assert "gateway_upstream_requests_last_minute" in metrics and "gateway_upstream_limit_per_minute 200" in metrics
    finally:
        await gw.gateway.stop()
