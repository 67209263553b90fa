"""Signed policy changes through the real `gatewayctl`, offline and on a running gateway."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson

from gateway.audit.verify import iter_records

from .support import start_gateway, wait_for

CLI = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"gatewayctl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


async def arun(*args: str) -> tuple[int, str]:
    """The CLI as a subprocess without blocking the event loop the gateway runs in."""
    process = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode, out.decode()


def edited(home: Path, target: Path, version: int, position_pct: str) -> Path:
    text = (home / "policy" / "active.yaml").read_text()
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("version:"):
            line = f"version: {version}\n"
        elif line.lstrip().startswith("max_position_pct:"):
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}max_position_pct: {position_pct}\n"
        lines.append(line)
    target.write_text("".join(lines))
    return target


def test_cli_round_trip_keygen_edit_sign_twice_diff_verify_apply_status(gateway_home, short_tmp):
    home = str(gateway_home.home)
    second = gateway_home.second_signer_key  # init makes two signers, for two people

    tighter = edited(gateway_home.home, short_tmp / "v2.yaml", 2, "1.5")
    run("policy", "sign", str(tighter), "--key", str(gateway_home.signer_key))
    diff = run("policy", "diff", str(tighter), "--home", home).stdout
    assert "account.max_position_pct" in diff and "TIGHTEN" in diff
    run("policy", "verify", str(tighter), "--home", home)
    run("policy", "apply", str(tighter), "--home", home)
    status = orjson.loads(run("status", "--home", home, "--json").stdout)
    assert status["policy"]["version"] == 2

    looser = edited(gateway_home.home, short_tmp / "v3.yaml", 3, "2")
    run("policy", "sign", str(looser), "--key", str(gateway_home.signer_key))
    assert "LOOSEN" in run("policy", "diff", str(looser), "--home", home).stdout
    refused = run("policy", "apply", str(looser), "--home", home, check=False)
    assert refused.returncode != 0 and "needs_second_signer" in refused.stderr
    assert orjson.loads(run("status", "--home", home, "--json").stdout)["policy"]["version"] == 2

    run("policy", "sign", str(looser), "--key", str(second))  # the second signer adds to v3.yaml.sig
    run("policy", "verify", str(looser), "--home", home)
    run("policy", "apply", str(looser), "--home", home)
    assert orjson.loads(run("status", "--home", home, "--json").stdout)["policy"]["version"] == 3
    shown = run("policy", "show", "--home", home).stdout
    assert "version 3" in shown and "max_position_pct: 2" in shown


def test_refused_policy_keeps_the_last_good_one(gateway_home, short_tmp):
    home = str(gateway_home.home)
    unsigned = edited(gateway_home.home, short_tmp / "v2.yaml", 2, "1")
    result = run("policy", "apply", str(unsigned), "--home", home, check=False)
    assert result.returncode != 0 and "unsigned" in result.stderr
    run("policy", "sign", str(unsigned), "--key", str(gateway_home.signer_key))
    unsigned.write_text(unsigned.read_text().replace("max_position_pct: 1", "max_position_pct: 1.9"))
    result = run("policy", "apply", str(unsigned), "--home", home, check=False)
    assert result.returncode != 0 and "bytes_changed" in result.stderr
    assert orjson.loads(run("status", "--home", home, "--json").stdout)["policy"]["version"] == 1


async def test_hot_apply_during_500_concurrent_orders_is_atomic(gateway_home, short_tmp):
    gw = await start_gateway(gateway_home, venue="paper", paper_equity=Decimal("10000000"))
    symbols = [f"H{i:03d}" for i in range(500)]
    gw.gateway.venue.engine.set_prices({s: Decimal(100) for s in symbols})
    tighter = edited(gateway_home.home, short_tmp / "v2.yaml", 2, "0.001")
    run("policy", "sign", str(tighter), "--key", str(gateway_home.signer_key))
    try:
        async with aiohttp.ClientSession(headers=gw.headers, connector=aiohttp.TCPConnector(limit=20)) as session:
            async def order(symbol):
                body = {"symbol": symbol, "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
                async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                    return resp.status, await resp.json()

            orders = [asyncio.create_task(order(s)) for s in symbols]
            # Apply once the stream is under way (some decisions made, most still to come).
            await wait_for(lambda: gw.gateway.audit.seq >= 60, timeout=30)
            connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
            async with aiohttp.ClientSession(connector=connector) as operator:
                async with operator.post("http://gateway/policy/apply", json={"path": str(tighter)}) as resp:
                    assert resp.status == 200, await resp.text()
            results = await asyncio.gather(*orders)
    finally:
        await gw.gateway.stop()

    assert {status for status, _ in results} <= {200, 403}
    versions_seen = []
    applied_at = None
    for record in iter_records(gateway_home.home / "audit" / "audit.log"):
        if record.type == "policy.apply":
            applied_at = record.seq
        elif record.type == "order.decision":
            version = record.data["policy_version"]
            versions_seen.append(version)
            # Before the switch every decision is v1, after it every decision is v2.
            assert version == (1 if applied_at is None else 2), record
    assert applied_at is not None and len(versions_seen) == 500
    # The switch landed mid-stream: decisions on both sides of it.
    assert versions_seen.count(1) > 0 and versions_seen.count(2) > 0, (versions_seen.count(1), versions_seen.count(2))
    for status, body in results:
        if status == 403:
            assert "(policy v2)" in body["message"]
