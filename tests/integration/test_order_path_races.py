"""Races on the order path, made deterministic: the audit write of one order's decision is held
at its fsync (the record is written, not yet durable) while the operator acts, then released.

The gateway is built through its public path (``Gateway(home, ServeOptions)``, venue ``alpaca``)
in front of the paper broker on a real socket, whose venue records every call that reaches it.
Everything here goes through the one ``race`` fixture, so a change in how the gateway is put
together touches one place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from gateway.audit.verify import iter_records
from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault
from gateway.paper_broker import build_paper_broker_app
from gateway.venues.paper import PaperVenue

from .support import (
    BROKER_KEY_ID,
    BROKER_SECRET,
    HOLD_LIMIT_S,
    AuditFsyncGate,
    RunningGateway,
    start_gateway,
    store_broker_key,
    wait_for,
)

ORDER = {"qty": 1, "type": "market", "time_in_force": "day"}


class RecordingPaperVenue(PaperVenue):
    """The paper broker's venue, noting every call that could place or change an order."""

    def __init__(self) -> None:
        super().__init__(starting_equity=Decimal(100000), seed_marks=True)
        self.calls: list[tuple[str, str | None]] = []

    async def submit_order(self, intent):
        self.calls.append(("submit_order", intent.client_order_id))
        return await super().submit_order(intent)

    async def replace_order(self, order_id, change):
        self.calls.append(("replace_order", order_id))
        return await super().replace_order(order_id, change)

    async def close_position(self, symbol, qty=None, percentage=None):
        self.calls.append(("close_position", symbol))
        return await super().close_position(symbol, qty, percentage)


