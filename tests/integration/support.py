"""Helpers shared by the end-to-end tests (fixtures are in conftest.py)."""


from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.bootstrap import InitResult
from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault
from gateway.server import Gateway, ServeOptions

def mechanics_policy() -> str:
    """The shipped default with the rails that plumbing tests are not about consciously turned
    off (stop losses, duplicate windows, rate limits, collars, counts). Tests of those rules use
    the shipped default itself (the `default_policy_home` fixture). Hard ceilings stay as shipped."""
    import yaml

    from gateway.bootstrap import default_policy_text

    doc = yaml.safe_load(default_policy_text())
    for rail in ("duplicate_window_s", "orders_per_second", "orders_per_minute", "orders_per_day",
                 "replaces_per_second", "replaces_per_minute", "replaces_per_day", "price_collar_pct",
                 "max_open_positions", "min_cash_buffer_pct", "max_risk_per_trade_pct", "max_sector_pct",
                 "max_order_notional"):
        doc["account"][rail] = False
    for rules in doc["asset_classes"].values():
        rules["stop_loss"] = {"mode": "off"}
        rules["universe_size"] = False
    doc["description"] = "Mechanics tests: every rail not under test is consciously off."
    return yaml.safe_dump(doc, sort_keys=False)


BROKER_KEY_ID = "PKUPSTREAM0000000042"
BROKER_SECRET = "upstream-broker-secret-do-not-leak-5b2e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PaperBrokerProcess:
    url: str
    key_id: str
    secret: str
    process: subprocess.Popen

    async def set_prices(self, prices: dict) -> None:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.post(f"{self.url}/_paper/prices", json=prices) as resp:
                assert resp.status == 200, await resp.text()

    async def orders(self) -> list[dict]:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.get(f"{self.url}/v2/orders", params={"status": "all", "limit": "500"}) as resp:
                assert resp.status == 200
                return await resp.json()

    async def open_orders(self) -> list[dict]:
        """Every open order at the broker, paged oldest first the way Alpaca pages."""
        found: dict[str, dict] = {}
        after = None
        async with aiohttp.ClientSession(headers=self.headers) as session:
            while True:
                params = {"status": "open", "limit": "500", "direction": "asc"}
                if after:
                    params["after"] = after
                async with session.get(f"{self.url}/v2/orders", params=params) as resp:
                    assert resp.status == 200
                    page = await resp.json()
                fresh = [o for o in page if o["id"] not in found]
                found.update((o["id"], o) for o in fresh)
                if len(page) < 500 or not fresh:
                    return list(found.values())
                after = fresh[-1]["submitted_at"]

    @property
    def headers(self) -> dict:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str
    key_id: str
    secret: str
    init: InitResult

    @property
    def headers(self) -> dict:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}


async def start_gateway(init: InitResult, **options) -> RunningGateway:
    options.setdefault("port", 0)
    options.setdefault("reconcile_interval_s", 0.5)
    gateway = Gateway(Home.at(init.home), ServeOptions(**options))
    await gateway.start()
    await gateway.listen()
    return RunningGateway(gateway, gateway.base_url, init.bot_key_id, init.bot_secret, init)


def store_broker_key(init: InitResult, key_id: str = BROKER_KEY_ID, secret: str = BROKER_SECRET) -> None:
    BrokerKeys(Vault.open(Home.at(init.home))).set("alpaca", key_id, secret)


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def configure(home: Path, **settings) -> None:
    path = Path(home) / "gateway.json"
    config = orjson.loads(path.read_bytes())
    config.update(settings)
    path.write_bytes(orjson.dumps(config))


@contextlib.contextmanager
def paper_broker_subprocess(port: int, *args: str):
    """`gatewayctl paper-broker --listen 127.0.0.1:PORT ARGS...` as its own process, once it
    accepts connections; terminated on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "paper-broker", "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"paper broker did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


HOLD_LIMIT_S = 5.0  # how long AuditFsyncGate holds at most: well under the audit log's 10 s watchdog


class AuditFsyncGate:
    """Holds the audit log's fsync of the batch that carries a chosen record.

    The AuditLog is the real one: it looks ``os.fdatasync`` up at call time (documented for
    tests), and calls it from its worker thread, so holding it there stops exactly one batch
    between "written" and "durable" without touching the event loop."""

    def __init__(self, log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log_path = log_path
        self.loop = asyncio.get_running_loop()
        self.held = asyncio.Event()
        self._release = threading.Event()
        self._marker: bytes | None = None
        self._real = getattr(os, "fdatasync", os.fsync)
        monkeypatch.setattr(os, "fdatasync", self._sync)

    def hold(self, marker: str) -> None:
        """Hold the first audit fsync after a record containing ``marker`` was written."""
        self._release.clear()
        self.held.clear()
        self._marker = marker.encode()

    def release(self) -> None:
        self._release.set()

    def _sync(self, fd: int) -> None:
        marker = self._marker
        if marker is not None and self._is_audit_log(fd) and marker in self.log_path.read_bytes():
            self._marker = None
            self.loop.call_soon_threadsafe(self.held.set)
            self._release.wait(HOLD_LIMIT_S)
        self._real(fd)

    def _is_audit_log(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.log_path))
        except FileNotFoundError:
            return False
