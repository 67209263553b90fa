"""The ``ccxt`` venue: an exchange's linear derivatives through ccxt (async), behind ``Venue``.

Built for Binance USDⓈ-M (``binanceusdm``, the default), written against ccxt's unified API so
other derivatives exchanges can work too. Internal symbols are ``BASE/QUOTE`` (``BTC/USDT``); the
venue trades the exchange's linear perpetual for each (``BTC/USDT:USDT``).

What the exchange cannot do the way the internal model says, the venue does itself:

- Orders have no symbol-less lookup on most exchanges, so the venue remembers each order's symbol
  (and whether it is a conditional order, which has its own endpoints) and, for an id it never saw,
  searches the open orders.
- ``oto`` and ``bracket`` orders (the policy's ``stop_loss: attach`` makes every crypto entry one)
  are emulated: the entry goes first; once it has filled, the exits follow as reduce-only orders (a
  stop-market at the stop, a limit at the take-profit) with client ids derived from the entry's;
  when one exit of a bracket fills, the other is canceled. Pending exits are checked on every
  ``list_orders`` (the gateway reconciles every few seconds). They live in memory: after a restart
  a resting entry's exits are not placed (a warning is logged at start for none; see the report).
- ``last_equity`` (the base of the daily loss limit) is the first equity seen in each UTC day.

Errors: ccxt exceptions become ``gateway.errors`` (InsufficientFunds, InvalidOrder -> OrderRejected,
OrderNotFound -> NotFound, AuthenticationError -> UpstreamUnavailable, ...). When placing an order
is interrupted after it may have left (timeout, dropped connection, a 5xx), the venue looks the
order up by its client order id; found, it is returned; otherwise the answer is UpstreamUncertain.
Messages carry the exchange's own ``msg`` with URLs, keys and long tokens removed, never ccxt's
text as it is (which holds the request URL). ccxt's debug log (request headers) is silenced.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import re
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Decimal,
    InvalidOperation,
)
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import ccxt.async_support as ccxt_async
from ccxt.base import errors as cx

from ..errors import (
    GatewayError,
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from ..model import (
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
    OrderStatus,
    OrderType,
    Position,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    classify_symbol,
    utcnow,
)
from .base import TradingRules, Venue, VenueCapabilities
from .ccxt_market import CcxtMarketData
from .ccxt_user_stream import SUPPORTED_EXCHANGES, BinanceUserStream, supports_user_stream

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = {
    "warnOnFetchOpenOrdersWithoutSymbol": False,  # the venue lists open orders across symbols
    "fetchCurrencies": False,  # currencies are not needed, and cost calls to /sapi
}
MAX_REMEMBERED_ORDERS = 20_000
COUNTDOWN_EXCHANGES = frozenset({"binanceusdm"})  # ccxt ids whose futures API has countdownCancelAll
MAX_MESSAGE = 200
LEVERAGE_TTL_S = 1.0
MARKETS_TTL_S = 3600.0  # new listings show up within the hour
# Open orders without a symbol cost Binance 40 weight (per list, plain and conditional); per
# symbol, 1. Reconciling every few seconds, the venue asks per watched symbol and sweeps every
# symbol (catching orders placed outside the gateway) once a minute.
FULL_SWEEP_S = 60.0
LEG_ATTEMPTS = 3  # tries to place a filled entry's exits before giving up (logged as an error)
_PRECISION = Decimal("0.000000000001")
_URL = re.compile(r"https?://\S+")
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TIFS = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}

# ccxt's logger writes request headers (the API key) at debug level: keep it quiet whatever
# level the process logs at.
_CCXT_LOG = logging.getLogger("gateway.venues.ccxt.wire")
_CCXT_LOG.setLevel(logging.WARNING)


class _Garbage(Exception):
    """An exchange answer that does not fit the model."""


@dataclass
class _Exits:
    """The exits an emulated oto/bracket entry still owes, or has placed."""

    entry_id: str
    entry_client_id: str
    symbol: str
    side: Side  # the exits' side
    stop_loss: StopLoss | None
    take_profit: TakeProfit | None
    placed: list[str] = field(default_factory=list)  # exit order ids, once placed
    attempts: int = 0


class CcxtVenue(CcxtMarketData, Venue):
    name = "ccxt"

    def __init__(
        self,
        exchange_id: str,
        credentials: Callable[[], tuple[str, str]],
        *,
        urls: dict | None = None,
        sandbox: bool = False,
        options: dict | None = None,
        timeout_ms: int = 10_000,
        rate_limit: bool = False,
        stream: bool = True,
    ):
        """``urls``: ``{"api": BASE}`` points every ``urls['api']`` entry at BASE, keeping each
        entry's path (how the gateway and tests reach a paper broker); any other key replaces that
        one entry. ``options`` are merged over DEFAULT_OPTIONS into ccxt's options.

        ``rate_limit`` turns on ccxt's client-side throttle. It is off by default: it queues every
        call (an order too) behind the weight of the calls before it, and the venue keeps its own
        cost bounded instead (open orders are read per active symbol, with a full sweep once a
        FULL_SWEEP_S); an exchange's 429 still becomes RateLimited."""
        if exchange_id not in ccxt_async.exchanges:
            raise ValueError(f"ccxt has no exchange {exchange_id!r}")
        self.exchange_id = exchange_id
        self._credentials = credentials
        self._urls = dict(urls or {})
        self._sandbox = sandbox
        self._options = {**DEFAULT_OPTIONS, **(options or {})}
        self._timeout_ms = timeout_ms
        self._rate_limit = rate_limit
        self._position_symbols: set[str] = set()  # from the last list_positions
        self._order_symbols: set[str] = set()  # of the open orders last listed, and placed since
        self._listings: list[set[str]] = []  # per listing under way: symbols of orders seen meanwhile
        self._last_sweep = float("-inf")
        self._exchange: Any = None
        self._markets: dict[str, dict] = {}  # internal symbol -> ccxt market
        self._markets_at = 0.0  # loop time of the last load
        self._internal: dict[str, str] = {}  # ccxt symbol -> internal symbol
        self._load_lock = asyncio.Lock()
        self._exit_lock = asyncio.Lock()
        self._settings_lock = asyncio.Lock()
        self._orders: OrderedDict[str, tuple[str, bool]] = OrderedDict()  # id -> (symbol, conditional)
        self._client_ids: OrderedDict[str, str] = OrderedDict()  # client order id -> order id
        self._exits: dict[str, _Exits] = {}  # entry order id -> its exits
        self._uncertain: OrderedDict[str, None] = OrderedDict()  # client ids of unconfirmed submits
        self._settings_cache: tuple[dict, float] | None = None  # fetch_leverages answer, when
        self._day: date | None = None
        self._day_equity = Decimal(0)
        # The exchange's own event stream, where the venue has a client for it (Binance USD-M).
        streamed = stream and supports_user_stream(exchange_id, self._options)
        self.user_stream = BinanceUserStream(self) if streamed else None
        self.capabilities = _capabilities(exchange_id, self._urls, sandbox, streamed)

    def __repr__(self) -> str:
        return f"CcxtVenue({self.exchange_id!r})"

    # -----------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        if self._exchange is None:
            self._exchange = self._build_exchange()
        try:
            await self._ready()
        except GatewayError as exc:
            # Not fatal: the gateway fails closed (stale book) and every call retries the load.
            log.warning("ccxt %s: markets not loaded at start: %s", self.exchange_id, exc.message)
        if self.user_stream is not None:
            self.user_stream.start()

    async def close(self) -> None:
        if self.user_stream is not None:
            await self.user_stream.stop()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            await exchange.close()

    def _build_exchange(self) -> Any:
        cls = getattr(ccxt_async, self.exchange_id)
        exchange = cls(
            {"enableRateLimit": self._rate_limit, "timeout": self._timeout_ms, "options": dict(self._options)}
        )
        exchange.logger = _CCXT_LOG
        exchange.on_rest_response = _remember_status(exchange.on_rest_response)
        if self._sandbox:
            exchange.set_sandbox_mode(True)
        api = exchange.urls.get("api")
        for key, value in self._urls.items():
            if key == "api" and isinstance(value, str) and isinstance(api, dict):
                exchange.urls["api"] = _rebase(api, value)
            elif isinstance(api, dict):
                api[key] = value
        return exchange

    async def _ready(self) -> Any:
        """The exchange, credentials current, markets loaded."""
        exchange = self._exchange
        if exchange is None:
            raise UpstreamUnavailable(f"the {self.exchange_id} venue is not started")
        try:
            key, secret = self._credentials()
        except GatewayError:
            raise
        except Exception:  # noqa: BLE001 - whatever the key store raised, it may name the key
            key = secret = ""
        if not key or not secret:
            raise UpstreamUnavailable(f"the gateway has no usable broker credentials for {self.exchange_id}")
        exchange.apiKey, exchange.secret = key, secret  # a rotation applies to the next call
        now = asyncio.get_running_loop().time()
        if not self._markets or now - self._markets_at > MARKETS_TTL_S:
            async with self._load_lock:
                if not self._markets or now - self._markets_at > MARKETS_TTL_S:
                    try:
                        await self._call(exchange.load_markets, reload=True)
                    except GatewayError as exc:
                        if not self._markets:
                            raise
                        log.warning("ccxt %s: markets not refreshed: %s", self.exchange_id, exc.message)
                    else:
                        self._index_markets(exchange)
                    self._markets_at = now
        return exchange

    def _index_markets(self, exchange: Any) -> None:
        derivatives = exchange.options.get("defaultType", "spot") in ("swap", "future")
        markets: dict[str, dict] = {}
        for market in exchange.markets.values():
            if derivatives and not (market.get("swap") and market.get("linear")):
                continue
            if not derivatives and not market.get("spot"):
                continue
            symbol = f"{market['base']}/{market['quote']}"
            if classify_symbol(symbol) is AssetClass.CRYPTO and symbol not in markets:
                markets[symbol] = market
        self._markets = markets
        self._internal = {m["symbol"]: s for s, m in markets.items()}

    # -----------------------------------------------------------------------------------
    # Calling ccxt

    async def _call(self, fn: Callable, *args: Any, mutating: bool = False, **kwargs: Any) -> Any:
        """Run one ccxt call; its exceptions become gateway errors with safe messages."""
        failure: GatewayError | None = None
        _HTTP_STATUS.set(None)
        try:
            return await fn(*args, **kwargs)
        except cx.BaseError as exc:
            failure = self._translate(exc, mutating)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            failure = UpstreamUnavailable(f"cannot reach {self.exchange_id}")
        raise failure

    def _translate(self, exc: cx.BaseError, mutating: bool) -> GatewayError:
        message = self._message(exc)
        status = _HTTP_STATUS.get()
        if mutating and status is not None and status >= 500:
            # The exchange answered with a server error: whatever code its body carries, the
            # order may have been placed before it failed. Uncertain, never a rejection.
            return UpstreamUncertain(f"{self.exchange_id} answered {status}; the request may or may not have been applied")
        if isinstance(exc, cx.AuthenticationError):
            return UpstreamUnavailable("upstream rejected the gateway's broker credentials")
        if isinstance(exc, cx.InsufficientFunds):
            return InsufficientFunds(message)
        if isinstance(exc, cx.OrderNotFound):
            return NotFound(message)
        if isinstance(exc, cx.BadSymbol):
            return NotFound(message)
        if isinstance(exc, cx.InvalidOrder):
            return OrderRejected(message)
        if isinstance(exc, cx.DDoSProtection):  # includes RateLimitExceeded: answered 418/429
            return RateLimited(f"{self.exchange_id} is rate limiting the gateway")
        if isinstance(exc, cx.NetworkError):  # ExchangeNotAvailable, RequestTimeout, ...
            if mutating and _maybe_applied(exc):
                return UpstreamUncertain(
                    f"{self.exchange_id} did not confirm the request; it may or may not have been applied"
                )
            return UpstreamUnavailable(f"{self.exchange_id} is unavailable: {message}")
        if mutating and isinstance(exc, cx.ExchangeError) and not isinstance(exc.__cause__, aiohttp.ClientError):
            return OrderRejected(message)  # the exchange answered: the request was refused
        if isinstance(exc.__cause__, aiohttp.ClientError) and mutating:
            return UpstreamUncertain(
                f"the connection to {self.exchange_id} failed; the request may or may not have been applied"
            )
        return UpstreamUnavailable(f"{self.exchange_id} answered with an error: {message}")

    def _message(self, exc: BaseException) -> str:
        """The exchange's own message (``msg`` of a JSON body), cleaned; never ccxt's raw text."""
        text = str(exc)
        start = text.find("{")
        detail = None
        if start >= 0:
            try:
                body = json.loads(text[start:])
                detail = body.get("msg") or body.get("message") if isinstance(body, dict) else None
            except (ValueError, RecursionError):
                detail = None
        if not isinstance(detail, str):
            detail = type(exc).__name__
        exchange = self._exchange
        for secret in (getattr(exchange, "apiKey", None), getattr(exchange, "secret", None)):
            if secret:
                detail = detail.replace(secret, "[redacted]")
        detail = _TOKENISH.sub("[redacted]", _URL.sub("[url]", detail))
        detail = _CONTROL.sub(" ", detail).strip()
        if len(detail) > MAX_MESSAGE:
            detail = detail[: MAX_MESSAGE - 3] + "..."
        return f"{self.exchange_id}: {detail}"

    def _market(self, symbol: str) -> dict:
        market = self._markets.get(symbol)
        if market is None:
            raise NotFound(f"{self.exchange_id} has no market for {symbol[:32]}")
        return market

    def _remember(self, order: Order, conditional: bool) -> None:
        if order.status.is_open:
            self._order_symbols.add(order.symbol)
            for meanwhile in self._listings:
                meanwhile.add(order.symbol)
        self._orders[order.id] = (order.symbol, conditional)
        self._orders.move_to_end(order.id)
        self._client_ids[order.client_order_id] = order.id
        self._client_ids.move_to_end(order.client_order_id)
        for book in (self._orders, self._client_ids):
            while len(book) > MAX_REMEMBERED_ORDERS:
                book.popitem(last=False)

    # -----------------------------------------------------------------------------------
    # Reads

    async def get_account(self) -> Account:
        exchange = await self._ready()
        balance, raw_positions = await asyncio.gather(
            self._call(exchange.fetch_balance), self._call(exchange.fetch_positions)
        )
        try:
            currency = self._settle_currency()
            total = _num(balance.get("total", {}).get(currency)) or Decimal(0)
            free = _num(balance.get("free", {}).get(currency)) or Decimal(0)
            used = _num(balance.get("used", {}).get(currency)) or Decimal(0)
            positions = [p for p in (self._to_position(raw) for raw in raw_positions) if p is not None]
            unrealized = sum((_num(raw.get("unrealizedPnl")) or Decimal(0) for raw in raw_positions), Decimal(0))
            maintenance = sum((_num(raw.get("maintenanceMargin")) or Decimal(0) for raw in raw_positions), Decimal(0))
        except (_Garbage, AttributeError, TypeError) as exc:
            raise UpstreamUnavailable(
                f"{self.exchange_id}'s account could not be read ({type(exc).__name__})"
            ) from None
        long_mv = sum((p.market_value for p in positions if p.qty > 0), Decimal(0))
        short_mv = sum((p.market_value for p in positions if p.qty < 0), Decimal(0))
        today = utcnow().date()
        if self._day != today:
            self._day, self._day_equity = today, total
        return Account(
            id=f"{self.exchange_id}",
            equity=total,
            cash=total - unrealized,  # the wallet: a futures balance counts unrealised P&L in total
            buying_power=free,
            long_market_value=long_mv,
            short_market_value=short_mv,
            last_equity=self._day_equity,
            currency=currency,
            initial_margin=used,
            maintenance_margin=maintenance,
        )

    def _settle_currency(self) -> str:
        for market in self._markets.values():
            return market.get("settle") or market.get("quote") or "USDT"
        return "USDT"

    async def list_positions(self) -> list[Position]:
        exchange = await self._ready()
        raw = await self._call(exchange.fetch_positions)
        try:
            positions = [p for p in (self._to_position(r) for r in raw) if p is not None]
            self._position_symbols = {p.symbol for p in positions}
            return positions
        except (_Garbage, AttributeError, TypeError) as exc:
            raise UpstreamUnavailable(
                f"{self.exchange_id}'s positions could not be read ({type(exc).__name__})"
            ) from None

    async def get_position(self, symbol: str) -> Position:
        for position in await self.list_positions():
            if position.symbol == symbol:
                return position
        raise NotFound(f"position does not exist: {symbol[:32]}")

    def _to_position(self, raw: dict) -> Position | None:
        symbol = self._internal.get(raw.get("symbol"))
        contracts = _num(raw.get("contracts"))
        if symbol is None or not contracts:
            return None
        size = contracts * (_num(raw.get("contractSize")) or Decimal(1))
        entry = _num(raw.get("entryPrice")) or Decimal(0)
        mark = _num(raw.get("markPrice")) or entry
        return Position(
            symbol=symbol,
            asset_class=AssetClass.CRYPTO,
            qty=-size if raw.get("side") == "short" else size,
            avg_entry_price=entry,
            current_price=mark,
        )

    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        exchange = await self._ready()
        market = self._market(symbol)
        ticker = await self._call(exchange.fetch_ticker, market["symbol"])
        try:
            for name in ("last", "close", "mark"):
                price = _num(ticker.get(name))
                if price:
                    return price
        except _Garbage:
            pass
        raise NotFound(f"no price for {symbol[:32]} at {self.exchange_id}")

    async def get_asset(self, symbol: str) -> Asset:
        await self._ready()
        return self._asset(symbol, self._market(symbol))

    def _asset(self, symbol: str, market: dict) -> Asset:
        return Asset(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ccxt:{self.exchange_id}:{market['id']}")),
            symbol=symbol,
            asset_class=AssetClass.CRYPTO,
            name=f"{symbol} ({market['symbol']} at {self.exchange_id})",
            exchange=self.exchange_id.upper(),
            tradable=market.get("active") is not False,
            marginable=bool(market.get("contract")),
            shortable=bool(market.get("contract")),
            easy_to_borrow=bool(market.get("contract")),
        )

    async def list_markets(self) -> list[TradingRules]:
        exchange = await self._ready()
        return [self._rules(exchange, symbol, market) for symbol, market in sorted(self._markets.items())]

    def _rules(self, exchange: Any, symbol: str, market: dict) -> TradingRules:
        precision, limits = market.get("precision") or {}, market.get("limits") or {}
        leverage = (limits.get("leverage") or {}).get("max")
        return TradingRules(
            asset=self._asset(symbol, market),
            tick_size=_step(exchange, precision.get("price")),
            step_size=_step(exchange, precision.get("amount")),
            min_qty=_safe_num((limits.get("amount") or {}).get("min")),
            max_qty=_safe_num((limits.get("amount") or {}).get("max")),
            min_notional=_safe_num((limits.get("cost") or {}).get("min")),
            max_leverage=int(leverage) if leverage else None,
        )

    async def get_clock(self) -> Clock:
        now = utcnow()  # crypto derivatives trade around the clock
        return Clock(timestamp=now, is_open=True, next_open=now, next_close=now + timedelta(days=1))

    # -----------------------------------------------------------------------------------
    # Leverage and margin mode

    async def _settings(self, symbol: str) -> tuple[int, str]:
        """(leverage, margin mode) of a symbol. Exchanges that list them all in one call are asked
        once per LEVERAGE_TTL_S however many symbols a caller reads (positionRisk reads each)."""
        exchange = await self._ready()
        market = self._market(symbol)
        now = asyncio.get_running_loop().time()
        if exchange.has.get("fetchLeverages"):
            async with self._settings_lock:  # concurrent readers share one call
                cache = self._settings_cache
                if cache is None or now - cache[1] > LEVERAGE_TTL_S:
                    cache = ((await self._call(exchange.fetch_leverages)) or {}, now)
                    self._settings_cache = cache
            entry = cache[0].get(market["symbol"]) or {}
        else:
            entry = await self._call(exchange.fetch_leverage, market["symbol"]) or {}
        value = entry.get("longLeverage") or entry.get("shortLeverage")
        mode = "isolated" if entry.get("marginMode") == "isolated" else "cross"
        try:
            return (int(value) if value else 1), mode
        except (TypeError, ValueError):
            raise UpstreamUnavailable(f"{self.exchange_id}'s leverage could not be read") from None

    async def get_leverage(self, symbol: str) -> int:
        return (await self._settings(symbol))[0]

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        exchange = await self._ready()
        market = self._market(symbol)
        self._settings_cache = None
        answer = await self._call(exchange.set_leverage, leverage, market["symbol"], mutating=True)
        value = answer.get("leverage") if isinstance(answer, dict) else None
        try:
            return int(value) if value is not None else leverage
        except (TypeError, ValueError):
            return leverage

    async def get_margin_mode(self, symbol: str) -> str:
        return (await self._settings(symbol))[1]

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        exchange = await self._ready()
        market = self._market(symbol)
        self._settings_cache = None
        try:
            await self._call(exchange.set_margin_mode, mode, market["symbol"], mutating=True)
        except OrderRejected as exc:
            if "No need to change margin type" not in exc.message:
                raise  # already in that mode is success, as the bot asked for it

    # -----------------------------------------------------------------------------------
    # Orders

    async def submit_order(self, intent: OrderIntent) -> Order:
        exchange = await self._ready()
        market = self._market(intent.symbol)
        self._check_shape(intent)
        client_id = intent.client_order_id or f"gw-{uuid.uuid4().hex}"
        if client_id in self._client_ids:  # a resubmission: the order that already exists
            return await self.get_order(self._client_ids[client_id], nested=True)
        kind, price, params = _order_args(intent)
        if client_id in self._uncertain:  # resent after an uncertain answer: it may exist by now
            try:
                return await self._resolve(
                    exchange, market, client_id, "triggerPrice" in params or "trailingPercent" in params
                )
            except UpstreamUncertain:
                pass  # still unknown at the exchange: place it (a duplicate client id is refused there)
        order = await self._place(
            exchange, market, intent.symbol, kind, intent.side, intent.qty, price, params, client_id
        )
        if intent.order_class in (OrderClass.OTO, OrderClass.BRACKET):
            exits = _Exits(
                order.id, client_id, intent.symbol, intent.side.opposite, intent.stop_loss, intent.take_profit
            )
            self._exits[order.id] = exits
            order.order_class = intent.order_class
            async with self._exit_lock:
                order.legs = await self._advance_exits(exchange, exits, order)
        return order

    def _check_shape(self, intent: OrderIntent) -> None:
        if intent.qty is None:
            raise OrderRejected(f"notional orders are not supported at {self.exchange_id}; send a quantity")
        if intent.order_class is OrderClass.OCO:
            raise OrderRejected(f"oco orders are not supported at {self.exchange_id}")
        if intent.type is OrderType.TRAILING_STOP and intent.trail_percent is None:
            raise OrderRejected(f"trailing stops at {self.exchange_id} need trail_percent")
        if intent.time_in_force not in _TIFS:
            raise OrderRejected(
                f"time_in_force {intent.time_in_force.value} is not supported at {self.exchange_id}; use gtc, ioc or fok"
            )

    async def _place(
        self,
        exchange: Any,
        market: dict,
        symbol: str,
        kind: str,
        side: Side,
        qty: Decimal,
        price: Decimal | None,
        params: dict,
        client_id: str,
    ) -> Order:
        """One order at the exchange, resolved by client order id when the answer is lost."""
        amount = _on_grid(exchange, market, qty, "quantity", "LOT_SIZE", exchange.amount_to_precision)
        limit = (
            _on_grid(exchange, market, price, "price", "PRICE_FILTER", exchange.price_to_precision) if price else None
        )
        for name in ("triggerPrice", "stopPrice"):
            if name in params:
                params[name] = _on_grid(
                    exchange, market, params[name], "stop price", "PRICE_FILTER", exchange.price_to_precision
                )
        conditional = "triggerPrice" in params or "trailingPercent" in params
        params = {**params, "clientOrderId": client_id}
        try:
            raw = await self._call(
                exchange.create_order, market["symbol"], kind, side.value, amount, limit, params, mutating=True
            )
        except UpstreamUncertain:
            self._uncertain[client_id] = None
            while len(self._uncertain) > MAX_REMEMBERED_ORDERS:
                self._uncertain.popitem(last=False)
            return await self._resolve(exchange, market, client_id, conditional)
        return self._decode_order(raw, conditional, fallback_client_id=client_id, placing=True)

    async def _resolve(self, exchange: Any, market: dict, client_id: str, conditional: bool) -> Order:
        """After an uncertain submit: the order, if the exchange has it by our client id."""
        try:
            raw = await self._call(
                exchange.fetch_order, "", market["symbol"], {"clientOrderId": client_id, "trigger": conditional}
            )
        except NotFound:
            raise UpstreamUncertain(
                f"{self.exchange_id} did not confirm order {client_id} and does not list it yet; "
                "it may or may not be placed: look it up by client order id before sending it again"
            ) from None
        except GatewayError:
            raise UpstreamUncertain(
                f"{self.exchange_id} did not confirm order {client_id}; it may or may not be placed"
            ) from None
        return self._decode_order(raw, conditional, fallback_client_id=client_id, placing=True)

    def _decode_order(
        self, raw: Any, conditional: bool | None, fallback_client_id: str | None = None, *, placing: bool = False
    ) -> Order:
        """An exchange order into the model. An answer that cannot be read is uncertain when it
        answers a placement (the order may exist) and unavailable otherwise."""
        try:
            order, is_conditional = self._to_order(raw, conditional, fallback_client_id)
        except (_Garbage, AttributeError, TypeError, KeyError, ValueError) as exc:
            failure = UpstreamUncertain if placing else UpstreamUnavailable
            raise failure(
                f"{self.exchange_id}'s answer for an order could not be read ({type(exc).__name__})"
            ) from None
        self._remember(order, is_conditional)
        return order

    def _decode_listed(self, raws: Any, conditional: bool) -> list[Order]:
        """Listed orders, leaving out those in markets the venue does not trade (another market
        type, a symbol outside the model): the internal model cannot hold them."""
        if not isinstance(raws, list):
            raise UpstreamUnavailable(f"{self.exchange_id}'s order list could not be read")
        return [
            self._decode_order(raw, conditional)
            for raw in raws
            if isinstance(raw, dict) and raw.get("symbol") in self._internal
        ]

    def _to_order(self, raw: dict, conditional: bool | None, fallback_client_id: str | None) -> tuple[Order, bool]:
        info = raw.get("info") or {}
        order_id = raw.get("id")
        symbol = self._internal.get(raw.get("symbol"))
        if order_id is None or symbol is None:
            raise _Garbage("order without id or known symbol")
        if conditional is None:
            conditional = "algoId" in info or raw.get("triggerPrice") is not None
        side = Side(raw.get("side") or "buy")
        order_type = _order_type(raw, info)
        created = _time(raw.get("timestamp")) or utcnow()
        updated = _time(raw.get("lastUpdateTimestamp")) or created
        filled = _num(raw.get("filled")) or Decimal(0)
        status = _status(raw.get("status"), filled)
        trail = (
            _num(info.get("callbackRate") or info.get("priceRate")) if order_type is OrderType.TRAILING_STOP else None
        )
        order = Order(
            id=str(order_id),
            client_order_id=raw.get("clientOrderId") or fallback_client_id or str(order_id),
            symbol=symbol,
            asset_class=AssetClass.CRYPTO,
            side=side,
            type=order_type,
            time_in_force=_time_in_force(raw.get("timeInForce")),
            status=status,
            created_at=created,
            updated_at=updated,
            submitted_at=created,
            qty=_num(raw.get("amount")),
            filled_qty=filled,
            filled_avg_price=_num(raw.get("average")) if filled else None,
            limit_price=_num(raw.get("price")) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=_num(raw.get("triggerPrice"))
            if order_type is not OrderType.LIMIT and order_type is not OrderType.MARKET
            else None,
            trail_percent=trail
            if trail is not None
            else (Decimal(1) if order_type is OrderType.TRAILING_STOP else None),
            filled_at=updated if status is OrderStatus.FILLED else None,
            canceled_at=updated if status is OrderStatus.CANCELED else None,
        )
        return order, bool(conditional)

    async def _lookup(self, exchange: Any, order_id: str) -> tuple[str, bool]:
        """An order's (symbol, conditional): remembered, or found among the open orders."""
        known = self._orders.get(order_id)
        if known is not None:
            return known
        for order in await self._open_orders(exchange):
            if order.id == order_id:
                return self._orders[order_id]
        raise NotFound(f"order not found: {order_id[:64]}")

    async def get_order(self, order_id: str, nested: bool = False) -> Order:
        exchange = await self._ready()
        symbol, conditional = await self._lookup(exchange, order_id)
        market = self._market(symbol)
        raw = await self._call(exchange.fetch_order, order_id, market["symbol"], {"trigger": conditional})
        order = self._decode_order(raw, conditional)
        exits = self._exits.get(order.id)
        if exits is not None and nested:
            order.legs = [await self.get_order(leg) for leg in exits.placed]
        return order

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        exchange = await self._ready()
        order_id = self._client_ids.get(client_order_id)
        if order_id is None:
            for order in await self._open_orders(exchange):
                if order.client_order_id == client_order_id:
                    return order
            raise NotFound("order not found for that client_order_id")
        return await self.get_order(order_id, nested=True)

    async def _open_orders(self, exchange: Any, ccxt_symbol: str | None = None) -> list[Order]:
        plain = await self._call(exchange.fetch_open_orders, ccxt_symbol)
        triggers = await self._call(exchange.fetch_open_orders, ccxt_symbol, None, None, {"trigger": True})
        return self._decode_listed(plain, False) + self._decode_listed(triggers, True)

    async def list_orders(self, query: OrderQuery) -> list[Order]:
        exchange = await self._ready()
        await self.sync_exits()
        if query.status == "open":
            orders = await self._watched_open_orders(exchange, query.symbols)
        else:
            orders = await self._history(exchange, query)
        return _filter(orders, query)

    async def _watched_open_orders(self, exchange: Any, symbols: tuple[str, ...]) -> list[Order]:
        """Open orders of ``symbols``; without any, of the symbols with a position or an open order
        (as last seen), or of every symbol when the last full sweep is FULL_SWEEP_S old."""
        loop = asyncio.get_running_loop()
        meanwhile: set[str] = set()  # an order placed while this listing runs must stay watched
        self._listings.append(meanwhile)
        try:
            if not symbols and loop.time() - self._last_sweep >= FULL_SWEEP_S:
                self._last_sweep = loop.time()
                orders = await self._open_orders(exchange)
            else:
                orders = []
                for symbol in sorted(symbols or self._position_symbols | self._order_symbols):
                    if symbol in self._markets:
                        orders += await self._open_orders(exchange, self._markets[symbol]["symbol"])
        finally:
            self._listings.remove(meanwhile)
        if not symbols:
            self._order_symbols = {o.symbol for o in orders if o.status.is_open} | meanwhile
        return orders

    async def _history(self, exchange: Any, query: OrderQuery) -> list[Order]:
        """Closed and open orders of the symbols asked for, else of every symbol the venue has
        seen an order in (exchanges list history per symbol)."""
        symbols = [s for s in query.symbols if s in self._markets] or sorted({s for s, _ in self._orders.values()})
        since = int(query.after.timestamp() * 1000) if query.after else None
        found: dict[str, Order] = {o.id: o for o in await self._open_orders(exchange)}
        for symbol in symbols:
            ccxt_symbol = self._markets[symbol]["symbol"]
            for conditional in (False, True):
                params = {"trigger": True} if conditional else {}
                for order in self._decode_listed(
                    await self._call(exchange.fetch_orders, ccxt_symbol, since, None, params), conditional
                ):
                    found[order.id] = order
        return list(found.values())

    async def cancel_order(self, order_id: str) -> None:
        exchange = await self._ready()
        symbol, conditional = await self._lookup(exchange, order_id)
        market = self._market(symbol)
        await self._call(exchange.cancel_order, order_id, market["symbol"], {"trigger": conditional}, mutating=True)
        exits = self._exits.get(order_id)
        if exits is not None and not exits.placed:
            del self._exits[order_id]  # an entry canceled before it filled owes nothing

    async def cancel_all_orders(self) -> list[BulkResult]:
        exchange = await self._ready()
        results = []
        for order in await self._open_orders(exchange):
            try:
                await self.cancel_order(order.id)
                results.append(BulkResult(id=order.id, status=200, order=replace(order, status=OrderStatus.CANCELED)))
            except GatewayError as exc:
                results.append(BulkResult(id=order.id, status=_bulk_status(exc), message=exc.message))
        return results

    # The exchange-side dead man's switch (Binance USD-M ``countdownCancelAll``).

    @property
    def has_countdown(self) -> bool:
        """Whether the exchange offers countdownCancelAll (Binance USD-M futures)."""
        return self.exchange_id in COUNTDOWN_EXCHANGES

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        """(Re)arm the exchange's countdown for ``symbol``: unless renewed within
        ``countdown_ms``, the exchange cancels the symbol's open orders; 0 stops it."""
        if not self.has_countdown:
            raise self._not_served("an exchange-side countdown (countdownCancelAll)")
        exchange = await self._ready()
        market = self._market(symbol)
        await self._call(
            exchange.fapiPrivatePostCountdownCancelAll, {"symbol": market["id"], "countdownTime": int(countdown_ms)}
        )

    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        """Cancel, then place the changed order (most exchanges cannot amend a stop). If the new
        order fails, the old one stays canceled: the venue never holds more than was asked."""
        old = await self.get_order(order_id)
        if not old.status.is_open:
            raise OrderRejected("order is not open and cannot be replaced")
        await self.cancel_order(order_id)
        intent = OrderIntent(
            symbol=old.symbol,
            asset_class=old.asset_class,
            side=old.side,
            type=old.type,
            time_in_force=change.time_in_force or old.time_in_force,
            qty=change.qty or ((old.qty or Decimal(0)) - old.filled_qty),
            limit_price=change.limit_price or old.limit_price,
            stop_price=change.stop_price or old.stop_price,
            trail_percent=change.trail or old.trail_percent,
            client_order_id=change.client_order_id,
        )
        new = await self.submit_order(intent)
        new.replaces = old.id
        return new

    async def close_position(self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None) -> Order:
        position = await self.get_position(symbol)
        size = abs(position.qty)
        if qty is not None and percentage is not None:
            raise OrderRejected("give qty or percentage, not both")
        amount = qty if qty is not None else size * percentage / 100 if percentage is not None else size
        if amount <= 0 or amount > size:
            raise OrderRejected(f"cannot close {amount} of a {size} position")
        await self._ready()
        step = _step(self._exchange, (self._market(symbol).get("precision") or {}).get("amount"))
        if step:
            amount = (amount // step) * step  # a percentage rounds down to the step
        return await self.submit_order(
            OrderIntent(
                symbol=symbol,
                asset_class=AssetClass.CRYPTO,
                side=Side.SELL if position.qty > 0 else Side.BUY,
                type=OrderType.MARKET,
                time_in_force=TimeInForce.GTC,
                qty=amount,
                reduce_only=True,
            )
        )

    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        if cancel_orders:
            await self.cancel_all_orders()
        results = []
        for position in await self.list_positions():
            try:
                results.append(
                    BulkResult(id=position.symbol, status=200, order=await self.close_position(position.symbol))
                )
            except GatewayError as exc:
                results.append(BulkResult(id=position.symbol, status=_bulk_status(exc), message=exc.message))
        return results

    # -----------------------------------------------------------------------------------
    # Emulated oto / bracket exits

    async def sync_exits(self) -> None:
        """Place the exits of entries that filled since; cancel a bracket's other exit when one
        filled. Called on every list_orders (the gateway's reconcile)."""
        if not self._exits:
            return
        exchange = await self._ready()
        async with self._exit_lock:
            for exits in list(self._exits.values()):
                try:
                    if exits.placed:
                        await self._one_cancels_other(exchange, exits)
                    else:
                        entry = await self.get_order(exits.entry_id)
                        await self._advance_exits(exchange, exits, entry)
                except GatewayError as exc:
                    log.warning(
                        "ccxt %s: exits of order %s not synced: %s", self.exchange_id, exits.entry_id, exc.message
                    )

    async def _advance_exits(self, exchange: Any, exits: _Exits, entry: Order) -> list[Order]:
        """Place the exits once the entry has filled (for what filled); returns the exits placed."""
        done = not entry.status.is_open
        if entry.status is not OrderStatus.FILLED and not (done and entry.filled_qty > 0):
            if done:  # closed with nothing filled: nothing to protect
                self._exits.pop(exits.entry_id, None)
            return []
        market = self._market(exits.symbol)
        tick = _step(exchange, (market.get("precision") or {}).get("price"))
        # Exit prices come from the policy (an attached stop is rounded to cents) and may be off the
        # exchange's grid; rounded toward the entry they protect at least as much as asked.
        up = exits.side is Side.SELL  # a sell exit protects a long: its stop rounds up, its target down
        placed: list[Order] = []
        legs = []
        if exits.stop_loss is not None:
            sl = exits.stop_loss
            kind = "limit" if sl.limit_price is not None else "market"
            limit = _round(sl.limit_price, tick, up) if sl.limit_price is not None else None
            legs.append(("sl", kind, limit, {"triggerPrice": _round(sl.stop_price, tick, up)}))
        if exits.take_profit is not None:
            legs.append(("tp", "limit", _round(exits.take_profit.limit_price, tick, not up), {}))
        for tag, kind, price, params in legs:
            client_id = _leg_client_id(tag, exits.entry_client_id)
            try:
                if client_id in self._client_ids:
                    placed.append(await self.get_order(self._client_ids[client_id]))
                    continue
                params = {**params, "reduceOnly": True}
                placed.append(
                    await self._place(
                        exchange, market, exits.symbol, kind, exits.side, entry.filled_qty, price, params, client_id
                    )
                )
            except GatewayError as exc:
                exits.attempts += 1
                if exits.attempts >= LEG_ATTEMPTS:
                    log.error(
                        "ccxt %s: gave up placing the %s exit of order %s: %s (position unprotected)",
                        self.exchange_id,
                        tag,
                        exits.entry_id,
                        exc.message,
                    )
                    self._exits.pop(exits.entry_id, None)
                else:
                    log.warning(
                        "ccxt %s: %s exit of order %s not placed yet: %s",
                        self.exchange_id,
                        tag,
                        exits.entry_id,
                        exc.message,
                    )
                return placed
        exits.placed = [o.id for o in placed]
        if len(placed) < 2:
            self._exits.pop(exits.entry_id, None)  # a lone exit needs no watching
        return placed

    async def _one_cancels_other(self, exchange: Any, exits: _Exits) -> None:
        legs = [await self.get_order(leg) for leg in exits.placed]
        if any(leg.status is OrderStatus.FILLED for leg in legs) or all(not leg.status.is_open for leg in legs):
            for leg in legs:
                if leg.status.is_open:
                    try:
                        await self.cancel_order(leg.id)
                    except NotFound:
                        pass
            self._exits.pop(exits.entry_id, None)


# ---------------------------------------------------------------------------------------
# Helpers


def _capabilities(exchange_id: str, urls: dict, sandbox: bool, streamed: bool) -> VenueCapabilities:
    """Legs are emulated (no native classes); a replace is cancel + new; exits are reduce-only.
    A venue pointed at a loopback address is a paper broker; the exchange's sandbox is a sandbox;
    anything else may be real money."""
    api = urls.get("api")
    host = urlsplit(api).hostname if isinstance(api, str) else None
    if sandbox:
        environment = "sandbox"
    elif host in ("127.0.0.1", "localhost", "::1"):
        environment = "paper"
    else:
        environment = "live"
    return VenueCapabilities(
        order_classes={},
        amend=False,
        reduce_only=True,
        event_stream=streamed,
        environment=environment,
        rate_limit_per_min=2400 if exchange_id in SUPPORTED_EXCHANGES else None,
    )


def _rebase(api: dict, base: str) -> dict:
    """Every URL of ccxt's ``urls['api']`` (nested or not) moved to ``base``, paths kept."""
    root = base.rstrip("/")
    out: dict = {}
    for key, value in api.items():
        if isinstance(value, dict):
            out[key] = _rebase(value, base)
        elif isinstance(value, str):
            out[key] = root + urlsplit(value).path
        else:
            out[key] = value
    return out


def _order_args(intent: OrderIntent) -> tuple[str, Decimal | None, dict]:
    """ccxt's create_order type, price and params for an intent's entry."""
    params: dict[str, Any] = {}
    if intent.reduce_only:
        params["reduceOnly"] = True
    if intent.type is OrderType.MARKET:
        return "market", None, params
    if intent.type is OrderType.LIMIT:
        return "limit", intent.limit_price, {**params, "timeInForce": _TIFS[intent.time_in_force]}
    if intent.type is OrderType.STOP:
        return "market", None, {**params, "triggerPrice": intent.stop_price}
    if intent.type is OrderType.STOP_LIMIT:
        return "limit", intent.limit_price, {**params, "triggerPrice": intent.stop_price}
    return "market", None, {**params, "trailingPercent": str(intent.trail_percent)}


def _on_grid(exchange: Any, market: dict, value: Decimal, what: str, rule: str, rounder: Callable) -> str:
    """``value`` as the exchange's precision writes it; refused (not silently rounded) when it is
    not already on the exchange's grid: a rounded order is not the order the policy judged."""
    try:
        text = rounder(market["symbol"], format(value, "f"))
        on_grid = Decimal(text) == value
    except (cx.BaseError, InvalidOperation, ValueError, TypeError):
        on_grid, text = False, ""
    if not on_grid:
        raise OrderRejected(
            f"{what} {format(value.normalize(), 'f')} is not a multiple of the venue's increment ({rule})"
        )
    return text


def _round(value: Decimal, tick: Decimal | None, up: bool) -> Decimal:
    if not tick:
        return value
    steps = (value / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * tick).normalize()


# The HTTP status of the last answer in this task (ccxt raises before its caller sees it).
_HTTP_STATUS: contextvars.ContextVar[int | None] = contextvars.ContextVar("ccxt_http_status", default=None)


def _remember_status(original: Callable) -> Callable:
    def on_rest_response(code, reason, url, method, headers, body, request_headers, request_body):
        _HTTP_STATUS.set(code)
        return original(code, reason, url, method, headers, body, request_headers, request_body)

    return on_rest_response


def _maybe_applied(exc: cx.BaseError) -> bool:
    """Whether a failed mutating call may still have reached the exchange."""
    cause = exc.__cause__
    if isinstance(cause, (aiohttp.ClientConnectorError, socket.gaierror)):
        return False  # never connected: nothing was sent
    if isinstance(exc, cx.OnMaintenance):
        return False  # the exchange answered that it is down
    if cause is not None or isinstance(exc, cx.RequestTimeout):
        return True  # sent, and the answer was lost
    # An HTTP answer without an error code: a 5xx may have been applied, a 4xx was refused.
    return re.search(r" 5\d\d ", str(exc)) is not None


def _num(value: Any) -> Decimal | None:
    """An exchange number into Decimal (None stays None). Floats go through repr; more than 12
    places are rounded (ccxt computes some fields in binary floating point)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Garbage("boolean where a number belongs")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise _Garbage("not a number") from None
    if not number.is_finite():
        raise _Garbage("not a finite number")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        number = number.quantize(_PRECISION, rounding=ROUND_HALF_EVEN)
    return number


def _safe_num(value: Any) -> Decimal | None:
    try:
        return _num(value)
    except _Garbage:
        return None


def _step(exchange: Any, precision: Any) -> Decimal | None:
    """A precision from ccxt as an increment: tick-size mode gives it directly, decimal-places
    mode gives a count of places."""
    value = _safe_num(precision)
    if value is None:
        return None
    if exchange is not None and getattr(exchange, "precisionMode", None) == ccxt_async.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _order_type(raw: dict, info: dict) -> OrderType:
    native = str(info.get("orderType") or info.get("type") or "").upper()
    if "TRAILING" in native:
        return OrderType.TRAILING_STOP
    if native in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        return OrderType.STOP  # a trigger order; the internal model has one trigger direction
    if native in ("STOP", "TAKE_PROFIT"):
        return OrderType.STOP_LIMIT
    kind = raw.get("type")
    trigger = raw.get("triggerPrice") is not None
    if kind == "limit":
        return OrderType.STOP_LIMIT if trigger else OrderType.LIMIT
    return OrderType.STOP if trigger else OrderType.MARKET


def _status(value: Any, filled: Decimal) -> OrderStatus:
    # An unknown or missing status counts as open: for risk it is safer to keep reserving for an
    # order than to forget one.
    if value == "closed":
        return OrderStatus.FILLED
    if value == "canceled":
        return OrderStatus.CANCELED
    if value == "expired":
        return OrderStatus.EXPIRED
    if value == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW


def _time_in_force(value: Any) -> TimeInForce:
    return {"IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}.get(str(value).upper(), TimeInForce.GTC)


def _filter(orders: list[Order], query: OrderQuery) -> list[Order]:
    def wanted(order: Order) -> bool:
        if query.status != "all" and order.status.is_open != (query.status == "open"):
            return False
        return (
            (query.after is None or order.submitted_at > query.after)
            and (query.until is None or order.submitted_at < query.until)
            and (not query.symbols or order.symbol in query.symbols)
            and (query.side is None or order.side == query.side)
        )

    unique = {o.id: o for o in orders if wanted(o)}
    ordered = sorted(unique.values(), key=lambda o: o.submitted_at, reverse=query.direction == "desc")
    return ordered[: query.limit]


def _leg_client_id(tag: str, entry_client_id: str) -> str:
    # Derived, so a retry after a lost answer finds the same exit; short enough for Binance (36).
    return f"{tag}-{hashlib.sha256(entry_client_id.encode()).hexdigest()[:32]}"


def _bulk_status(exc: GatewayError) -> int:
    return {"not_found": 404, "insufficient_funds": 403, "order_rejected": 422}.get(exc.kind, 500)
