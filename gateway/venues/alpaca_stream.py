"""The Alpaca venue's event stream: its upstream's ``trade_updates`` websocket (``/stream``).

Connects, authenticates (``{"action": "auth", ...}``), listens to ``trade_updates``, decodes each
update into an ``OrderUpdate`` and hands it to ``publish`` (the venue's ``_publish``). Around
that it reports ``StreamStatus``: connected once the upstream acknowledges the listen, not
connected when the socket drops or cannot be opened (once per outage). It reconnects with
capped exponential backoff (MIN_BACKOFF_S doubling to MAX_BACKOFF_S), reset after a connection
that got as far as listening.

An update that cannot be read is treated as a drop: the connection is closed and reopened, so
the ledger reconciles instead of silently missing an event. Credentials are read per
connection (a rotation applies to the next one) and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from ..errors import GatewayError, InvalidRequest
from ..model import StreamStatus, VenueEvent, utcnow
from ..wire import alpaca_stream as wire

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
HEARTBEAT_S = 30.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class StreamRefused(Exception):
    """The upstream refused the credentials or the listen; said without the credentials."""


def stream_url(base_url: str) -> str:
    """The trading stream of a trading API base URL: https://paper-api.alpaca.markets ->
    wss://paper-api.alpaca.markets/stream (http -> ws for a local paper broker)."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/stream", "", ""))


class AlpacaTradeStream:
    def __init__(
        self,
        url: str,
        credentials: Callable[[], tuple[str, str]],
        publish: Callable[[VenueEvent], None],
        *,
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ):
        self.url = url
        self._credentials = credentials
        self._publish = publish
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._connected = False
        self._reported_down = False
        self._listened = False
        self.connections = 0  # successful (listening) connections so far
        self.attempts = 0  # connection attempts so far

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="alpaca-trade-updates")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._connected:
            self._status(False, "stream stopped")

    async def _run(self) -> None:
        backoff = self.min_backoff_s
        async with aiohttp.ClientSession(trust_env=False) as session:
            while not self._stopping.is_set():
                reason = await self._connect_once(session)
                if self._connected or not self._reported_down:
                    self._status(False, reason)
                if self._stopping.is_set():
                    return
                if self._listened:
                    backoff = self.min_backoff_s
                log.warning("alpaca trade stream down (%s); reconnecting in %.1f s", reason, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _connect_once(self, session: aiohttp.ClientSession) -> str:
        """One connection, from handshake to drop; the reason it ended."""
        self._listened = False
        self.attempts += 1
        try:
            key_id, secret = self._current_credentials()
            async with session.ws_connect(
                self.url, heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES, autoclose=True
            ) as ws:
                await self._handshake(ws, key_id, secret)
                self._listened = True
                self.connections += 1
                self._status(True, "listening to trade_updates")
                return await self._read(ws)
        except StreamRefused as exc:
            return str(exc)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"connection failed ({type(exc).__name__})"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the stream silently dead
            log.error("alpaca trade stream failed (%s); reconnecting", type(exc).__name__)
            return f"internal error ({type(exc).__name__})"

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse, key_id: str, secret: str) -> None:
        await ws.send_bytes(orjson.dumps(wire.auth_message(key_id, secret)))
        if not wire.is_authorized(await self._next(ws)):
            raise StreamRefused("the upstream refused the stream credentials")
        await ws.send_bytes(orjson.dumps(wire.listen_message([wire.TRADE_UPDATES])))
        while True:
            streams = wire.listened_streams(await self._next(ws))
            if streams is None:
                continue  # anything before the acknowledgement
            if wire.TRADE_UPDATES not in streams:
                raise StreamRefused("the upstream did not grant trade_updates")
            return

    async def _next(self, ws: aiohttp.ClientWebSocketResponse):
        msg = await asyncio.wait_for(ws.receive(), HANDSHAKE_TIMEOUT_S)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise StreamRefused("the upstream closed the stream during the handshake")
        try:
            return wire.parse_server_message(msg.data)
        except InvalidRequest:
            raise StreamRefused("the upstream sent an unreadable handshake message") from None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            try:
                message = wire.parse_server_message(msg.data)
                if message.get("stream") != wire.TRADE_UPDATES:
                    continue
                update = wire.trade_update_from_wire(message.get("data"))
            except InvalidRequest as exc:
                log.error("alpaca trade stream: unreadable update (%s); reconnecting to reconcile", exc.message)
                return "unreadable update"
            if update is not None:
                self._publish(update)
        return "connection closed by the upstream"

    def _current_credentials(self) -> tuple[str, str]:
        failed = False
        try:
            key_id, secret = self._credentials()
        except GatewayError:
            raise StreamRefused("no usable broker credentials") from None
        except Exception:  # noqa: BLE001 - whatever the key store raised, it may name the key
            failed = True
        if failed or not key_id or not secret:
            raise StreamRefused("no usable broker credentials")
        return key_id, secret

    def _status(self, connected: bool, reason: str) -> None:
        self._connected = connected
        self._reported_down = not connected
        self._publish(StreamStatus(connected=connected, at=utcnow(), reason=reason))
