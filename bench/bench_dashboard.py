"""Dashboard time to first render with a large history. Run by hand or in CI's smoke mode:

    python bench/bench_dashboard.py [--decisions 10000] [--orders 500] [--smoke] [--browser]

Starts a gateway (embedded paper venue) with the operator TCP listener, writes N decision
records into its audit log (group commit), places M resting limit orders through the Alpaca
dialect (they stay open in the ledger), logs in, and prints the time to first render: every
request the page makes before it can draw (the HTML, its CSS and JS, the session, the overview
and the first page of decisions and of open orders), fetched as the page does. Lists are paged,
so this stays flat as the history grows; the overview's size is printed too. With --browser
(and /usr/bin/chromium with Playwright installed) it also times headless Chromium from
navigation to the page's ready mark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import yaml

from gateway.bootstrap import default_policy_text, init_home
from gateway.home import Home
from gateway.server import Gateway, ServeOptions


def relaxed_policy() -> str:
    """The shipped default with per-order rails that would stop a bulk load turned off."""
    doc = yaml.safe_load(default_policy_text())
    for rail in ("duplicate_window_s", "orders_per_second", "orders_per_minute", "orders_per_day",
                 "price_collar_pct", "max_open_positions", "max_order_notional"):
        doc["account"][rail] = False
    for rules in doc["asset_classes"].values():
        rules["stop_loss"] = {"mode": "off"}
    return yaml.safe_dump(doc, sort_keys=False)


def decision(i: int, key_id: str) -> dict:
    deny = i % 7 == 0
    return {
        "key_id": key_id, "dialect": "alpaca", "action": "order",
        "decision": "deny" if deny else "allow",
        "codes": ["max_position_pct"] if deny else [],
        "messages": ["max_position_pct: 2.4% of equity over the 2% limit (policy v1)"] if deny else [],
        "intent": {"symbol": ("AAPL", "MSFT", "BTC/USD")[i % 3], "side": "buy", "type": "limit", "qty": "3",
                   "limit_price": "187.25", "client_order_id": f"bench-{i}"},
        "policy_version": 1,
    }


async def run(n_decisions: int, n_orders: int, use_browser: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gwbd", dir="/tmp"))
    try:
        init = init_home(tmp / "home", policy_text=relaxed_policy())
        op_port = _free_port()
        gateway = Gateway(Home.at(init.home), ServeOptions(port=0, operator_listen=("127.0.0.1", op_port),
                                                           paper_equity=Decimal("100000000")))
        await gateway.start()
        await gateway.listen()
        try:
            t = time.perf_counter()
            await asyncio.gather(*(gateway.audit.submit("order.decision", decision(i, init.bot_key_id)) for i in range(n_decisions)))
            print(f"wrote {n_decisions} decision records in {time.perf_counter() - t:.2f} s")
            headers = {"APCA-API-KEY-ID": init.bot_key_id, "APCA-API-SECRET-KEY": init.bot_secret}
            t = time.perf_counter()
            async with aiohttp.ClientSession(headers=headers) as bot:
                sem = asyncio.Semaphore(16)

                async def place(i: int) -> None:
                    async with sem, bot.post(f"{gateway.base_url}/v2/orders", json={
                        "symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "limit_price": round(1 + (i % 50) / 100, 2),
                        "time_in_force": "gtc", "client_order_id": f"rest-{i}",
                    }) as resp:
                        assert resp.status == 200, await resp.text()

                await asyncio.gather(*(place(i) for i in range(n_orders)))
            print(f"placed {n_orders} resting orders in {time.perf_counter() - t:.2f} s "
                  f"(ledger open: {len(gateway.pipeline.ledger.open_orders())})")
            gateway.dashboard.refresh()
            await _http_first_render(gateway, op_port, n_decisions, n_orders)
            if use_browser:
                await asyncio.to_thread(_browser_first_render, f"{gateway.operator_url}/dashboard",
                                        Home.at(init.home).operator_token.read_text().strip())
        finally:
            await gateway.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _http_first_render(gateway, op_port: int, n_decisions: int, n_orders: int) -> None:
    base = f"http://127.0.0.1:{op_port}/dashboard"
    token = gateway.home.operator_token.read_text().strip()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{base}/login", data={"token": token}, allow_redirects=False) as resp:
            assert resp.status == 303
        timings = []
        sizes = {}
        for _ in range(5):
            t = time.perf_counter()
            async with s.get(base) as resp:
                await resp.read()
            for asset in ("app.js", "style.css"):
                async with s.get(f"{base}/static/{asset}") as resp:
                    await resp.read()
            async with s.get(f"{base}/api/session") as resp:
                await resp.read()

            async def get(path: str) -> None:
                async with s.get(f"{base}/api/{path}") as resp:
                    body = await resp.read()
                    assert resp.status == 200, body[:200]
                    sizes[path.split("?")[0]] = len(body)

            await asyncio.gather(get("overview"), get("orders?offset=0&limit=50"), get("decisions?offset=0&limit=50"))
            timings.append(time.perf_counter() - t)
        async with s.get(f"{base}/api/decisions?offset=0&limit=1") as resp:
            total = (await resp.json())["total"]
    timings.sort()
    print(f"decisions in feed: {total} (written {n_decisions}); open orders: {n_orders}")
    print(f"time to first render (HTTP, all requests of the first paint): median {timings[2] * 1000:.1f} ms, "
          f"worst {timings[-1] * 1000:.1f} ms; bytes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


def _browser_first_render(url: str, token: str) -> None:
    if not Path("/usr/bin/chromium").exists():
        print("browser: /usr/bin/chromium not installed; skipped")
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: playwright not installed (pip install -e '.[e2e]'); skipped")
        return
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=flags, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.fill('input[name="token"]', token)
        page.click('button[type="submit"]')
        page.wait_for_selector("body[data-ready='1']")
        t = time.perf_counter()
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        print(f"time to first render (Chromium, navigation to ready): {(time.perf_counter() - t) * 1000:.1f} ms")
        browser.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="small numbers, for CI")
    parser.add_argument("--browser", action="store_true", help="also time headless Chromium")
    args = parser.parse_args()
    if args.smoke:
        args.decisions, args.orders = 500, 20
    asyncio.run(run(args.decisions, args.orders, args.browser))


if __name__ == "__main__":
    os.environ.setdefault("GATEWAY_LOG_LEVEL", "WARNING")
    main()
