"""Alpaca's market data streams served to bots: ``/v2/iex``, ``/v2/sip``, ``/v2/test``,
``/v1beta3/crypto/us``, ``/v1beta1/indicative`` and ``/v1beta1/opra`` (websockets).

Register with one line: ``mount_data_streams(app, backend, auth)``.

Protocol, as Alpaca's: on connect the server sends ``[{"T":"success","msg":"connected"}]``; the
client authenticates with ``{"action":"auth","key","secret"}`` (here: its gateway credential)
within AUTH_TIMEOUT_S, then sends ``subscribe``/``unsubscribe`` with channel lists and gets
``{"T":"subscription", ...}`` back, then data. JSON text frames by default; msgpack binary frames
when the client's upgrade request says ``Content-Type: application/msgpack`` (alpaca-py does).
Errors are Alpaca's ``{"T":"error","code","msg"}``; after 401/402/404/406 the socket is closed.

The data come from the venue's feeds through one ``FeedHub`` (one upstream connection per feed,
fanned out to every bot). A client that does not read is disconnected with 407 slow client
once MAX_PENDING frames wait, rather than silently losing data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from ..errors import GatewayError, InvalidRequest, UpstreamUnavailable
from ..market import NotServed
from ..model import Caller
from ..ports import STREAM_FEEDS, Authenticator, Backend, MarketTick
from ..wire import alpaca_data_stream as wire
from .data_stream_hub import FeedHub, FeedSession

log = logging.getLogger(__name__)

DIALECT = "alpaca"
AUTH_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 65536
MAX_SYMBOLS = 1000  # per connection, across channels; beyond it: 405 symbol limit exceeded
MAX_PENDING = 10_000
HEARTBEAT_S = 30.0


def mount_data_streams(app: web.Application, backend: Backend, auth: Authenticator) -> None:
    """Serve every feed's path on ``app`` (the root app: the paths are outside any sub-app's)."""
    holder: dict[str, FeedHub] = {}

    def hub() -> FeedHub:
        if "hub" not in holder:
            holder["hub"] = FeedHub(backend.market_streams())
        return holder["hub"]

    async def close_hub(_app: web.Application) -> None:
        if "hub" in holder:
            await holder["hub"].close()

    for feed in STREAM_FEEDS:
        app.router.add_get(f"/{feed}", _handler(feed, hub, auth))
    app.on_cleanup.append(close_hub)


def _handler(feed: str, hub, auth: Authenticator):
    async def stream(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        packed = request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/msgpack"
        session = _Session(ws, feed, hub(), packed)
        try:
            await session.send([wire.success("connected")])
            caller = await session.authenticate(auth, request.remote)
            if caller is not None:
                await session.serve(caller)
        finally:
            await session.stop()
            await ws.close()
        return ws

    stream._alpaca_public = True  # type: ignore[attr-defined]  # authenticated in-band
    return stream


class _Session:
    def __init__(self, ws: web.WebSocketResponse, feed: str, hub: FeedHub, packed: bool):
        self.ws = ws
        self.feed = feed
        self.asset_class = STREAM_FEEDS[feed]
        self.hub = hub
        self.packed = packed
        self.member: FeedSession | None = None
        self.pending: asyncio.Queue[list | None] = asyncio.Queue()
        self.slow = False

    async def send(self, messages: list[dict]) -> None:
        frame = wire.encode(messages, self.packed)
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def _receive_action(self, timeout: float | None) -> dict | None:
        msg = await asyncio.wait_for(self.ws.receive(), timeout) if timeout else await self.ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        return wire.parse_action(msg.data)

    async def authenticate(self, auth: Authenticator, remote: str | None) -> Caller | None:
        deadline = asyncio.get_running_loop().time() + AUTH_TIMEOUT_S
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await self._receive_action(max(left, 0.001))
            except TimeoutError:
                await self.send([wire.error(wire.AUTH_TIMEOUT)])
                return None
            except InvalidRequest:
                await self.send([wire.error(wire.INVALID_SYNTAX)])
                continue
            if message is None:
                return None
            if message["action"] != "auth":
                await self.send([wire.error(wire.NOT_AUTHENTICATED)])
                return None
            key, secret = message.get("key"), message.get("secret")
            try:
                if not isinstance(key, str) or not isinstance(secret, str):
                    raise InvalidRequest("malformed auth")
                caller = auth.authenticate(key, secret, DIALECT, remote)
            except GatewayError:
                # A wrong key and a malformed one alike: never say which part was wrong.
                await self.send([wire.error(wire.AUTH_FAILED)])
                return None
            member = FeedSession(caller.key_id, self._deliver)
            if not self.hub.join(self.feed, member):
                await self.send([wire.error(wire.CONNECTION_LIMIT)])
                return None
            self.member = member
            await self.send([wire.success("authenticated")])
            return caller

    async def serve(self, caller: Caller) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while not self.slow:
                try:
                    message = await self._receive_action(None)
                except InvalidRequest:
                    await self.send([wire.error(wire.INVALID_SYNTAX)])
                    continue
                if message is None:
                    break
                await self._act(message)
        finally:
            self.pending.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _act(self, message: dict) -> None:
        action = message["action"]
        if action == "auth":
            await self.send([wire.error(wire.ALREADY_AUTHENTICATED)])
            return
        if action not in ("subscribe", "unsubscribe"):
            await self.send([wire.error(wire.INVALID_SYNTAX)])
            return
        try:
            channels = wire.parse_channels(message, self.asset_class)
        except InvalidRequest:
            await self.send([wire.error(wire.INVALID_SYNTAX)])
            return
        except ValueError:
            await self.send([wire.error(wire.INVALID_ACTION)])
            return
        assert self.member is not None
        subs = {c: set(s) for c, s in self.member.subscriptions.items()}
        for channel, symbols in channels.items():
            if action == "subscribe":
                subs.setdefault(channel, set()).update(symbols)
            else:
                subs.get(channel, set()).difference_update(symbols)
        if len(set().union(*subs.values()) if subs else ()) > MAX_SYMBOLS:
            await self.send([wire.error(wire.SYMBOL_LIMIT)])
            return
        previous, self.member.subscriptions = self.member.subscriptions, {c: s for c, s in subs.items() if s}
        try:
            await self.hub.resubscribe(self.feed)
        except NotServed:
            self.member.subscriptions = previous
            await self.send([wire.error(wire.INSUFFICIENT_SUBSCRIPTION)])
            return
        except UpstreamUnavailable:
            self.member.subscriptions = previous
            await self.send([wire.error(wire.INTERNAL_ERROR)])
            return
        await self.send([wire.subscription(self.asset_class, self.member.subscriptions)])

    def _deliver(self, tick: MarketTick) -> None:
        if self.slow:
            return
        if self.pending.qsize() >= MAX_PENDING:
            log.warning("market data stream client is not reading; disconnecting it")
            self.slow = True
            self.pending.put_nowait([wire.error(wire.SLOW_CLIENT)])
            self.pending.put_nowait(None)
            return
        self.pending.put_nowait([wire.tick_to_wire(tick, self.asset_class)])

    async def _write(self) -> None:
        while (messages := await self.pending.get()) is not None:
            try:
                await self.send(messages)
            except (ConnectionError, RuntimeError):
                break
        if self.slow:
            await self.ws.close()

    async def stop(self) -> None:
        member, self.member = self.member, None
        if member is not None:
            await self.hub.leave(self.feed, member)
