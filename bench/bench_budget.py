"""The gateway's own upstream traffic: how much of the account's rate limit it spends.

    python bench/bench_budget.py [--seconds 600] [--idle-seconds 60] [--smoke]

Runs, as separate processes: a standalone paper broker with Alpaca's limit (``--rate-limit
200/min``) and ``gatewayctl serve --venue alpaca`` in front of it; then a bot that first stays
idle, then trades once a second (alternating market buys and sells of one share). It prints
what the broker counted: the gateway's own requests per minute idle and behind the bot (every
request at the broker minus the bot's orders, which the gateway forwards one for one), as a
share of the limit, and how many 429s the bot saw (the target: none).

Targets (issue: the ledger): idle at most 10 requests a minute; behind a 1 Hz bot under 15% of
the limit (30 a minute). ``--smoke`` runs a few seconds of each phase (CI: it must not rot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.bootstrap import default_policy_text  # noqa: E402

CLI = [sys.executable, "-m", "gateway.cli"]
KEY_ID, SECRET = "PKBUDGET000000000001", "budget-broker-secret-0000"
LIMIT = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{what} exited: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


def plain_policy() -> str:
    """The shipped default with the rails a stream of one-share orders would trip turned off."""
    doc = yaml.safe_load(default_policy_text())
    for rail in ("duplicate_window_s", "orders_per_second", "orders_per_minute", "orders_per_day",
                 "max_risk_per_trade_pct", "price_collar_pct", "min_cash_buffer_pct"):
        doc["account"][rail] = False
    for rules in doc["asset_classes"].values():
        rules["stop_loss"] = {"mode": "off"}
    return yaml.safe_dump(doc, sort_keys=False)


async def broker_stats(url: str) -> dict:
    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{url}/_paper/stats") as resp:
            return await resp.json()


async def trade(gateway: str, key: str, secret: str, seconds: float) -> tuple[int, int, int]:
    """Once a second: a one-share market order, alternating sides. Returns (sent, ok, 429s)."""
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
    sent = ok = throttled = 0
    start = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() - start < seconds:
            side = "buy" if sent % 2 == 0 else "sell"
            body = {"symbol": "AAPL", "qty": 1, "side": side, "type": "market", "time_in_force": "day"}
            async with session.post(f"{gateway}/v2/orders", json=body) as resp:
                sent += 1
                ok += resp.status == 200
                throttled += resp.status == 429
                if resp.status != 200 and os.environ.get("BENCH_VERBOSE"):
                    print(resp.status, await resp.text())
            await asyncio.sleep(max(0.0, start + sent - time.monotonic()))
    return sent, ok, throttled


async def run(seconds: float, idle_seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="gwb", dir="/tmp"))
    processes: list[subprocess.Popen] = []
    try:
        broker_port, gateway_port = free_port(), free_port()
        broker_url, gateway_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{gateway_port}"
        processes.append(subprocess.Popen(
            [*CLI, "paper-broker", "--listen", f"127.0.0.1:{broker_port}", "--key-id", KEY_ID, "--secret", SECRET,
             "--rate-limit", f"{LIMIT}/min"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        wait_listening(broker_port, processes[-1], "paper broker")
        async with aiohttp.ClientSession(headers={"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}) as s:
            async with s.post(f"{broker_url}/_paper/prices", json={"AAPL": "190"}) as resp:
                assert resp.status == 200, await resp.text()
        policy = work / "policy.yaml"
        policy.write_text(plain_policy())
        home = work / "home"
        init = json.loads(subprocess.run([*CLI, "init", str(home), "--policy", str(policy), "--json"],
                                         check=True, capture_output=True, text=True).stdout)
        subprocess.run([*CLI, "broker-keys", "set", "--home", str(home), "--venue", "alpaca", "--key-id", KEY_ID],
                       input=SECRET, check=True, capture_output=True, text=True)
        processes.append(subprocess.Popen(
            [*CLI, "serve", "--home", str(home), "--venue", "alpaca", "--upstream-url", broker_url,
             "--listen", f"127.0.0.1:{gateway_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        wait_listening(gateway_port, processes[-1], "gateway")

        before = (await broker_stats(broker_url))["requests"]
        await asyncio.sleep(idle_seconds)
        idle = (await broker_stats(broker_url))["requests"] - before

        before = (await broker_stats(broker_url))["requests"]
        started = time.monotonic()
        sent, ok, throttled = await trade(gateway_url, init["bot_key_id"], init["bot_secret"], seconds)
        elapsed = time.monotonic() - started
        stats = await broker_stats(broker_url)
        total = stats["requests"] - before
        own = total - ok

        idle_rate = idle / idle_seconds * 60
        own_rate = own / elapsed * 60
        print(f"idle:   {idle} requests in {idle_seconds:.0f}s = {idle_rate:.1f}/min "
              f"({idle_rate / LIMIT:.1%} of {LIMIT}/min; target <= 10/min)")
        print(f"active: bot sent {sent} orders ({ok} accepted) in {elapsed:.0f}s; the broker served {total} requests")
        print(f"        the gateway's own: {own} = {own_rate:.1f}/min ({own_rate / LIMIT:.1%} of the limit; target < 15%)")
        print(f"        429s seen by the bot: {throttled} (target 0); broker refusals with 429: {stats['rate_limited']}")
        top = sorted(stats["by_route"].items(), key=lambda kv: -kv[1])[:6]
        print("        by route (whole run): " + ", ".join(f"{route} {n}" for route, n in top))
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the bot trades")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long the gateway idles first")
    parser.add_argument("--smoke", action="store_true", help="a few seconds of each phase (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.idle_seconds = 8.0, 4.0
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    asyncio.run(run(args.seconds, args.idle_seconds))


if __name__ == "__main__":
    main()
