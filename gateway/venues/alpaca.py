"""The ``alpaca`` venue: Alpaca's Trading API v2 (or anything speaking it) over HTTP.

One pooled aiohttp session, opened in ``start()``. Credentials are fetched per request from the
``credentials`` callable, so a key rotation inside the gateway takes effect on the next call.

Failure rules (what a bot is told depends on whether an order may exist upstream):
- cannot connect / DNS fails: nothing was sent -> UpstreamUnavailable;
- a timeout, dropped connection or 5xx while sending an order (submit/replace): look the order up
  by its client order id, which this venue always sets; return it if found, else UpstreamUncertain;
- upstream 401 means the *gateway's* broker key is bad: UpstreamUnavailable, never Unauthorized;
- upstream messages are passed on truncated and with anything secret-looking removed.

The secret never appears in an exception, a log line or ``repr``: exceptions are raised outside
the ``except`` block that saw the aiohttp error, so not even ``__context__`` refers to it.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from ..errors import (
    Forbidden,
    GatewayError,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    OrderRejected,
    RateLimited,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from ..model import (
    describes,
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Clock,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    Position,
    classify_symbol,
)
from ..numbers import MAX_PRICE, fmt, parse_decimal
from ..market import DataKind, OrderBook, Page, SeriesQuery, Snapshot
from ..ports import STREAM_FEEDS, CalendarDay, MarketFeed, TickSink, Watchlist
from ..wire import alpaca as wire
from ..wire import alpaca_data as data_wire
from . import alpaca_data_stream
from .alpaca_stream import AlpacaTradeStream, stream_url
from .base import Venue, VenueCapabilities

log = logging.getLogger(__name__)

ALPACA_DATA_URL = "https://data.alpaca.markets"
MAX_UPSTREAM_MESSAGE = 200
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_\-]{24,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # far above 500 orders; bounds a runaway upstream

# What went wrong on the wire, recorded inside ``except`` and raised outside it.
_UNREACHABLE = "unreachable"  # nothing was sent
_LOST = "lost"  # sent, but the answer was lost (timeout, dropped connection)


_LEGS = frozenset({OrderClass.BRACKET, OrderClass.OTO, OrderClass.OCO})


def alpaca_capabilities(base_url: str, stream: bool) -> VenueCapabilities:
    """Alpaca carries legs on whole-share equities only; amends in place (PATCH); holds the
    shares of open sells; pushes trade_updates; 200 requests a minute per account. Only
    Alpaca's paper host and a local paper broker count as paper: any other host may be live."""
    host = urlsplit(base_url).hostname or ""
    paper = host == "paper-api.alpaca.markets" or host in ("127.0.0.1", "localhost", "::1")
    return VenueCapabilities(
        order_classes={AssetClass.US_EQUITY: _LEGS},
        amend=True,
        reduce_only=False,
        held_for_orders=True,
        legs_need_whole_qty=True,
        stop_limit_only=frozenset({AssetClass.CRYPTO}),
        no_resting_stops=frozenset({AssetClass.US_OPTION}),
        event_stream=stream,
        environment="paper" if paper else "live",
        rate_limit_per_min=200,
        open_orders_page=wire.MAX_ORDERS_LIMIT,
    )


