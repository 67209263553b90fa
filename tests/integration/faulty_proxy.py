"""A real HTTP proxy between the gateway and a paper broker that can lose answers on purpose:
how the gateway's handling of uncertain outcomes is tested over real sockets (no mocks)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

BEFORE = "502-before"  # answer 502 without forwarding: the order never reaches the broker
AFTER = "502-after"  # forward, then answer 502: the order is placed, the answer lost
GARBLE = "garble-after"  # forward, then answer 200 with a body that is not an order
REFUSE = "422-before"  # the broker refuses it outright (nothing placed)
PASS = "pass"  # this one goes through untouched


@dataclass
class FaultyProxy:
    upstream: str
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (method, path regex) -> modes
    counts: Counter = field(default_factory=Counter)
    log: list[tuple[str, str]] = field(default_factory=list)  # every request, in order
    _session: aiohttp.ClientSession | None = None

    def fail(self, method: str, path_regex: str, *modes: str) -> None:
        """The next len(modes) matching requests fail in these ways, in order."""
        self.faults.setdefault((method, path_regex), []).extend(modes)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _mode(self, method: str, path: str) -> str | None:
        for (m, pattern), modes in self.faults.items():
            if m == method and re.fullmatch(pattern, path) and modes:
                return modes.pop(0)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._pipe_websocket(request)
        self.counts[(request.method, request.path)] += 1
        self.log.append((request.method, request.path))
        mode = self._mode(request.method, request.path)
        if mode == BEFORE:
            return web.Response(status=502, text="bad gateway")
        if mode == REFUSE:
            return web.json_response({"code": 42210000, "message": "order refused by the test proxy"}, status=422)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=await request.read(), headers=headers
        ) as upstream:
            body = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type", "application/json")
        if mode == AFTER:
            return web.Response(status=502, text="bad gateway")
        if mode == GARBLE:
            return web.Response(status=200, body=b"{}", content_type="application/json")
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    async def _pipe_websocket(self, request: web.Request) -> web.StreamResponse:
        """Streams pass through untouched (and uncounted: they are not REST requests)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)
        url = self.upstream.replace("http", "ws", 1) + request.path_qs
        async with self._session.ws_connect(url) as upstream:

            async def pump(source, sink) -> None:
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await sink.send_bytes(message.data)
                    else:
                        break
                await sink.close()

            await asyncio.gather(pump(downstream, upstream), pump(upstream, downstream), return_exceptions=True)
        return downstream

    def total(self, method: str | None = None, path_regex: str | None = None) -> int:
        return sum(
            n
            for (m, p), n in self.counts.items()
            if (method is None or m == method) and (path_regex is None or re.fullmatch(path_regex, p))
        )
