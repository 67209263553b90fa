"""A real HTTP proxy between the gateway and a paper broker that can lose answers on purpose:
how the gateway's handling of uncertain outcomes is tested over real sockets (no mocks)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

BEFORE = "502-before"  # answer 502 without forwarding: the order never reaches the broker
AFTER = "502-after"  # forward, then answer 502: the order is placed, the answer lost
GARBLE = "garble-after"  # forward, then answer 200 with a body that is not an order


@dataclass
class FaultyProxy:
    upstream: str
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (method, path regex) -> modes
    counts: Counter = field(default_factory=Counter)
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
        self.counts[(request.method, request.path)] += 1
        mode = self._mode(request.method, request.path)
        if mode == BEFORE:
            return web.Response(status=502, text="bad gateway")
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

    def total(self, method: str | None = None, path_regex: str | None = None) -> int:
        return sum(
            n
            for (m, p), n in self.counts.items()
            if (method is None or m == method) and (path_regex is None or re.fullmatch(path_regex, p))
        )