class AlpacaVenue(Venue):
    name = "alpaca"

    def __init__(
        self,
        credentials: Callable[[], tuple[str, str]],
        *,
        base_url: str = "https://paper-api.alpaca.markets",
        data_url: str | None = None,
        timeout_s: float = 10,
        stream: bool = True,
        market_stream_url: str | None = None,
    ):
        """``stream``: listen to the upstream's trade_updates (``/stream``) from ``start`` on
        and publish them as venue events."""
        self._credentials = credentials
        self.base_url = base_url.rstrip("/")
        self.data_url = (data_url or default_data_url(self.base_url)).rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.capabilities = alpaca_capabilities(self.base_url, stream)
        self.stream = AlpacaTradeStream(stream_url(self.base_url), credentials, self._publish) if stream else None
        # Market data streams (alpaca_data_stream): Alpaca's stream host, or the paper broker's.
        self.market_stream_url = (market_stream_url or alpaca_data_stream.market_stream_url(self.data_url)).rstrip("/")

    def __repr__(self) -> str:
        return f"AlpacaVenue(base_url={self.base_url!r}, data_url={self.data_url!r})"

    async def start(self) -> None:
        if self._session is None:
            # A separate connect timeout tells "never connected" (nothing sent) from "no answer".
            timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(self.timeout_s, 5))
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False, trust_env=False)
        if self.stream is not None:
            self.stream.start()

    async def open_feed(self, feed: str, sink: TickSink) -> MarketFeed:
        """One upstream connection for ``feed`` with the broker key (never the bot's)."""
        if feed not in STREAM_FEEDS:
            return await super().open_feed(feed, sink)
        return alpaca_data_stream.AlpacaFeed(f"{self.market_stream_url}/{feed}", self._credentials, sink)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -----------------------------------------------------------------------------------
    # Reads

    async def get_account(self) -> Account:
        return _decode(wire.account_from_wire, await self._get("/v2/account"))

    async def list_positions(self) -> list[Position]:
        return _decode_list(wire.position_from_wire, await self._get("/v2/positions"))

    async def get_position(self, symbol: str) -> Position:
        return _decode(wire.position_from_wire, await self._get(f"/v2/positions/{_path_symbol(symbol)}"))

    async def get_order(self, order_id: str, nested: bool = False) -> Order:
        path = f"/v2/orders/{_path_order_id(order_id)}"
        return _decode(wire.order_from_wire, await self._get(path, {"nested": "true" if nested else "false"}))

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        data = await self._get("/v2/orders:by_client_order_id", {"client_order_id": client_order_id})
        return _decode(wire.order_from_wire, data)

    async def list_orders(self, query: OrderQuery) -> list[Order]:
        data = await self._get("/v2/orders", wire.order_query_to_params(query))
        return _decode_list(wire.order_from_wire, data)

    async def get_clock(self) -> Clock:
        return _decode(wire.clock_from_wire, await self._get("/v2/clock"))

    async def get_asset(self, symbol: str) -> Asset:
        return _decode(wire.asset_from_wire, await self._get(f"/v2/assets/{_path_symbol(symbol)}"))

    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        symbol = _path_symbol(symbol)
        if asset_class is AssetClass.US_EQUITY:
            data = await self._request("GET", f"/v2/stocks/{symbol}/trades/latest", base=self.data_url)
            trade = data.get("trade") if isinstance(data, Mapping) else None
        else:
            path = "/v1beta3/crypto/us/latest/trades" if asset_class is AssetClass.CRYPTO else "/v1beta1/options/trades/latest"
            data = await self._request("GET", path, params={"symbols": symbol}, base=self.data_url)
            trades = data.get("trades") if isinstance(data, Mapping) else None
            trade = trades.get(symbol) if isinstance(trades, Mapping) else None
        if not isinstance(trade, Mapping) or trade.get("p") is None:
            raise NotFound(f"no latest trade for {symbol}")
        return _decode(lambda p: parse_decimal(p, "price", maximum=MAX_PRICE), trade["p"])

    # -----------------------------------------------------------------------------------
    # Market data: Alpaca's data host (``data_url``), read with the broker key

    async def _data(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self._request("GET", path, params=params, base=self.data_url)

    async def series(self, query: SeriesQuery) -> Page:
        if query.asset_class is AssetClass.US_OPTION and query.kind is DataKind.QUOTES:
            raise self._not_served("historical option quotes (Alpaca has none)")
        path = f"{_DATA_PATHS[query.asset_class]}/{query.kind.value}"
        raw = await self._data(path, data_wire.series_params(query))
        return _decode(lambda d: data_wire.page_from_wire(d, query.kind), raw)

    async def _latest(self, what: str, asset_class: AssetClass, symbols: Sequence[str], parse) -> dict:
        base = _DATA_PATHS[asset_class]
        path = f"{base}/latest/{what}" if asset_class is AssetClass.CRYPTO else f"{base}/{what}/latest"
        raw = await self._data(path, {"symbols": data_wire.symbols_param(symbols)})
        return _decode(lambda d: data_wire.latest_from_wire(d, what, parse), raw)

    async def latest_trades(self, asset_class, symbols):
        return await self._latest("trades", asset_class, symbols, data_wire.trade_from_wire)

    async def latest_quotes(self, asset_class, symbols):
        return await self._latest("quotes", asset_class, symbols, data_wire.quote_from_wire)

    async def latest_bars(self, asset_class, symbols):
        if asset_class is AssetClass.US_OPTION:
            raise self._not_served("latest option bars (Alpaca has none)")
        return await self._latest("bars", asset_class, symbols, data_wire.bar_from_wire)

    async def snapshots(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Snapshot]:
        path = f"{_DATA_PATHS[asset_class]}/snapshots"
        raw = await self._data(path, {"symbols": data_wire.symbols_param(symbols)})
        nested = asset_class is not AssetClass.US_EQUITY
        return _decode(lambda d: data_wire.snapshots_from_wire(d, nested), raw)

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        if classify_symbol(symbol) is not AssetClass.CRYPTO:
            raise self._not_served("order books for anything but crypto")
        raw = await self._data("/v1beta3/crypto/us/latest/orderbooks", {"symbols": _path_symbol(symbol)})
        books = raw.get("orderbooks") if isinstance(raw, Mapping) else None
        if not isinstance(books, Mapping) or symbol not in books:
            raise NotFound(f"no order book for {symbol}")
        book = _decode(data_wire.book_from_wire, books[symbol])
        return OrderBook(book.t, book.bids[:depth], book.asks[:depth])

    # -----------------------------------------------------------------------------------
    # Account reads (the trading host)

    async def list_assets(self, asset_class: AssetClass | None = None) -> list[Asset]:
        params = {"asset_class": asset_class.value} if asset_class else {}
        return _decode_list(wire.asset_from_wire, await self._get("/v2/assets", params))

    async def calendar(self, start: date, end: date) -> list[CalendarDay]:
        raw = await self._get("/v2/calendar", {"start": start.isoformat(), "end": end.isoformat()})
        return _decode_list(_calendar_day, raw)

    async def account_configurations(self) -> dict[str, Any]:
        return _object(await self._get("/v2/account/configurations"))

    async def update_account_configurations(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return _object(await self._request("PATCH", "/v2/account/configurations", json_body=dict(changes)))

    async def account_activities(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        raw = await self._get("/v2/account/activities", params)
        if not isinstance(raw, list) or not all(isinstance(row, Mapping) for row in raw):
            raise UpstreamUnavailable("the broker's answer could not be read (expected a list)")
        return raw

    async def portfolio_history(self, params: Mapping[str, str]) -> dict[str, Any]:
        return _object(await self._get("/v2/account/portfolio/history", params))

    async def list_watchlists(self) -> list[Watchlist]:
        return _decode_list(_watchlist, await self._get("/v2/watchlists"))

    async def get_watchlist(self, watchlist_id: str) -> Watchlist:
        return _decode(_watchlist, await self._get(f"/v2/watchlists/{_path_order_id(watchlist_id)}"))

    async def create_watchlist(self, name: str, symbols: Sequence[str]) -> Watchlist:
        raw = await self._request("POST", "/v2/watchlists", json_body={"name": name, "symbols": list(symbols)})
        return _decode(_watchlist, raw)

    async def update_watchlist(self, watchlist_id: str, name: str | None, symbols: Sequence[str] | None) -> Watchlist:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if symbols is not None:
            body["symbols"] = list(symbols)
        if "name" not in body:  # Alpaca's PUT needs the name
            body["name"] = (await self.get_watchlist(watchlist_id)).name
        raw = await self._request("PUT", f"/v2/watchlists/{_path_order_id(watchlist_id)}", json_body=body)
        return _decode(_watchlist, raw)

    async def delete_watchlist(self, watchlist_id: str) -> None:
        await self._request("DELETE", f"/v2/watchlists/{_path_order_id(watchlist_id)}")

    async def option_contracts(self, params: Mapping[str, str]) -> dict[str, Any]:
        return _object(await self._get("/v2/options/contracts", params))

    async def option_contract(self, symbol_or_id: str) -> dict[str, Any]:
        return _object(await self._get(f"/v2/options/contracts/{symbol_or_id}"))

    async def corporate_announcements(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        if "id" in params:
            return [_object(await self._get(f"/v2/corporate_actions/announcements/{_path_order_id(params['id'])}"))]
        raw = await self._get("/v2/corporate_actions/announcements", params)
        if not isinstance(raw, list):
            raise UpstreamUnavailable("the broker's answer could not be read (expected a list)")
        return raw

    # -----------------------------------------------------------------------------------
    # Orders

    async def submit_order(self, intent: OrderIntent) -> Order:
        # Always send a client order id: it is how an uncertain submit is resolved later.
        client_order_id = intent.client_order_id or str(uuid.uuid4())
        body = wire.intent_to_wire(intent, client_order_id)
        return await self._send_order("POST", "/v2/orders", body, client_order_id, lambda o: describes(intent, o))

    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        client_order_id = change.client_order_id or str(uuid.uuid4())
        body = wire.replace_to_wire(change)
        body["client_order_id"] = client_order_id
        return await self._send_order(
            "PATCH", f"/v2/orders/{_path_order_id(order_id)}", body, client_order_id, lambda o: o.replaces == order_id
        )

    async def cancel_order(self, order_id: str) -> None:
        await self._request("DELETE", f"/v2/orders/{_path_order_id(order_id)}")

    async def cancel_all_orders(self) -> list[BulkResult]:
        return _decode_list(wire.cancel_result_from_wire, await self._request("DELETE", "/v2/orders"))

    async def close_position(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        params = {}
        if qty is not None:
            params["qty"] = fmt(qty)
        if percentage is not None:
            params["percentage"] = fmt(percentage)
        data = await self._request("DELETE", f"/v2/positions/{_path_symbol(symbol)}", params=params)
        return _decode(wire.order_from_wire, data)

    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        params = {"cancel_orders": "true"} if cancel_orders else {}
        data = await self._request("DELETE", "/v2/positions", params=params)
        return _decode_list(wire.close_result_from_wire, data)

    async def _send_order(
        self, method: str, path: str, body: dict[str, Any], client_order_id: str, same: Callable[[Order], bool]
    ) -> Order:
        """Send an order-creating request. An uncertain outcome (no answer, a 5xx, a 2xx that is
        not an order) is resolved by client order id; still unknown, it stays uncertain."""
        try:
            data = await self._request(method, path, json_body=body)
            try:
                return wire.order_from_wire(data)
            except (InvalidRequest, KeyError, TypeError, ValueError, AttributeError):
                raise UpstreamUncertain("the broker's answer was not an order; it may or may not be placed") from None
        except UpstreamUncertain:
            found = await self._find_by_client_id(client_order_id)
            if found is None:
                raise
            log.warning("alpaca %s %s: outcome was uncertain, found the order by client id", method, path)
            return found
        except OrderRejected as exc:
            # Alpaca refuses a reused client order id. Only when the order holding it is this
            # very order (a retry of one that did arrive) is it the answer; otherwise the
            # refusal stands: answering with another order would tell the bot a lie.
            if "client_order_id" not in exc.message:
                raise
            found = await self._find_by_client_id(client_order_id)
            if found is None or not same(found):
                raise
            return found

    async def _find_by_client_id(self, client_order_id: str) -> Order | None:
        try:
            return await self.get_order_by_client_id(client_order_id)
        except GatewayError:
            return None

    # -----------------------------------------------------------------------------------
    # The wire

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self._request("GET", path, params=params)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        base: str | None = None,
    ) -> Any:
        session = self._session
        if session is None:
            raise UpstreamUnavailable("the alpaca venue is not started")
        key_id, secret = self._current_credentials()
        headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret, "Accept": "application/json"}
        data = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(json_body)
        # Paths are built only from validated symbols and ids, so they are sent as they are:
        # BTC/USD keeps its slash, as Alpaca expects.
        url = URL((base or self.base_url) + path, encoded=True)
        if base is None or base == self.base_url:
            self._count_request()  # the trading host's budget (the data host has its own)
        failure = status = raw = None
        try:
            # Never follow a redirect: it would carry the broker key headers to another host.
            async with session.request(
                method, url, params=params, data=data, headers=headers, allow_redirects=False
            ) as response:
                status, raw = response.status, await _read_capped(response)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            failure = _UNREACHABLE
        except (TimeoutError, aiohttp.ClientError):
            failure = _LOST
        mutating = method != "GET"
        if failure is not None:
            raise _transport_error(failure, mutating)
        return _interpret(status, raw, mutating, (key_id, secret))


    def _current_credentials(self) -> tuple[str, str]:
        failed = False
        try:
            key_id, secret = self._credentials()
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - whatever the key store raised, it may name the key
            failed = True
        if failed or not key_id or not secret:
            raise UpstreamUnavailable("the gateway has no usable broker credentials for alpaca")
        return key_id, secret


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than MAX_RESPONSE_BYTES."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def default_data_url(base_url: str) -> str:
    """Alpaca's market-data host for Alpaca's trading hosts; the base URL itself otherwise
    (the paper broker serves both APIs on one address)."""
    host = urlsplit(base_url).hostname or ""
    return ALPACA_DATA_URL if host == "alpaca.markets" or host.endswith(".alpaca.markets") else base_url


def _path_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or classify_symbol(symbol) is None:
        raise InvalidRequest("symbol is not a known symbol shape")
    return symbol


def _path_order_id(order_id: str) -> str:
    try:
        return str(uuid.UUID(order_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("order not found") from None


def _transport_error(failure: str, mutating: bool) -> GatewayError:
    if failure == _UNREACHABLE:
        return UpstreamUnavailable("cannot reach the broker")
    if mutating:
        return UpstreamUncertain("the broker did not answer in time; the request may or may not have been applied")
    return UpstreamUnavailable("the broker did not answer in time")


def _interpret(status: int, raw: bytes | None, mutating: bool, credentials: tuple[str, str]) -> Any:
    if 200 <= status < 300:
        if raw == b"":
            return None
        if raw is not None:
            try:
                return json.loads(raw, parse_float=Decimal)
            except (ValueError, RecursionError):
                pass  # raised below, outside the handler: the decode error holds the whole body
        # A 2xx for an order we cannot read: it probably exists, so it is uncertain.
        if mutating:
            raise UpstreamUncertain("the broker's answer could not be read")
        raise UpstreamUnavailable("the broker's answer could not be read")
    message = _upstream_message(raw or b"", credentials)
    if status == 401:
        raise UpstreamUnavailable("upstream rejected the gateway's broker credentials")
    if status == 403:
        lowered = message.lower()
        if "buying power" in lowered or "insufficient" in lowered:
            raise InsufficientFunds(message or "insufficient buying power")
        raise Forbidden(message or "forbidden by the broker")
    if status == 404:
        raise NotFound(message or "not found")
    if status in (400, 422):
        raise OrderRejected(message or "rejected by the broker")
    if status == 429:
        raise RateLimited("the broker is rate limiting requests")
    if status >= 500 and mutating:
        raise UpstreamUncertain(f"the broker answered {status}; the request may or may not have been applied")
    raise UpstreamUnavailable(f"the broker answered {status}")


def _upstream_message(raw: bytes, credentials: tuple[str, str]) -> str:
    """The upstream's error message, short, single-line, with anything secret-looking removed."""
    try:
        data = json.loads(raw)
        text = data.get("message") if isinstance(data, dict) else None
    except (ValueError, RecursionError):
        text = None
    if not isinstance(text, str):
        text = raw[:1000].decode("utf-8", "replace")
    for secret in credentials:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _TOKENISH.sub(_redact_token, text)
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > MAX_UPSTREAM_MESSAGE:
        text = text[: MAX_UPSTREAM_MESSAGE - 3] + "..."
    return f"broker: {text}" if text else ""


def _redact_token(match: re.Match[str]) -> str:
    # Ids (UUIDs) help a human; any other long token could be a key, so it goes.
    return match.group(0) if _UUID.fullmatch(match.group(0)) else "[redacted]"


def _decode(parse: Callable[[Any], Any], data: Any) -> Any:
    """Upstream JSON into the model; an answer that does not fit is an unavailable upstream."""
    try:
        return parse(data)
    except (InvalidRequest, KeyError, TypeError, ValueError, AttributeError) as exc:
        message = exc.message if isinstance(exc, InvalidRequest) else type(exc).__name__
        failure = UpstreamUnavailable(f"the broker's answer could not be read ({message})")
    raise failure


_DATA_PATHS = {
    AssetClass.US_EQUITY: "/v2/stocks",
    AssetClass.CRYPTO: "/v1beta3/crypto/us",
    AssetClass.US_OPTION: "/v1beta1/options",
}


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise UpstreamUnavailable("the broker's answer could not be read (expected an object)")
    return dict(data)


def _calendar_day(data: Any) -> CalendarDay:
    return CalendarDay(date.fromisoformat(data["date"]), str(data["open"]), str(data["close"]))


def _watchlist(data: Any) -> Watchlist:
    symbols = tuple(str(a["symbol"]) for a in data.get("assets") or [])
    return Watchlist(
        str(data["id"]), str(data["name"]), symbols,
        wire.parse_time(data["created_at"], "created_at"), wire.parse_time(data["updated_at"], "updated_at"),
    )


def _decode_list(parse: Callable[[Any], Any], data: Any) -> list:
    if not isinstance(data, list):
        raise UpstreamUnavailable("the broker's answer could not be read (expected a list)")
    return [_decode(parse, item) for item in data]
