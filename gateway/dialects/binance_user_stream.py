"""Binance USDⓈ-M futures' user data stream served over any ``Backend``: the listenKey endpoints
and the websocket they open.

Registered with one line each: ``add_listen_key_routes(router, state)`` in the ``/fapi`` route
table (``POST``/``PUT``/``DELETE /fapi/v1/listenKey``) and ``add_socket_routes(app, state)`` on
the root app (``/ws/<listenKey>`` as Binance documents it, and ``/private/ws?listenKey=<key>`` as
ccxt.pro's ``binanceusdm`` builds it from ``urls['api']['ws']['linear']``).

Binance's rules kept here:
- the listenKey endpoints need the API key only (``X-MBX-APIKEY``; no signature), as Binance's
  USER_STREAM security type; a key has at most one listenKey: ``POST`` returns the active one
  (extending it) or a new one, ``PUT`` extends it by LISTEN_KEY_TTL_S, ``DELETE`` closes it
  and its sockets; ``PUT``/``DELETE`` without an active key answer -1125 "This listenKey does
  not exist." in Binance's ``{"code", "msg"}`` shape;
- a key not kept alive expires LISTEN_KEY_TTL_S after its last ``POST``/``PUT``: its sockets
  get ``listenKeyExpired`` and are closed; a socket is closed after MAX_SOCKET_S in any case;
- events are ORDER_TRADE_UPDATE / ALGO_UPDATE / ACCOUNT_UPDATE (``gateway.wire.binance_stream``),
  from ``Backend.order_events`` for the key's owner. A backend without events refuses a
  listenKey (-5000), rather than hand out a stream that never speaks. An ACCOUNT_UPDATE reads
  the wallet, margin mode and mark through the backend (three reads per position change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from ..errors import GatewayError, Unauthorized
from ..model import AssetClass, Caller, OrderUpdate, PositionUpdate, VenueEvent
from ..ports import Unsubscribe
from ..wire import binance as wire
from ..wire import binance_stream as stream_wire

log = logging.getLogger(__name__)

LISTEN_KEY_TTL_S = 3600.0  # Binance: 60 minutes without a keep-alive
MAX_SOCKET_S = 86400.0  # Binance: a connection is closed after 24 hours
MAX_PENDING_MESSAGES = 10_000
HEARTBEAT_S = 30.0
NO_SUCH_KEY = -1125
DIALECT = "binance-futures"  # the dialect's name, as binance_futures authenticates callers
API_KEY_HEADER = "X-MBX-APIKEY"
MAX_API_KEY_LENGTH = 256
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# ``state`` below is the dialect's BinanceState (its backend, auth and clock_ms). This module does
# not import the dialect, so the dialect can register these routes without an import cycle.
_NO_SUCH_KEY_MSG = "This listenKey does not exist."


@dataclass
class _Key:
    key: str
    caller: Caller
    expires_at: float
    closers: set[Callable[[], None]] = field(default_factory=set)


class ListenKeys:
    """The active listenKeys, one per API key."""

    def __init__(self, ttl_s: float = LISTEN_KEY_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_socket_s = MAX_SOCKET_S
        self.clock = clock
        self._by_key: dict[str, _Key] = {}
        self._by_owner: dict[str, _Key] = {}

    def open(self, caller: Caller) -> str:
        entry = self._active(caller.key_id)
        if entry is None:
            entry = _Key(secrets.token_urlsafe(48)[:64], caller, 0.0)
            self._by_key[entry.key] = entry
            self._by_owner[caller.key_id] = entry
        entry.expires_at = self.clock() + self.ttl_s
        return entry.key

    def keep_alive(self, caller: Caller) -> str:
        entry = self._active(caller.key_id)
        if entry is None:
            raise wire.BinanceError(400, NO_SUCH_KEY, _NO_SUCH_KEY_MSG)
        entry.expires_at = self.clock() + self.ttl_s
        return entry.key

    def close(self, caller: Caller) -> None:
        entry = self._active(caller.key_id)
        if entry is None:
            raise wire.BinanceError(400, NO_SUCH_KEY, _NO_SUCH_KEY_MSG)
        self._drop(entry)

    def lookup(self, key: str) -> _Key | None:
        entry = self._by_key.get(key)
        if entry is not None and entry.expires_at <= self.clock():
            self._drop(entry)
            return None
        return entry

    def open_sockets(self) -> int:
        """Sockets being served now, over every key."""
        return sum(len(entry.closers) for entry in self._by_key.values())

    def remaining_s(self, entry: _Key) -> float:
        return entry.expires_at - self.clock()

    def _active(self, owner: str) -> _Key | None:
        entry = self._by_owner.get(owner)
        return self.lookup(entry.key) if entry is not None else None

    def _drop(self, entry: _Key) -> None:
        self._by_key.pop(entry.key, None)
        if self._by_owner.get(entry.caller.key_id) is entry:
            del self._by_owner[entry.caller.key_id]
        for closer in list(entry.closers):
            closer()


def listen_keys(state: Any) -> ListenKeys:
    """The listenKeys of one dialect instance (kept on its shared state)."""
    keys = getattr(state, "_listen_keys", None)
    if keys is None:
        keys = ListenKeys()
        state._listen_keys = keys  # type: ignore[attr-defined]
    return keys


# ---------------------------------------------------------------------------------------
# Routes


def add_listen_key_routes(router: web.UrlDispatcher, state: Any) -> None:
    handlers = _listen_key_handlers(state)
    router.add_post("/v1/listenKey", handlers["POST"])
    router.add_put("/v1/listenKey", handlers["PUT"])
    router.add_delete("/v1/listenKey", handlers["DELETE"])


def add_socket_routes(app: web.Application, state: Any) -> None:
    handler = _socket_handler(state)
    app.router.add_get("/ws/{listen_key}", handler)
    app.router.add_get("/private/ws", handler)


def _public(handler: Handler) -> Handler:
    """No signature (the dialect's signed-request check skips it); the handler checks the key."""
    handler._binance_public = True  # type: ignore[attr-defined]
    return handler


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _owner(request: web.Request, state: Any) -> Caller:
    """USER_STREAM security: the API key names the owner; no signature is needed."""
    key_id = request.headers.get(API_KEY_HEADER)
    if not key_id or len(key_id) > MAX_API_KEY_LENGTH or not key_id.isprintable():
        raise wire.BinanceError(401, wire.BAD_API_KEY, "API-key format invalid.")
    try:
        return state.auth.hmac_secret(key_id, DIALECT, request.remote)[1]
    except Unauthorized:
        raise wire.BinanceError(401, wire.REJECTED_API_KEY, "Invalid API-key, IP, or permissions for action.") from None


def _listen_key_handlers(state: Any) -> dict[str, Handler]:
    keys = listen_keys(state)

    @_public
    async def open_listen_key(request: web.Request) -> web.Response:
        caller = _owner(request, state)
        probe = state.backend.order_events(caller, lambda event: None)
        if probe is None:
            raise wire.BinanceError(400, wire.NOT_SUPPORTED, "The user data stream is not available here.")
        probe()
        return _json({"listenKey": keys.open(caller)})

    @_public
    async def keep_alive_listen_key(request: web.Request) -> web.Response:
        return _json({"listenKey": keys.keep_alive(_owner(request, state))})

    @_public
    async def close_listen_key(request: web.Request) -> web.Response:
        keys.close(_owner(request, state))
        return _json({})

    return {"POST": open_listen_key, "PUT": keep_alive_listen_key, "DELETE": close_listen_key}


def _socket_handler(state: Any) -> Handler:
    @_public
    async def user_stream(request: web.Request) -> web.StreamResponse:
        key = request.match_info.get("listen_key") or request.query.get("listenKey") or ""
        keys = listen_keys(state)
        entry = keys.lookup(key) if len(key) <= 128 else None
        if entry is None:
            return _json({"code": NO_SUCH_KEY, "msg": _NO_SUCH_KEY_MSG}, 400)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
        await ws.prepare(request)
        session = _Session(ws, state, entry, keys)
        await session.run()
        return ws

    return user_stream


class _Session:
    """One socket: the owner's events, encoded, in order, until the key or the socket ends."""

    def __init__(self, ws: web.WebSocketResponse, state: Any, entry: _Key, keys: ListenKeys):
        self.ws, self.state, self.entry, self.keys = ws, state, entry, keys
        self.pending: asyncio.Queue[VenueEvent | None] = asyncio.Queue()
        self.closed = False
        self.started = keys.clock()

    async def run(self) -> None:
        unsubscribe: Unsubscribe | None = self.state.backend.order_events(self.entry.caller, self._on_event)
        if unsubscribe is None:
            await self.ws.close()
            return
        self.entry.closers.add(self._close)
        reader = asyncio.create_task(self._read())
        try:
            await self._write()
        finally:
            unsubscribe()
            self.entry.closers.discard(self._close)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self.ws.close()

    def _on_event(self, event: VenueEvent) -> None:
        if self.closed or not isinstance(event, (OrderUpdate, PositionUpdate)):
            return
        if isinstance(event, PositionUpdate) and event.asset_class is not AssetClass.CRYPTO:
            return  # positions this dialect cannot show (another dialect's account)
        if self.pending.qsize() >= MAX_PENDING_MESSAGES:
            log.warning("binance user stream client is not reading its events; disconnecting it")
            self._close()
            return
        self.pending.put_nowait(event)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pending.put_nowait(None)

    async def _read(self) -> None:
        """Answer what a client sends (Binance answers SUBSCRIBE-style requests with a result);
        the socket ends when the client goes."""
        async for msg in self.ws:
            if msg.type is not WSMsgType.TEXT:
                break
            with contextlib.suppress(ValueError):
                request = orjson.loads(msg.data)
                if isinstance(request, dict) and "id" in request:
                    await self.ws.send_str(orjson.dumps({"result": None, "id": request["id"]}).decode())
        self._close()

    async def _write(self) -> None:
        while True:
            timeout = min(self.keys.remaining_s(self.entry), self.started + self.keys.max_socket_s - self.keys.clock())
            try:
                event = await asyncio.wait_for(self.pending.get(), max(timeout, 0))
            except TimeoutError:
                if self.keys.lookup(self.entry.key) is None:  # expired (not kept alive)
                    await self._send(stream_wire.listen_key_expired(self.entry.key, self.state.clock_ms()))
                    return
                if self.keys.clock() - self.started >= self.keys.max_socket_s:
                    return
                continue
            if event is None:
                return
            for message in await self._encode(event):
                if not await self._send(message):
                    return

    async def _send(self, message: dict) -> bool:
        try:
            await self.ws.send_str(orjson.dumps(message).decode())
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def _encode(self, event: VenueEvent) -> list[dict]:
        now = self.state.clock_ms()
        if isinstance(event, OrderUpdate):
            return stream_wire.order_event_to_wire(event, now) if wire.is_binance_order(event.order) else []
        # A position change: Binance reports the wallet with it; read what the backend knows.
        backend, caller = self.state.backend, self.entry.caller
        account = mark = None
        mode = "cross"
        with contextlib.suppress(GatewayError):
            account = await backend.get_account(caller)
            mode = await backend.get_margin_mode(caller, event.symbol)
            mark = await backend.latest_price(caller, event.symbol, event.asset_class)
        return [stream_wire.account_update_to_wire(event, now, account=account, mark=mark, margin_mode=mode)]
