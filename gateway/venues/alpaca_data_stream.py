"""The Alpaca venue's market data feeds: one websocket per feed to Alpaca's stream host
(``wss://stream.data.alpaca.markets/<feed>``; a paper broker serves the same paths), opened
with the broker key (read per connection, never logged), shared by every bot through the
dialect's hub.

``update`` keeps the wanted subscription; the connection sends the difference while up and the
whole of it after each (re)connect. Drops reconnect with capped exponential backoff. JSON frames
(no msgpack asked for upstream: the gateway decodes every message anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from ..ports import MarketFeed, TickSink
from ..wire import alpaca_data_stream as wire

log = logging.getLogger(__name__)

ALPACA_STREAM_URL = "wss://stream.data.alpaca.markets"
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HANDSHAKE_TIMEOUT_S = 10.0
HEARTBEAT_S = 30.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def market_stream_url(data_url: str) -> str:
    """Alpaca's stream host for Alpaca's data host; the data URL as ws(s) otherwise (the paper
    broker serves the streams on its one address)."""
    parts = urlsplit(data_url)
    host = parts.hostname or ""
    if host == "alpaca.markets" or host.endswith(".alpaca.markets"):
        return ALPACA_STREAM_URL
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class _Refused(Exception):
    """The upstream refused the handshake; said without the credentials."""


class AlpacaFeed(MarketFeed):
    def __init__(self, url: str, credentials: Callable[[], tuple[str, str]], sink: TickSink):
        self.url = url
        self._credentials = credentials
        self._sink = sink
        self._wanted: dict[str, frozenset[str]] = {}
        self._sent: dict[str, frozenset[str]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task = asyncio.create_task(self._run(), name=f"alpaca-data-{url}")

    async def update(self, subscriptions: Mapping[str, frozenset[str]]) -> None:
        self._wanted = dict(subscriptions)
        if self._ws is not None and not self._ws.closed:
            await self._send_difference(self._ws)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _send_difference(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        wanted, sent = self._wanted, self._sent
        add = {c: sorted(s - sent.get(c, frozenset())) for c, s in wanted.items()}
        drop = {c: sorted(s - wanted.get(c, frozenset())) for c, s in sent.items()}
        self._sent = dict(wanted)
        if any(add.values()):
            await ws.send_str(orjson.dumps({"action": "subscribe", **{c: s for c, s in add.items() if s}}).decode())
        if any(drop.values()):
            await ws.send_str(orjson.dumps({"action": "unsubscribe", **{c: s for c, s in drop.items() if s}}).decode())

    async def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        async with aiohttp.ClientSession(trust_env=False) as session:
            while True:
                reason, served = await self._connect_once(session)
                if served:
                    backoff = MIN_BACKOFF_S
                log.warning("alpaca market data feed %s down (%s); reconnecting in %.1f s", self.url, reason, backoff)
                await asyncio.sleep(backoff)  # backoff between reconnects, not synchronisation
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _connect_once(self, session: aiohttp.ClientSession) -> tuple[str, bool]:
        try:
            async with session.ws_connect(self.url, heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES) as ws:
                await self._handshake(ws)
                self._ws, self._sent = ws, {}
                try:
                    await self._send_difference(ws)
                    return await self._read(ws), True
                finally:
                    self._ws = None
        except _Refused as exc:
            return str(exc), False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"connection failed ({type(exc).__name__})", False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the feed silently dead
            log.error("alpaca market data feed failed (%s); reconnecting", type(exc).__name__)
            return f"internal error ({type(exc).__name__})", False

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if not _says(await self._next(ws), "success", "connected"):
            raise _Refused("the upstream did not say connected")
        try:
            key_id, secret = self._credentials()
        except Exception:  # noqa: BLE001 - whatever the key store raised may name the key
            raise _Refused("no usable broker credentials") from None
        await ws.send_str(orjson.dumps({"action": "auth", "key": key_id, "secret": secret}).decode())
        if not _says(await self._next(ws), "success", "authenticated"):
            raise _Refused("the upstream refused the broker credentials")

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> list:
        msg = await asyncio.wait_for(ws.receive(), HANDSHAKE_TIMEOUT_S)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise _Refused("the upstream closed the feed during the handshake")
        messages = wire.decode(msg.data)
        return messages if isinstance(messages, list) else [messages]

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            messages = wire.decode(msg.data)
            for message in messages if isinstance(messages, list) else [messages]:
                if not isinstance(message, dict):
                    continue
                if message.get("T") == "error":
                    log.warning("alpaca market data feed: upstream error %s %s", message.get("code"), message.get("msg"))
                    continue
                try:
                    tick = wire.parse_tick(message)
                except (KeyError, ValueError, TypeError):
                    log.warning("alpaca market data feed: an unreadable %s message skipped", str(message.get("T"))[:8])
                    continue
                if tick is not None:
                    self._sink(tick)
        return "connection closed by the upstream"


def _says(messages: list, kind: str, text: str) -> bool:
    return any(isinstance(m, dict) and m.get("T") == kind and m.get("msg") == text for m in messages)
