"""The bot-facing TCP listener, hardened against connection exhaustion (slowloris).

- A request head must be complete within ``header_timeout_s`` of the connection being opened,
  or of the first byte of a later request; otherwise the gateway closes the connection. The
  deadline is not extended by partial data (a byte a second does not keep it open). Between
  requests an idle keep-alive connection is closed after ``IDLE_TIMEOUT_S`` (aiohttp's
  keep-alive timer, whose default is an hour).
- At most ``max_connections`` are open at once, so the process never runs out of file
  descriptors (where every accept then fails and asyncio logs each failure). At the cap a new
  connection replaces the oldest one that has no request in progress (a half-open one, or an
  idle keep-alive), so holding sockets open cannot lock bots out; only when every connection is
  busy is the new one closed.
- ``raise_fd_limit`` lifts the soft RLIMIT_NOFILE to the hard limit at start.
- Connection-level error lines are rate-limited (``gateway.log_rate``), so an attack cannot fill
  the disk with them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web

log = logging.getLogger("gateway.listener")

HEADER_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 4096
FD_RESERVE = 256  # descriptors kept for the audit log, the venue, the operator plane


def raise_fd_limit(ceiling: int = 1 << 20) -> int:
    """Lift the soft limit on open files to the hard limit (bounded); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return ceiling if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit above %d: %s", soft, exc)
        return soft
    return target


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """At most ``wanted`` connections, and never so many that the process runs out of descriptors."""
    soft = raise_fd_limit()
    return max(16, min(wanted, soft - FD_RESERVE))


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


BUSY = web.AppKey("listener_busy", set)
DEADLINES = web.AppKey("listener_deadlines", dict)


@web.middleware
async def _mark_busy(request: web.Request, handler):
    """A request head arrived: its deadline is met. Connections serving a request (or a
    stream) are never evicted."""
    protocol = request.protocol
    deadline = request.app[DEADLINES].get(protocol)
    if deadline is not None:
        deadline.disarm()
    busy: set = request.app[BUSY]
    busy.add(protocol)
    try:
        return await handler(request)
    finally:
        busy.discard(protocol)


class _HeadDeadline(asyncio.Protocol):
    """Stands in front of aiohttp's connection handler, forwarding every event to it, and
    closes the connection when a request head is not complete in time (see the module doc)."""

    def __init__(self, inner: asyncio.Protocol, busy: set, deadlines: dict, timeout_s: float):
        self.inner, self.busy, self.deadlines, self.timeout_s = inner, busy, deadlines, timeout_s
        self._timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self._expired)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.inner not in self.busy:
            self.inner.force_close()  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.deadlines[self.inner] = self
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self.inner not in self.busy:
            self._arm()  # the first bytes of a new request head
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disarm()
        self.deadlines.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _CappedFactory:
    """aiohttp's protocol factory with the connection cap."""

    def __init__(self, server: web.Server, cap: int, app: web.Application, header_timeout_s: float):
        self.server = server
        self.cap = cap
        self.busy = app[BUSY]
        self.deadlines = app[DEADLINES]
        self.header_timeout_s = header_timeout_s

    def __call__(self) -> asyncio.Protocol:
        # Oldest first; a connection already closed (transport gone) is on its way out.
        connections = [c for c in self.server.connections if c.transport is not None]
        if len(connections) >= self.cap:
            idle = next((c for c in connections if c not in self.busy), None)
            if idle is None:
                log.warning("connection refused: all %d connections are serving requests", self.cap)
                return _Refused()
            log.warning("connection cap (%d) reached: closing the oldest connection without a request", self.cap)
            idle.force_close()
        return _HeadDeadline(self.server(), self.busy, self.deadlines, self.header_timeout_s)


class GuardedTCPSite(web.BaseSite):
    """``web.TCPSite`` with the request-head deadline and the connection cap, for a runner made
    by ``guarded_runner``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        backlog: int = 512,
    ):
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._cap, self._header_timeout_s = host, port, max_connections, header_timeout_s

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def sockets(self) -> list:
        return list(self._server.sockets) if self._server is not None else []

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            _CappedFactory(server, self._cap, self._runner.app, self._header_timeout_s), self._host, self._port, backlog=self._backlog, reuse_address=True
        )


def guarded_runner(app: web.Application, *, idle_timeout_s: float = IDLE_TIMEOUT_S, **kwargs: Any) -> web.AppRunner:
    """A runner for ``app`` (not yet started); serve it with ``GuardedTCPSite``."""
    app[BUSY] = set()
    app[DEADLINES] = {}
    app.middlewares.insert(0, _mark_busy)
    return web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s, **kwargs)
