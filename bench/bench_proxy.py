"""Order latency through the gateway, as ratios (run by hand: python bench/bench_proxy.py).

Three paths to the same standalone paper broker, on loopback, in one run:
  direct   the bot talks to the paper broker
  bare     through a bare aiohttp pass-through proxy (the floor for this stack)
  gateway  through the gateway (--venue alpaca): auth, risk check, durable audit, forward
Prints p50/p99 per path and the ratios gateway/bare and gateway/direct, plus the gateway's
added milliseconds over the bare proxy (DESIGN.md: a bare proxy adds ~0.27 ms p50 on the
reference machine; one fdatasync ~0.15 ms; the gateway makes the decision record durable before forwarding).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.bootstrap import init_home  # noqa: E402
from gateway.home import Home  # noqa: E402
from gateway.keys.broker import BrokerKeys  # noqa: E402
from gateway.keys.vault import Vault  # noqa: E402
from gateway.paper_broker import build_paper_broker_app  # noqa: E402
from gateway.server import Gateway, ServeOptions  # noqa: E402
from gateway.venues.paper import PaperVenue  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_budget import plain_policy  # noqa: E402  (every rail on but stop, duplicate and rate)

ORDERS = 400
KEY, SECRET = "PKBENCH0000000000001", "bench-secret"
BODY = {"symbol": "AAPL", "qty": 0.001, "side": "buy", "type": "market", "time_in_force": "day"}


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def bare_proxy(upstream: str) -> web.Application:
    """Forward every request as-is over one pooled session: what any aiohttp proxy costs."""
    session: aiohttp.ClientSession | None = None

    async def forward(request: web.Request) -> web.Response:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, upstream + request.path_qs, headers=headers, data=await request.read()) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type=resp.content_type)

    async def close(app):
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close)
    return app


async def measure(url: str, headers: dict) -> list[float]:
    timings = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(ORDERS + 20):
            started = time.perf_counter()
            async with session.post(f"{url}/v2/orders", json=BODY) as resp:
                await resp.read()
                assert resp.status == 200, await resp.text()
            if i >= 20:  # warm-up excluded
                timings.append((time.perf_counter() - started) * 1000)
    return timings


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def fresh_broker(runners: list) -> str:
    """A new paper broker per path, so no path pays for another's order history."""
    venue = PaperVenue(seed_marks=True, starting_equity=Decimal("100000000"))
    runner, url = await serve(build_paper_broker_app(venue, key_id=KEY, secret=SECRET))
    runners.append(runner)
    return url


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="gwb", dir="/tmp"))
    runners: list = []
    broker_headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    results = {}
    try:
        results["direct"] = await measure(await fresh_broker(runners), broker_headers)
        proxy_runner, proxy_url = await serve(bare_proxy(await fresh_broker(runners)))
        runners.append(proxy_runner)
        results["bare"] = await measure(proxy_url, broker_headers)
        init = init_home(workdir / "home", policy_text=plain_policy())
        BrokerKeys(Vault.open(Home.at(init.home))).set("alpaca", KEY, SECRET)
        broker_url = await fresh_broker(runners)
        gateway = Gateway(Home.at(init.home), ServeOptions(venue="alpaca", upstream_url=broker_url, port=0))
        await gateway.start()
        await gateway.listen()
        bot_headers = {"APCA-API-KEY-ID": init.bot_key_id, "APCA-API-SECRET-KEY": init.bot_secret}
        try:
            results["gateway"] = await measure(gateway.base_url, bot_headers)
        finally:
            await gateway.stop()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{ORDERS} sequential market orders per path, loopback, one client")
    for name, values in results.items():
        print(f"  {name:8} p50 {statistics.median(values):7.3f} ms   p99 {pct(values, 99):7.3f} ms")
    g, b, d = (statistics.median(results[k]) for k in ("gateway", "bare", "direct"))
    print(f"ratio gateway/bare   p50 {g / b:5.2f}   p99 {pct(results['gateway'], 99) / pct(results['bare'], 99):5.2f}")
    print(f"ratio gateway/direct p50 {g / d:5.2f}   p99 {pct(results['gateway'], 99) / pct(results['direct'], 99):5.2f}")
    print(f"gateway adds {g - b:.3f} ms p50 over a bare aiohttp proxy (auth, risk check, one durable audit record before forwarding)")


if __name__ == "__main__":
    if "--smoke" in sys.argv[1:]:  # CI: a few orders per path, so the benchmark cannot rot
        ORDERS = 20
    asyncio.run(main())
