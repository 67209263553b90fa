"""The gateway killed with SIGKILL in the middle of a load, then restarted: the audit log still
verifies, and every order the broker received has its decision on record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp

from gateway.audit.verify import iter_records

from .support import free_port, store_broker_key

CLI = [sys.executable, "-m", "gateway.cli"]


def start_serving(home, upstream: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--listen", f"127.0.0.1:{port}", "--venue", "alpaca", "--upstream-url", upstream],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if "gateway ready" in line:
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"gateway did not start: {line}{process.stdout.read().decode()[-2000:]}")


async def test_sigkill_under_load_then_restart(gateway_home, paper_broker_process):
    await paper_broker_process.set_prices({f"K{i:02d}": "10" for i in range(40)})
    store_broker_key(gateway_home)
    port = free_port()
    gateway = start_serving(gateway_home.home, paper_broker_process.url, port)
    headers = {"APCA-API-KEY-ID": gateway_home.bot_key_id, "APCA-API-SECRET-KEY": gateway_home.bot_secret}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async def order(i: int):
                body = {"symbol": f"K{i % 40:02d}", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
                try:
                    async with session.post(f"http://127.0.0.1:{port}/v2/orders", json=body) as resp:
                        return resp.status
                except aiohttp.ClientError:
                    return None  # the gateway died under us

            load = [asyncio.create_task(order(i)) for i in range(300)]
            deadline = time.monotonic() + 60
            while len(await paper_broker_process.orders()) < 20:
                assert time.monotonic() < deadline, "the broker never received 20 orders"
                assert gateway.poll() is None, "the gateway died before the kill"
                await asyncio.sleep(0.01)
            os.kill(gateway.pid, signal.SIGKILL)
            statuses = await asyncio.gather(*load)
    finally:
        gateway.kill()
        gateway.wait()
    assert None in statuses, "the kill happened while orders were in flight"

    restarted = start_serving(gateway_home.home, paper_broker_process.url, port)
    restarted.send_signal(signal.SIGTERM)
    restarted.wait(timeout=20)

    verify = subprocess.run([*CLI, "audit", "verify", "--home", str(gateway_home.home)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    recorded = {
        r.data["intent"]["client_order_id"]
        for r in iter_records(gateway_home.home / "audit" / "audit.log")
        if r.type == "order.decision" and r.data["decision"] == "allow"
    }
    received = [o["client_order_id"] for o in await paper_broker_process.orders()]
    assert len(received) >= 20
    missing = [cid for cid in received if cid not in recorded]
    assert missing == [], f"{len(missing)} orders reached the broker without a decision record"
