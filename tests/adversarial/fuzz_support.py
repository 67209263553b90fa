"""A gateway (`gatewayctl serve`) in front of a standalone paper broker, both as processes on
real sockets, for fuzzing; and the checks every fuzzed answer must pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import requests

from gateway.bootstrap import init_home
from gateway.venues.paper_engine import DEFAULT_MARKS
from tests.integration.support import (
    BROKER_KEY_ID,
    BROKER_SECRET,
    configure,
    free_port,
    mechanics_policy,
    paper_broker_subprocess,
    store_broker_key,
)

# Examples per fuzzing test; CI runs the default (a few thousand over the suite), a nightly run more.
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "1000"))
# The hard ceilings of the mechanics policy the fuzzing gateway runs.
MAX_POSITION_PCT = Decimal("2")
MAX_EXPOSURE_PCT = Decimal("20")
TOLERANCE = Decimal("1.005")  # fills at the broker's price may differ from the reference by a hair


@dataclass
class FuzzTarget:
    url: str
    broker_url: str
    key_id: str
    secret: str

    @property
    def alpaca_headers(self) -> dict:
        return {"APCA-API-KEY-ID": self.key_id, "APCA-API-SECRET-KEY": self.secret}

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.secret, BROKER_SECRET)


def _wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gateway did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)


def serve_for_fuzzing():
    """Yields a FuzzTarget; the rejection-burst guard is off so fuzzing reaches deep paths."""
    root = Path(tempfile.mkdtemp(prefix="gwf", dir="/tmp"))
    broker_port, port = free_port(), free_port()
    try:
        init = init_home(root / "home", policy_text=mechanics_policy())
        configure(init.home, rejection_burst="off")
        store_broker_key(init)
        with paper_broker_subprocess(broker_port, "--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET):
            broker_url = f"http://127.0.0.1:{broker_port}"
            prices = {symbol: str(price) for symbol, price in DEFAULT_MARKS.items()}
            broker_headers = {"APCA-API-KEY-ID": BROKER_KEY_ID, "APCA-API-SECRET-KEY": BROKER_SECRET}
            requests.post(f"{broker_url}/_paper/prices", json=prices, headers=broker_headers, timeout=5).raise_for_status()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--home", str(init.home), "--listen", f"127.0.0.1:{port}",
                 "--venue", "alpaca", "--upstream-url", broker_url],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "GATEWAY_LOG_LEVEL": "ERROR"},
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_healthy(url, gateway)
                yield FuzzTarget(url, broker_url, init.bot_key_id, init.bot_secret)
            finally:
                gateway.terminate()
                try:
                    gateway.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    gateway.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_nothing_forwarded_breaks_a_limit(target: FuzzTarget) -> None:
    """What the broker holds after fuzzing stays within the policy's position and exposure limits."""
    headers = {"APCA-API-KEY-ID": BROKER_KEY_ID, "APCA-API-SECRET-KEY": BROKER_SECRET}
    account = requests.get(f"{target.broker_url}/v2/account", headers=headers, timeout=5).json()
    positions = requests.get(f"{target.broker_url}/v2/positions", headers=headers, timeout=5).json()
    equity = Decimal(account["equity"])
    exposure = Decimal(0)
    for position in positions:
        value = abs(Decimal(position["market_value"]))
        exposure += value
        assert value <= equity * MAX_POSITION_PCT / 100 * TOLERANCE, position
    assert exposure <= equity * MAX_EXPOSURE_PCT / 100 * TOLERANCE, (exposure, equity)


def assert_well_formed(response: requests.Response, target: FuzzTarget, *, dialect: str) -> None:
    """No 5xx; an error is JSON in the dialect's own shape; no secret in any answer."""
    text = response.text
    for secret in target.secrets:
        assert secret not in text
    assert response.status_code < 500, (response.status_code, text[:500])
    if response.status_code < 400:
        return
    body = response.json()
    if dialect == "alpaca":
        assert isinstance(body, dict) and isinstance(body.get("code"), int) and isinstance(body.get("message"), str), body
    else:
        assert isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] < 0, body
        assert isinstance(body.get("msg"), str), body
