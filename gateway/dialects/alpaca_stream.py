"""Alpaca's trading stream (``GET /stream``, a websocket) served over any ``Backend``.

Register it with one line: ``app.router.add_get("/stream", trade_updates_handler(backend, auth))``.
The events come from ``Backend.order_events``: the paper broker's are its venue's; the gateway's
come from its ledger (a backend without events answers ``listen`` with no streams, as Alpaca
answers a stream it does not offer).

Protocol (see ``gateway.wire.alpaca_stream``): authenticate first (within AUTH_TIMEOUT_S), then
``listen``; every frame the server sends is binary, as paper Alpaca's are. A wrong credential
is answered ``unauthorized`` and the socket closed. A client that does not read its events is
disconnected once MAX_PENDING_EVENTS are waiting, rather than silently skipping one: a client
that reconnects knows to reconcile, one that missed an event does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import WSMsgType, web

from ..errors import GatewayError, InvalidRequest
from ..model import Caller, OrderUpdate, VenueEvent
from ..ports import Authenticator, Backend, Unsubscribe
from ..wire import alpaca_stream as wire

log = logging.getLogger(__name__)

DIALECT = "alpaca"
AUTH_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 16384
MAX_PENDING_EVENTS = 10_000
HEARTBEAT_S = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def trade_updates_handler(backend: Backend, auth: Authenticator) -> Handler:
    """The ``/stream`` route handler. It authenticates in-band (websocket clients send no key
    headers), so it is marked public for the Alpaca middlewares."""

    async def stream(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        session = _Session(ws, backend)
        try:
            caller = await session.authenticate(auth, request.remote)
            if caller is not None:
                await session.serve(caller)
        finally:
            session.stop()
            await ws.close()
        return ws

    stream._alpaca_public = True  # type: ignore[attr-defined]
    return stream


class _Session:
    """One client connection."""

    def __init__(self, ws: web.WebSocketResponse, backend: Backend):
        self.ws = ws
        self.backend = backend
        self.pending: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.unsubscribe: Unsubscribe | None = None
        self.overflowed = False

    async def send(self, message: dict) -> None:
        await self.ws.send_bytes(orjson.dumps(message))

    async def authenticate(self, auth: Authenticator, remote: str | None) -> Caller | None:
        try:
            msg = await asyncio.wait_for(self.ws.receive(), AUTH_TIMEOUT_S)
        except TimeoutError:
            await self.send(wire.authorization(False))
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        try:
            key_id, secret = wire.parse_auth(wire.parse_message(msg.data))
            caller = auth.authenticate(key_id, secret, DIALECT, remote)
        except GatewayError:
            # Unauthorized and malformed alike: never say which part was wrong.
            await self.send(wire.authorization(False))
            return None
        await self.send(wire.authorization(True))
        return caller

    async def serve(self, caller: Caller) -> None:
        writer = asyncio.create_task(self._write())
        try:
            async for msg in self.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    message = wire.parse_message(msg.data)
                    if message.get("action") != "listen":
                        raise InvalidRequest("unknown action: send listen")
                    streams = wire.parse_listen(message)
                except InvalidRequest as exc:
                    await self.send(wire.error(exc.message))
                    break
                await self.send(wire.listening(self._listen(caller, streams)))
        finally:
            self.pending.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _listen(self, caller: Caller, streams: list[str]) -> list[str]:
        """Start or stop trade_updates; the streams now listened to."""
        wanted = wire.TRADE_UPDATES in streams
        if wanted and self.unsubscribe is None:
            self.unsubscribe = self.backend.order_events(caller, self._on_event)
        elif not wanted:
            self.stop()
        return [wire.TRADE_UPDATES] if self.unsubscribe is not None else []

    def _on_event(self, event: VenueEvent) -> None:
        if not isinstance(event, OrderUpdate) or self.overflowed:
            return
        if self.pending.qsize() >= MAX_PENDING_EVENTS:
            log.warning("alpaca stream client is not reading its events; disconnecting it")
            self.overflowed = True
            self.stop()
            self.pending.put_nowait(None)
            return
        self.pending.put_nowait(orjson.dumps(wire.trade_update_to_wire(event)))

    async def _write(self) -> None:
        while (frame := await self.pending.get()) is not None:
            try:
                await self.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError):
                break
        if self.overflowed:
            await self.ws.close()

    def stop(self) -> None:
        unsubscribe, self.unsubscribe = self.unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
