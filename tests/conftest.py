"""Shared test fixtures: a free local port, serving an aiohttp app on a real socket, and a running
standalone paper broker.

Prefer the fixtures to importing from this module (``tests/integration/conftest.py`` is another
``conftest``)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from aiohttp import web

from gateway.paper_broker import build_paper_broker_app
from gateway.venues.paper import PaperVenue

PAPER_KEY_ID = "PKTESTKEY0000000001"
PAPER_SECRET = "paper-secret-never-echoed-7f3a9c1e"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that must be given a number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningPaperBroker:
    url: str
    port: int
    key_id: str
    secret: str
    venue: PaperVenue


async def start_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 on a port bound here (no race with other tests)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


@pytest.fixture
def free_tcp_port() -> int:
    """A port nothing listens on (for connection-refused tests)."""
    return free_port()


@pytest.fixture
async def serve_app() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """``url = await serve_app(app)`` serves ``app`` on 127.0.0.1 until the test ends."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner, port = await start_app(app)
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    try:
        yield serve
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.fixture
async def paper_broker() -> AsyncIterator[RunningPaperBroker]:
    """The standalone paper broker (Alpaca dialect) on a real socket, $100k equity."""
    venue = PaperVenue(starting_equity=Decimal(100000))
    app = build_paper_broker_app(venue, key_id=PAPER_KEY_ID, secret=PAPER_SECRET)
    runner, port = await start_app(app)
    try:
        yield RunningPaperBroker(f"http://127.0.0.1:{port}", port, PAPER_KEY_ID, PAPER_SECRET, venue)
    finally:
        await runner.cleanup()


# -- the compatibility matrix's marker (tests/compat.py, scripts/compat-matrix.py) -------------


def pytest_configure(config: pytest.Config) -> None:
    from tests.compat import MARKER_HELP

    config.addinivalue_line("markers", MARKER_HELP)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.compat import rows_of

    for item in items:
        rows_of(item)  # a malformed compat marker fails collection
