"""Fixtures for end-to-end tests: a real gateway on a real socket, in front of either the
embedded paper venue or a standalone paper-broker process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import InitResult, init_home
from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import (
    mechanics_policy,
    BROKER_KEY_ID,
    BROKER_SECRET,
    PaperBrokerProcess,
    RunningGateway,
    free_port,
    start_gateway,
    store_broker_key,
)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: the operator socket path must stay under the 108-byte limit."""
    path = Path(tempfile.mkdtemp(prefix="gw", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway_home(short_tmp: Path) -> InitResult:
    """A home whose policy keeps the hard ceilings but turns off rails a plumbing test is not
    about (see support.mechanics_policy)."""
    return init_home(short_tmp / "home", policy_text=mechanics_policy())


@pytest.fixture
def default_policy_home(short_tmp: Path) -> InitResult:
    """A home exactly as `gatewayctl init` makes it: the shipped default policy."""
    return init_home(short_tmp / "home")


@pytest.fixture
def paper_broker_process() -> Iterator[PaperBrokerProcess]:
    """`gatewayctl paper-broker` as its own process, on a real socket."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "paper-broker", "--listen", f"127.0.0.1:{port}",
         "--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
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
        yield PaperBrokerProcess(url, BROKER_KEY_ID, BROKER_SECRET, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
async def paper_gateway(gateway_home: InitResult) -> AsyncIterator[RunningGateway]:
    """The gateway on its embedded paper venue."""
    running = await start_gateway(gateway_home, venue="paper")
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def upstream_gateway(gateway_home: InitResult, paper_broker_process: PaperBrokerProcess) -> AsyncIterator[RunningGateway]:
    """The gateway with --venue alpaca pointed at a standalone paper-broker process."""
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(gateway_home)
    running = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        yield running
    finally:
        await running.gateway.stop()
