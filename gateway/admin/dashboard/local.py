"""`gatewayctl dashboard` without a TCP operator listener: serve the page on a loopback port,
with the same login (the home's operator token), reading the gateway through its unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from ...home import Home
from .app import dashboard_app
from .unix import SocketSource


async def serve_local(home: Home, port: int = 0, *, announce: Callable[[str], None] = print,
                      stop: asyncio.Event | None = None) -> None:
    source = SocketSource(str(home.operator_socket))
    root = web.Application()
    root.add_subapp("/dashboard", dashboard_app(source, home.operator_token.read_bytes().strip()))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    announce(f"http://127.0.0.1:{bound}/dashboard")
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        await source.close()