@dataclass
class Race:
    gateway: RunningGateway
    venue: RecordingPaperVenue
    gate: AuditFsyncGate
    session: aiohttp.ClientSession
    issued: dict = field(default_factory=dict)

    async def order(self, client_order_id: str, symbol: str, side: str, headers: dict | None = None) -> tuple[int, dict]:
        body = {**ORDER, "symbol": symbol, "side": side, "client_order_id": client_order_id}
        async with self.session.post(f"{self.gateway.url}/v2/orders", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def operator(self, method: str, path: str, body: dict | None = None) -> dict:
        connector = aiohttp.UnixConnector(path=str(self.gateway.gateway.home.operator_socket))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.request(method, f"http://gateway{path}", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

    async def state(self) -> str:
        async with self.session.get(f"{self.gateway.url}/health") as resp:
            return (await resp.json())["state"]

    async def wait_for_state(self, state: str, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (current := await self.state()) != state:
            assert loop.time() < deadline, f"the gateway stayed {current}, expected {state}"
            await asyncio.sleep(0.01)

    def records_for(self, client_order_id: str) -> list:
        log = self.gateway.gateway.home.audit_log
        return [r for r in iter_records(log) if client_order_id in str(r.data)]

    def submitted(self) -> list[str | None]:
        return [cid for name, cid in self.venue.calls if name == "submit_order"]


@pytest.fixture
async def race(gateway_home, serve_app, monkeypatch) -> AsyncIterator[Race]:
    """A gateway (venue alpaca) in front of a recording paper broker, an audit fsync gate, and
    a read-only credential issued beside the trading one."""
    venue = RecordingPaperVenue()
    url = await serve_app(build_paper_broker_app(venue, key_id=BROKER_KEY_ID, secret=BROKER_SECRET))
    store_broker_key(gateway_home)
    home = Home.at(gateway_home.home)
    reader = BotCredentials(home, Vault.open(home)).issue(label="reader", scopes=("read_only",))
    running = await start_gateway(gateway_home, venue="alpaca", upstream_url=url)
    gate = AuditFsyncGate(Path(home.audit_log), monkeypatch)
    try:
        async with aiohttp.ClientSession(headers=running.headers) as session:
            yield Race(running, venue, gate, session, {"reader": reader})
    finally:
        gate.release()
        await running.gateway.stop()


async def _decided_then_halted(race: Race, client_order_id: str, symbol: str, side: str, lockdown: dict) -> tuple[int, dict]:
    """Send an order, hold its decision record at the fsync, lock down (as asked), release."""
    race.gate.hold(client_order_id)
    order = asyncio.create_task(race.order(client_order_id, symbol, side))
    await asyncio.wait_for(race.gate.held.wait(), HOLD_LIMIT_S)
    # The lockdown's own audit record queues behind the held batch, so its answer waits too.
    command = asyncio.create_task(race.operator("POST", "/lockdown", lockdown))
    await race.wait_for_state("REDUCE_ONLY" if lockdown.get("reduce_only") else "LOCKED")
    assert not order.done(), "the order must still be waiting for its decision record"
    race.gate.release()
    result = await asyncio.wait_for(order, 10)
    await asyncio.wait_for(command, 10)
    return result


async def test_an_order_decided_before_a_lockdown_is_not_forwarded_after_it(race):
    status, body = await _decided_then_halted(race, "race-locked-1", "AAPL", "buy", {"reason": "drill", "actor": "test"})
    assert status == 403 and body["reject_codes"] == ["trading_locked"]
    assert "LOCKED before the order left" in body["message"]
    assert race.submitted() == []
    records = race.records_for("race-locked-1")
    assert [r.type for r in records] == ["order.decision", "order.aborted"]
    assert records[0].data["decision"] == "allow" and records[0].data["state"] == "ACTIVE"
    assert records[1].data["code"] == "trading_locked"
    assert (await race.operator("GET", "/status"))["ledger"]["open_orders"] == 0  # nothing held for it


async def test_an_entry_decided_before_reduce_only_is_not_forwarded_after_it(race):
    lockdown = {"reason": "drill", "actor": "test", "reduce_only": True}
    status, body = await _decided_then_halted(race, "race-entry-1", "AAPL", "buy", lockdown)
    assert status == 403 and body["reject_codes"] == ["reduce_only"]
    assert race.submitted() == []
    records = race.records_for("race-entry-1")
    assert [r.type for r in records] == ["order.decision", "order.aborted"]
    assert records[1].data["code"] == "reduce_only"
    assert (await race.operator("GET", "/status"))["ledger"]["open_orders"] == 0  # nothing held for it


async def test_an_exit_decided_before_reduce_only_still_leaves(race):
    """The re-check stops what the new state forbids, not everything in flight."""
    status, body = await race.order("race-open-1", "AAPL", "buy")
    assert status == 200, body
    await wait_for(lambda: race.gateway.gateway.portfolio.open_positions >= 1)
    lockdown = {"reason": "drill", "actor": "test", "reduce_only": True}
    status, body = await _decided_then_halted(race, "race-exit-1", "AAPL", "sell", lockdown)
    assert status == 200, body
    assert race.submitted() == ["race-open-1", "race-exit-1"]
    assert [r.type for r in race.records_for("race-exit-1")][:1] == ["order.decision"]
    assert "order.aborted" not in [r.type for r in race.records_for("race-exit-1")]


async def test_a_read_only_credential_places_nothing(race):
    reader = race.issued["reader"]
    headers = {"APCA-API-KEY-ID": reader.key_id, "APCA-API-SECRET-KEY": reader.secret}
    async with race.session.get(f"{race.gateway.url}/v2/account", headers=headers) as resp:
        assert resp.status == 200  # it may read
    status, body = await race.order("reader-1", "AAPL", "buy", headers=headers)
    assert status == 403 and body["message"] == "this credential is read-only"
    async with race.session.delete(f"{race.gateway.url}/v2/positions/AAPL", headers=headers) as resp:
        assert resp.status == 403
    async with race.session.delete(f"{race.gateway.url}/v2/orders", headers=headers) as resp:
        assert resp.status == 403
    assert race.venue.calls == []
    assert race.records_for("reader-1") == []
