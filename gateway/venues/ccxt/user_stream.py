"""The ccxt venue's event stream for Binance USDⓈ-M: the user data stream, straight over aiohttp.

Why not ccxt.pro's ``watch_orders``: it hands out unified orders without the execution (this
fill's quantity and price) and merges algo and plain orders by its own rules; the ledger needs
each execution exactly once. So the listenKey is managed through ccxt's own signed REST calls
(``fapiPrivatePostListenKey`` / ``Put`` / ``Delete``: the venue's credentials, URLs and error
translation) and the socket is read directly, decoded by ``gateway.wire.binance_stream``.

- The socket URL follows ccxt.pro's rule for ``urls['api']['ws']['linear']`` (``.../ws`` ->
  ``.../private/ws?listenKey=KEY``). Without it (plain ccxt), Binance's own stream host is used for
  Binance's REST hosts (``fapi.binance.com`` -> ``wss://fstream.binance.com``; the demo/testnet
  hosts -> ``wss://fstream.binancefuture.com``), and the REST host itself for any other (a paper
  broker or a gateway).
- The key is kept alive every KEEPALIVE_S (Binance expires it after 60 minutes); a failed
  keep-alive, ``listenKeyExpired`` or a dropped socket ends the connection and a new key is taken.
- ``StreamStatus`` is published on every connect and drop (once per outage while down); the
  reconnect backoff doubles from MIN_BACKOFF_S to MAX_BACKOFF_S.
- A fired conditional order trades as another order (ALGO_UPDATE's ``ai``): its trades are
  reported under the algo order's id and client id, which is what the venue returned for it.
- A message that cannot be read ends the connection (the ledger reconciles after the reconnect)
  instead of being skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import OrderedDict
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ...errors import GatewayError, InvalidRequest
from ...model import OrderUpdate, StreamStatus, VenueEvent, utcnow
from ...wire import binance_stream as wire

log = logging.getLogger(__name__)

KEEPALIVE_S = 30 * 60.0  # half of Binance's 60-minute expiry
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HEARTBEAT_S = 30.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_TRIGGERED = 10_000
SUPPORTED_EXCHANGES = ("binanceusdm", "binance")
_BINANCE_STREAM_HOSTS = {
    "fapi.binance.com": "wss://fstream.binance.com/ws",
    "testnet.binancefuture.com": "wss://fstream.binancefuture.com/ws",
    "demo-fapi.binance.com": "wss://fstream.binancefuture.com/ws",
}


def supports_user_stream(exchange_id: str, options: dict) -> bool:
    """USD-M futures only: ``binanceusdm``, or ``binance`` trading futures (``defaultType``
    future or swap). A spot venue's markets share the futures' symbol ids, so a futures stream
    would be misread as its own."""
    if exchange_id == "binanceusdm":
        return True
    return exchange_id == "binance" and options.get("defaultType") in ("future", "swap")


def private_ws_url(exchange: Any, listen_key: str) -> str:
    ws = exchange.urls.get("api", {}).get("ws")
    base = ws.get("linear") if isinstance(ws, dict) else None
    if not isinstance(base, str):
        rest = urlsplit(exchange.urls["api"]["fapiPrivate"])
        host = rest.hostname or ""
        base = _BINANCE_STREAM_HOSTS.get(host) or urlunsplit((rest.scheme, rest.netloc, "/ws", "", ""))
    parts = urlsplit(base)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if path.endswith("/ws"):
        return urlunsplit((scheme, parts.netloc, path[:-3] + "/private/ws", f"listenKey={listen_key}", ""))
    return urlunsplit((scheme, parts.netloc, path.rstrip("/") + "/" + listen_key, "", ""))


class _Ended(Exception):
    """A connection ended, for ``reason``; ``listened``: it got as far as the socket."""

    def __init__(self, reason: str, listened: bool = False):
        super().__init__(reason)
        self.listened = listened


class BinanceUserStream:
    """Runs beside a ``CcxtVenue``: ``venue._ready()`` gives the exchange (credentials current,
    markets loaded), ``venue._call`` translates ccxt's errors, ``venue._markets`` maps symbols,
    and events go to ``venue._publish``."""

    def __init__(
        self,
        venue: Any,
        *,
        keepalive_s: float = KEEPALIVE_S,
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ):
        self.venue = venue
        self.keepalive_s = keepalive_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.connections = 0
        self.attempts = 0
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._connected = False
        self._reported_down = False
        self._listen_key: str | None = None
        self._symbols: tuple[int, dict[str, str]] = (0, {})
        self._triggered: OrderedDict[str, tuple[str, str]] = OrderedDict()  # placed id -> (algo id, client id)
        self._algo_clients: OrderedDict[str, str] = OrderedDict()  # algo id -> its client id

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="binance-user-stream")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._listen_key is not None:
            # Best effort: a key left open simply expires after 60 minutes.
            with contextlib.suppress(Exception):
                exchange = self.venue._exchange
                if exchange is not None:
                    await asyncio.wait_for(self.venue._call(exchange.fapiPrivateDeleteListenKey), 5)
            self._listen_key = None
        if self._connected:
            self._status(False, "stream stopped")

    # -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.min_backoff_s
        async with aiohttp.ClientSession(trust_env=False) as session:
            while not self._stopping.is_set():
                listened = False
                try:
                    self.attempts += 1
                    await self._connect_once(session)
                    reason = "connection closed by the exchange"
                except _Ended as exc:
                    reason, listened = str(exc), exc.listened
                except GatewayError as exc:
                    reason = exc.message
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    reason = f"connection failed ({type(exc).__name__})"
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must not leave the stream silently dead
                    log.error("%s user data stream failed (%s); reconnecting", self.venue.exchange_id, type(exc).__name__)
                    reason = f"internal error ({type(exc).__name__})"
                if self._connected or not self._reported_down:
                    self._status(False, reason)
                if self._stopping.is_set():
                    return
                if listened:
                    backoff = self.min_backoff_s
                log.warning("%s user data stream down (%s); reconnecting in %.1f s", self.venue.exchange_id, reason, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _connect_once(self, session: aiohttp.ClientSession) -> None:
        exchange = await self.venue._ready()
        answer = await self.venue._call(exchange.fapiPrivatePostListenKey, mutating=True)
        key = answer.get("listenKey") if isinstance(answer, dict) else None
        if not isinstance(key, str) or not key:
            raise _Ended("the exchange gave no listenKey")
        self._listen_key = key
        async with session.ws_connect(
            private_ws_url(exchange, key), heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES
        ) as ws:
            self.connections += 1
            self._status(True, "user data stream connected")
            keeper = asyncio.create_task(self._keep_alive(exchange, ws))
            try:
                reason = await self._read(ws)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            raise _Ended(reason, listened=True)

    async def _keep_alive(self, exchange: Any, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)  # a schedule, not synchronisation
            try:
                await self.venue._call(exchange.fapiPrivatePutListenKey, mutating=True)
            except GatewayError as exc:
                log.warning("%s listenKey keep-alive failed: %s", self.venue.exchange_id, exc.message)
                ws.keep_alive_failure = exc.message  # type: ignore[attr-defined]
                await ws.close()
                return

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            try:
                message = json.loads(msg.data, parse_float=Decimal)
                if isinstance(message, dict) and message.get("e") == wire.LISTEN_KEY_EXPIRED:
                    self._listen_key = None
                    return "listenKey expired"
                for event in self._decode(message):
                    self.venue._publish(event)
            except (ValueError, InvalidRequest) as exc:
                detail = exc.message if isinstance(exc, InvalidRequest) else "not JSON"
                log.error("%s user data stream: unreadable message (%s); reconnecting to reconcile",
                          self.venue.exchange_id, detail)
                return "unreadable message"
        failure = getattr(ws, "keep_alive_failure", None)
        return f"listenKey keep-alive failed: {failure}" if failure else "connection closed by the exchange"

    def _decode(self, message: Any) -> list[VenueEvent]:
        if isinstance(message, dict):
            body = message.get("o")
            if message.get("e") == wire.ALGO_UPDATE and isinstance(body, dict) and body.get("aid"):
                _remember(self._algo_clients, str(body["aid"]), str(body.get("caid") or ""))
            fired = wire.triggered_order_id(message)
            if fired is not None:
                placed, algo = fired
                _remember(self._triggered, placed, (algo, self._algo_clients.get(algo, "")))
        events = wire.events_from_wire(message, self._resolve)
        return [self._as_algo(event) for event in events]

    def _as_algo(self, event: VenueEvent) -> VenueEvent:
        """Trades of the order a conditional order placed, under the conditional order's ids."""
        if not isinstance(event, OrderUpdate):
            return event
        owner = self._triggered.get(event.order.id)
        if owner is None or owner[0] == event.order.id:
            return event
        algo_id, client_id = owner
        order = dataclasses.replace(event.order, id=algo_id, client_order_id=client_id or event.order.client_order_id)
        return dataclasses.replace(event, order=order)

    def _resolve(self, wire_symbol: str) -> str | None:
        markets = self.venue._markets
        if self._symbols[0] != id(markets):
            self._symbols = (id(markets), {m.get("id"): symbol for symbol, m in markets.items()})
        return self._symbols[1].get(wire_symbol)

    def _status(self, connected: bool, reason: str) -> None:
        self._connected = connected
        self._reported_down = not connected
        self.venue._publish(StreamStatus(connected=connected, at=utcnow(), reason=reason))


def _remember(book: OrderedDict, key: str, value: Any) -> None:
    book[key] = value
    book.move_to_end(key)
    while len(book) > MAX_TRIGGERED:
        book.popitem(last=False)

