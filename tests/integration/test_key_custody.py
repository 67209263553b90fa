"""Key custody on a running gateway: broker key rotation under load, bot credential revocation
and rotation, start-up refusals, and a leak test over everything the gateway emits."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import os
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway import paper_broker
from gateway.dialects import alpaca as dialect
from gateway.errors import Unauthorized
from gateway.home import Home
from gateway.model import Caller
from gateway.server import Gateway, ServeOptions, StartupError
from gateway.venues.base import Authenticator, DirectBackend
from gateway.venues.paper import PaperVenue

from .support import (
    BROKER_KEY_ID,
    BROKER_SECRET,
    HOLD_LIMIT_S,
    AuditFsyncGate,
    start_gateway,
    store_broker_key,
    wait_for,
)

NEW_KEY_ID = "PKROTATED000000000077"
NEW_SECRET = "rotated-broker-secret-never-shown-91ce"
CLI = [sys.executable, "-m", "gateway.cli"]
ORDER = {"qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}


class BrokerKeys(Authenticator):
    """A broker that, like a real one during a rotation, accepts both keys, and remembers which
    key placed each order."""

    def __init__(self, keys: dict[str, str]):
        self.keys = keys

    def authenticate(self, key_id, secret, dialect_name, remote):
        expected = self.keys.get(key_id)
        if expected is None or not hmac.compare_digest(expected, secret or ""):
            raise Unauthorized("invalid credentials")
        return Caller(key_id=key_id, dialect=dialect_name, remote=remote)

    def hmac_secret(self, key_id, dialect_name, remote):
        raise Unauthorized("invalid credentials")


class RecordingBackend(DirectBackend):
    def __init__(self, venue):
        super().__init__(venue)
        self.submitted_by: list[str] = []

    async def submit_order(self, caller, intent):
        order = await super().submit_order(caller, intent)
        self.submitted_by.append(caller.key_id)
        return order


async def two_key_broker(keys: dict[str, str]):
    venue = PaperVenue(seed_marks=True)
    backend = RecordingBackend(venue)
    auth = BrokerKeys(keys)
    app = web.Application(middlewares=dialect.alpaca_middlewares(auth))
    app[paper_broker.VENUE] = venue
    trading = dialect.alpaca_app(backend, auth)
    app.add_subapp("/v2", trading)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, backend, f"http://127.0.0.1:{port}"


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate(stdin)
    return process.returncode, out.decode()


async def test_broker_key_rotation_during_a_stream_of_orders(gateway_home):
    runner, broker, url = await two_key_broker({BROKER_KEY_ID: BROKER_SECRET, NEW_KEY_ID: NEW_SECRET})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=url)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            rotated = asyncio.Event()
            statuses: list[int] = []

            async def stream():
                while not rotated.is_set() or len(statuses) < 10:
                    async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": "SPY", "qty": 0.01}) as resp:
                        statuses.append(resp.status)
                    if len(statuses) > 400:
                        break

            streaming = asyncio.create_task(stream())
            await wait_for(lambda: len(statuses) >= 3, timeout=10)  # the stream is under way
            code, out = await cli("broker-keys", "rotate", "--home", str(gateway_home.home), "--venue", "alpaca",
                                  "--key-id", NEW_KEY_ID, "--upstream-url", url, stdin=NEW_SECRET.encode() + b"\n")
            assert code == 0, out
            rotated.set()
            await streaming
            after = len(statuses)
            for _ in range(5):  # orders sent after the rotation returned
                async with session.post(f"{gw.url}/v2/orders", json={**ORDER, "symbol": "SPY", "qty": 0.01}) as resp:
                    assert resp.status == 200
    finally:
        await gw.gateway.stop()
        await runner.cleanup()
    assert set(statuses) == {200}, "no order may fail during the rotation"
    assert after >= 10
    assert broker.submitted_by[0] == BROKER_KEY_ID
    # Orders sent after the swap were all placed with the new key.
    assert broker.submitted_by[-5:] == [NEW_KEY_ID] * 5
    assert NEW_SECRET not in out and BROKER_SECRET not in out


async def test_an_order_decided_before_a_broker_key_rotation_leaves_with_the_new_key(gateway_home, monkeypatch):
    """Deterministic: the order's decision record is held at its fsync while the key is rotated
    and the broker stops accepting the old one; released, the order must go out with the new key."""
    from gateway.keys.broker import BrokerKeys as StoredBrokerKeys
    from gateway.keys.vault import Vault

    accepted = {BROKER_KEY_ID: BROKER_SECRET, NEW_KEY_ID: NEW_SECRET}
    runner, broker, url = await two_key_broker(accepted)
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=url)
    gate = AuditFsyncGate(Path(gw.gateway.home.audit_log), monkeypatch)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async def order():
                body = {**ORDER, "symbol": "SPY", "client_order_id": "rotating-1"}
                async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                    return resp.status, await resp.json()

            gate.hold("rotating-1")
            pending = asyncio.create_task(order())
            await asyncio.wait_for(gate.held.wait(), HOLD_LIMIT_S)
            StoredBrokerKeys(Vault.open(Home.at(gateway_home.home))).rotate("alpaca", NEW_KEY_ID, NEW_SECRET)
            del accepted[BROKER_KEY_ID]  # the broker retires the old key at once
            gate.release()
            status, body = await asyncio.wait_for(pending, 10)
    finally:
        gate.release()
        await gw.gateway.stop()
        await runner.cleanup()
    assert status == 200, body
    assert broker.submitted_by == [NEW_KEY_ID]


async def test_rotation_to_a_key_the_venue_refuses_changes_nothing(gateway_home):
    runner, broker, url = await two_key_broker({BROKER_KEY_ID: BROKER_SECRET})
    store_broker_key(gateway_home)
    try:
        code, out = await cli("broker-keys", "rotate", "--home", str(gateway_home.home), "--venue", "alpaca",
                              "--key-id", NEW_KEY_ID, "--upstream-url", url, stdin=NEW_SECRET.encode() + b"\n")
    finally:
        await runner.cleanup()
    assert code != 0 and "nothing changed" in out and NEW_SECRET not in out
    from gateway.keys.broker import BrokerKeys as Store
    from gateway.keys.vault import Vault

    assert Store(Vault.open(Home.at(gateway_home.home))).get("alpaca") == (BROKER_KEY_ID, BROKER_SECRET)


async def test_revoked_credential_is_refused_on_its_next_request(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        async with session.get(f"{gw.url}/v2/account") as resp:
            assert resp.status == 200
        code, out = await cli("keys", "revoke", "--home", str(gw.init.home), gw.key_id)
        assert code == 0, out
        async with session.get(f"{gw.url}/v2/account") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 40110000
    log_path = Path(gw.init.home) / "audit" / "audit.log"
    # The refusal's record is queued without holding the bot's answer: wait for it to land.
    await wait_for(lambda: b'"auth.failure"' in log_path.read_bytes(), timeout=10)
    assert b"revoked" in log_path.read_bytes()


async def test_rotated_bot_credential_works_until_its_overlap_ends(paper_gateway):
    gw = paper_gateway
    rotated_at_or_after = time.time()
    code, out = await cli("keys", "rotate", "--home", str(gw.init.home), gw.key_id, "--overlap", "1.5", "--json")
    assert code == 0, out
    new = orjson.loads(out)
    async with aiohttp.ClientSession() as session:
        async def status(key_id, secret):
            async with session.get(f"{gw.url}/v2/account", headers={"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}) as resp:
                return resp.status

        assert await status(gw.key_id, gw.secret) == 200
        assert await status(new["key_id"], new["secret"]) == 200
        # The exact boundary is pinned on a test clock (tests/unit/test_clients.py); here the
        # running gateway refuses the old key once its overlap has passed, never before.
        deadline = time.monotonic() + 15
        while await status(gw.key_id, gw.secret) == 200:
            assert time.monotonic() < deadline, "the old key still works long after its overlap"
            await asyncio.sleep(0.05)
        assert time.time() >= rotated_at_or_after + 1.5, "the old key was refused inside its overlap"
        assert await status(gw.key_id, gw.secret) == 401
        assert await status(new["key_id"], new["secret"]) == 200


def test_start_up_refuses_a_wrong_master_key(gateway_home, monkeypatch):
    monkeypatch.setenv("GATEWAY_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StartupError, match="keystore"):
        Gateway(Home.at(gateway_home.home), ServeOptions())


def test_start_up_refuses_a_changed_keystore_byte(gateway_home):
    path = Path(gateway_home.home) / "keystore.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StartupError, match="keystore"):
        Gateway(Home.at(gateway_home.home), ServeOptions())


def test_start_up_refuses_secret_files_readable_by_others(gateway_home):
    path = Path(gateway_home.home) / "clients.json"
    path.chmod(0o644)
    with pytest.raises(StartupError) as raised:
        Gateway(Home.at(gateway_home.home), ServeOptions())
    assert "clients.json" in str(raised.value) and "chmod 600" in str(raised.value)


def test_a_live_upstream_needs_the_written_acknowledgement(gateway_home):
    store_broker_key(gateway_home)
    with pytest.raises(StartupError, match="live_trading_acknowledgement"):
        Gateway(Home.at(gateway_home.home), ServeOptions(venue="alpaca", upstream_url="https://api.alpaca.markets"))
    config_path = Path(gateway_home.home) / "gateway.json"
    config = orjson.loads(config_path.read_bytes())
    config["live_trading_acknowledgement"] = "yes"  # anything but the sentence is refused
    config_path.write_bytes(orjson.dumps(config))
    with pytest.raises(StartupError):
        Gateway(Home.at(gateway_home.home), ServeOptions(venue="alpaca", upstream_url="https://api.alpaca.markets"))


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]


async def test_no_secret_leaks_anywhere(gateway_home, caplog):
    caplog.set_level(logging.DEBUG)
    runner, broker, url = await two_key_broker({BROKER_KEY_ID: BROKER_SECRET, NEW_KEY_ID: NEW_SECRET})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=url)
    seen: list[bytes] = []
    extra_secret = None
    try:
        async with aiohttp.ClientSession() as session:
            async def hit(method, path, headers=gw.headers, **kw):
                async with session.request(method, f"{gw.url}{path}", headers=headers, **kw) as resp:
                    seen.append(await resp.read())
                    seen.append(repr(dict(resp.headers)).encode())
            await hit("POST", "/v2/orders", json={**ORDER, "symbol": "AAPL"})
            await hit("POST", "/v2/orders", json={**ORDER, "symbol": "AAPL", "qty": 100})
            await hit("POST", "/v2/orders", json={**ORDER, "symbol": "AAPL", "qty": "NaN"})
            await hit("POST", "/v2/orders", data=b"{broken", headers={**gw.headers, "Content-Type": "application/json"})
            await hit("GET", "/v2/orders/nope")
            await hit("GET", "/v2/account", headers={"APCA-API-KEY-ID": gw.key_id, "APCA-API-SECRET-KEY": "wrong"})
            # A secret pasted into the key-id header by mistake must not be recorded either.
            await hit("GET", "/v2/account", headers={"APCA-API-KEY-ID": gw.secret, "APCA-API-SECRET-KEY": gw.secret})
            code, out = await cli("keys", "issue", "--home", str(gateway_home.home), "--json")
            extra_secret = orjson.loads(out)["secret"]
            seen.append(b"(issue output shown once to the operator, not checked)")
            code, out = await cli("broker-keys", "rotate", "--home", str(gateway_home.home), "--venue", "alpaca",
                                  "--key-id", NEW_KEY_ID, "--upstream-url", url, stdin=NEW_SECRET.encode() + b"\n")
            seen.append(out.encode())
            await hit("POST", "/v2/orders", json={**ORDER, "symbol": "MSFT"})
            await hit("GET", "/v2/positions")
            await hit("DELETE", "/v2/orders")
            code, out = await cli("status", "--home", str(gateway_home.home), "--json")
            seen.append(out.encode())
            code, out = await cli("keys", "list", "--home", str(gateway_home.home), "--json")
            seen.append(out.encode())
            code, out = await cli("audit", "export", "--home", str(gateway_home.home), "--jsonl")
            seen.append(out.encode())
            connector = aiohttp.UnixConnector(path=str(gw.gateway.home.operator_socket))
            async with aiohttp.ClientSession(connector=connector) as operator:
                for path in ("/metrics", "/status"):
                    async with operator.get(f"http://gateway{path}") as resp:
                        seen.append(await resp.read())
    finally:
        await gw.gateway.stop()
        await runner.cleanup()
    seen.append((Path(gateway_home.home) / "audit" / "audit.log").read_bytes())
    seen.extend(record.getMessage().encode() for record in caplog.records)
    seen.extend(str(record.exc_info).encode() for record in caplog.records if record.exc_info)
    blob = b"\n".join(seen)
    for secret in (BROKER_SECRET, NEW_SECRET, gw.secret, extra_secret):
        for form in _forms(secret):
            assert form not in blob, f"a form of a secret leaked: {form[:6]!r}..."


def test_a_ccxt_upstream_is_live_unless_sandboxed_or_local():
    from gateway.server import is_live

    assert is_live(ServeOptions(venue="ccxt"))
    assert not is_live(ServeOptions(venue="ccxt", sandbox=True))
    assert not is_live(ServeOptions(venue="ccxt", upstream_url="http://127.0.0.1:9000"))
    assert is_live(ServeOptions(venue="alpaca", upstream_url="https://api.alpaca.markets"))
    assert not is_live(ServeOptions(venue="alpaca"))  # Alpaca's paper endpoint by default
