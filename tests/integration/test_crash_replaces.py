"""SIGKILL while replaces and closes are in flight: after a restart the audit log verifies and
every order the broker holds (replacements and closing orders included) carries a client id a
decision record names. ``GATEWAY_CRASH_RUNS`` sets the number of runs (CI's end-to-end script
runs 20; the main suite runs 2)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from gateway.audit.verify import iter_records

from .support import free_port, store_broker_key
from .test_crash_recovery import start_serving

CLI = [sys.executable, "-m", "gateway.cli"]
RUNS = int(os.environ.get("GATEWAY_CRASH_RUNS", "2"))
SYMBOLS = [f"R{i:02d}" for i in range(12)]


async def every_order(broker) -> list[dict]:
    """Every order at the broker, any status, paged oldest first."""
    found: dict[str, dict] = {}
    after = None
    async with aiohttp.ClientSession(headers=broker.headers) as session:
        while True:
            params = {"status": "all", "limit": "500", "direction": "asc", "nested": "false"}
            if after:
                params["after"] = after
            async with session.get(f"{broker.url}/v2/orders", params=params) as resp:
                page = await resp.json()
            fresh = [o for o in page if o["id"] not in found]
            found.update((o["id"], o) for o in fresh)
            if len(page) < 500 or not fresh:
                return list(found.values())
            after = fresh[-1]["submitted_at"]


@pytest.mark.parametrize("run", range(RUNS))
async def test_sigkill_during_replaces_and_closes(run, gateway_home, paper_broker_process):
    broker = paper_broker_process
    await broker.set_prices({symbol: "10" for symbol in SYMBOLS})
    store_broker_key(gateway_home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = start_serving(gateway_home.home, broker.url, port)
    headers = {"APCA-API-KEY-ID": gateway_home.bot_key_id, "APCA-API-SECRET-KEY": gateway_home.bot_secret}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async def send(method: str, path: str, **kw):
                try:
                    async with session.request(method, base + path, **kw) as resp:
                        return resp.status, await resp.json(content_type=None)
                except aiohttp.ClientError:
                    return None, None  # the gateway died under us

            resting = []
            for symbol in SYMBOLS:
                status, order = await send("POST", "/v2/orders", json={
                    "symbol": symbol, "qty": 5, "side": "buy", "type": "limit", "limit_price": 5, "time_in_force": "gtc"})
                assert status == 200, order
                resting.append(order["id"])
                status, _ = await send("POST", "/v2/orders", json={
                    "symbol": symbol, "qty": 20, "side": "buy", "type": "market", "time_in_force": "day"})
                assert status == 200

            async def replace_chain(order_id: str):
                for qty in range(6, 40):
                    status, order = await send("PATCH", f"/v2/orders/{order_id}", json={"qty": qty})
                    if status != 200:
                        return
                    order_id = order["id"]

            async def close_in_steps(symbol: str):
                for _ in range(20):
                    status, _ = await send("DELETE", f"/v2/positions/{symbol}", params={"qty": "1"})
                    if status != 200:
                        return

            before = len(await every_order(broker))
            load = [asyncio.create_task(replace_chain(o)) for o in resting]
            load += [asyncio.create_task(close_in_steps(s)) for s in SYMBOLS]
            deadline = asyncio.get_running_loop().time() + 30
            while len(await every_order(broker)) < before + 40:
                assert asyncio.get_running_loop().time() < deadline, "the load never reached the broker"
                await asyncio.sleep(0.01)
            os.kill(gateway.pid, signal.SIGKILL)
            await asyncio.gather(*load)
    finally:
        gateway.kill()
        gateway.wait()

    restarted = start_serving(gateway_home.home, broker.url, port)
    restarted.send_signal(signal.SIGTERM)
    restarted.wait(timeout=20)

    verify = subprocess.run([*CLI, "audit", "verify", "--home", str(gateway_home.home)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    decided = {
        r.data["client_order_id"]
        for r in iter_records(gateway_home.home / "audit" / "audit.log")
        if r.type in ("order.decision", "replace.decision", "close.decision") and r.data["decision"] == "allow"
    }
    at_broker = [o["client_order_id"] for o in await every_order(broker)]
    kinds = {"replacements": 0, "closes": 0}
    for order in await every_order(broker):
        kinds["replacements"] += order.get("replaces") is not None
        kinds["closes"] += order["client_order_id"].startswith("gw-close-")
    assert kinds["replacements"] > 0 and kinds["closes"] > 0, kinds
    missing = [cid for cid in at_broker if cid not in decided]
    assert missing == [], f"{len(missing)} orders at the broker have no decision record"
