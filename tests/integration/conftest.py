"""Fixtures for end-to-end tests: a real gateway on a real socket, in front of either the
embedded paper venue or a standalone paper-broker process."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.bootstrap import InitResult, init_home
from gateway.venues.paper_engine import DEFAULT_MARKS

from .support import paper_broker_subprocess
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
    with paper_broker_subprocess(port, "--key-id", BROKER_KEY_ID, "--secret", BROKER_SECRET) as process:
        yield PaperBrokerProcess(f"http://127.0.0.1:{port}", BROKER_KEY_ID, BROKER_SECRET, process)


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
