"""Fail-closed paths of a running gateway that only show when something goes wrong: the operator's
unlock, a lockdown while the audit log is down, a refused policy over the operator socket, a
revoked key used with lockdown_on_revoked_key_use, and a credential file edited by hand."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import aiohttp
import pytest

from gateway.audit.verify import iter_records
from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault
from gateway.model import OrderQuery, TradingState

from .support import RunningGateway, configure, start_gateway, wait_for

ORDER = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
RESTING = {**ORDER, "type": "limit", "limit_price": 100, "time_in_force": "gtc"}


async def operator(gw: RunningGateway, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, f"http://gateway{path}", json=body) as resp:
            return resp.status, await resp.json()


async def post_order(gw: RunningGateway, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=headers or gw.headers) as session:
        async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
            return resp.status, await resp.json()


def records(gw: RunningGateway, type_: str) -> list:
    return [r for r in iter_records(gw.gateway.home.audit_log) if r.type == type_]


async def test_unlock_over_the_socket_returns_to_active_and_is_recorded(paper_gateway):
    gw = paper_gateway
    status, _ = await operator(gw, "POST", "/lockdown", {"reason": "drill", "actor": "ops"})
    assert status == 200 and (await post_order(gw, ORDER))[0] == 403
    status, body = await operator(gw, "POST", "/unlock", {"reason": "  "})
    assert status == 400 and body["error"] == "a reason is required"
    assert gw.gateway.control.state is TradingState.LOCKED
    status, body = await operator(gw, "POST", "/unlock", {"reason": "drill over", "actor": "ops"})
    assert status == 200 and body["state"]["state"] == "ACTIVE" and body["state"]["reason"] == "drill over"
    assert (await post_order(gw, ORDER))[0] == 200
    [unlock] = records(gw, "control.unlock")
    assert unlock.data == {"from": "LOCKED", "to": "ACTIVE", "reason": "drill over", "actor": "ops"}


async def test_lockdown_while_the_audit_log_is_down_still_cancels(paper_gateway, monkeypatch):
    gw = paper_gateway
    status, resting = await post_order(gw, RESTING)
    assert status == 200, resting

    def disk_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", disk_error)
    status, body = await post_order(gw, ORDER)
    assert status == 403 and body["reject_codes"] == ["audit_unavailable"]
    assert gw.gateway.control.state is TradingState.LOCKED  # pinned: never trade unrecorded
    status, body = await operator(gw, "POST", "/lockdown", {"reason": "disk trouble", "cancel_open": True})
    assert status == 200
    assert body["canceled"] == [resting["id"]]
    assert body["audit"] == "unavailable: these actions could not be recorded"
    assert not (await gw.gateway.venue.get_order(resting["id"])).status.is_open
    open_orders = await gw.gateway.venue.list_orders(OrderQuery(status="open"))
    assert open_orders == []
    # Unlocking cannot undo the pin while the log is broken: it stays LOCKED until a restart.
    status, _ = await operator(gw, "POST", "/unlock", {"reason": "try"})
    assert gw.gateway.control.state is TradingState.LOCKED
    assert (await post_order(gw, ORDER))[0] == 403


async def test_a_refused_policy_over_the_socket_is_409_recorded_and_changes_nothing(paper_gateway, short_tmp):
    gw = paper_gateway
    before = gw.gateway.active_policy
    unsigned = short_tmp / "loosened.yaml"
    unsigned.write_bytes(Path(gw.init.policy).read_bytes().replace(b"description:", b"description: unsigned", 1))
    status, body = await operator(gw, "POST", "/policy/apply", {"path": str(unsigned), "actor": "ops"})
    assert status == 409 and body["code"] == "unsigned" and body["error"].startswith("refused (unsigned): ")
    assert gw.gateway.active_policy is before
    [refused] = records(gw, "policy.refused")
    assert refused.data["code"] == "unsigned" and refused.data["path"] == str(unsigned)
    assert refused.data["actor"] == "ops"
    assert records(gw, "policy.apply") == []
    status, body = await operator(gw, "POST", "/policy/apply", {"path": "relative.yaml"})
    assert status == 400 and body["error"] == "path must be absolute"


@pytest.mark.parametrize("lock", [True, False])
async def test_a_revoked_key_used_locks_down_only_when_configured(gateway_home, lock):
    configure(gateway_home.home, lockdown_on_revoked_key_use=lock)
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        assert (await post_order(gw, ORDER))[0] == 200
        home = Home.at(gateway_home.home)
        BotCredentials(home, Vault.open(home)).revoke(gw.key_id)
        status, body = await post_order(gw, ORDER)
        assert status == 401 and body["message"] == "invalid credentials"
        expected = TradingState.LOCKED if lock else TradingState.ACTIVE
        assert gw.gateway.control.state is expected
        if lock:
            reason = gw.gateway.control.current.reason
            assert reason.startswith(f"revoked credential {gw.key_id} was used from 127.0.0.1")
        await wait_for(lambda: any("revoked" in r.data["reason"] for r in records(gw, "auth.failure")))
    finally:
        await gw.gateway.stop()


async def test_a_hand_edited_credential_file_refuses_every_bot(paper_gateway):
    gw = paper_gateway
    assert (await post_order(gw, ORDER))[0] == 200
    path = gw.gateway.home.clients
    doc = json.loads(path.read_bytes())
    doc["clients"][gw.key_id]["scopes"] = ["trade", "admin"]  # widen a credential by hand
    path.write_text(json.dumps(doc))
    status, body = await post_order(gw, ORDER)
    assert status == 401 and body["message"] == "invalid credentials"
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        async with session.get(f"{gw.url}/v2/account") as resp:
            assert resp.status == 401
    await wait_for(lambda: any("integrity" in r.data["reason"] for r in records(gw, "auth.failure")))
    assert len(await gw.gateway.venue.list_orders(OrderQuery(status="all"))) == 1
