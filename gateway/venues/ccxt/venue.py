"""The ``ccxt`` venue: an exchange's linear derivatives through ccxt (async), behind ``Venue``.

Built for Binance USDⓈ-M (``binanceusdm``, the default), written against ccxt's unified API so
other derivatives exchanges can work too. Internal symbols are ``BASE/QUOTE`` (``BTC/USDT``); the
venue trades the exchange's linear perpetual for each (``BTC/USDT:USDT``).

The pieces: ``errors`` (ccxt's exceptions, one table), ``markets`` (which markets, the grid,
capabilities), ``codec`` (answers into the model), ``orders`` (the order calls), ``market_data``
(reads for bots) and ``user_stream`` (Binance's user data stream). A bot's own oto/bracket legs are
emulated by ``venues.emulation`` (the venue declares no native order classes).
``last_equity`` (the base of the daily loss limit) is the first equity seen in each UTC day.
ccxt's debug log (request headers) is silenced.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
from ccxt.base import errors as cx

from ...errors import GatewayError, NotFound, OrderRejected, UpstreamUnavailable
from ...model import Account, Asset, AssetClass, Clock, Position, utcnow
from ..base import TradingRules, Venue
from ..emulation import ExitEmulation
from .codec import Garbage, num, safe_num, to_position
from .errors import HTTP_STATUS, REQUEST_WEIGHTS, clean_message, remember_status, translate
from .market_data import CcxtMarketData
from .markets import capabilities, index_markets, increment, rebase
from .orders import CcxtOrders
from .user_stream import BinanceUserStream, supports_user_stream

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = {
    "warnOnFetchOpenOrdersWithoutSymbol": False,  # the venue lists open orders across symbols
    "fetchCurrencies": False,  # currencies are not needed, and cost calls to /sapi
}
LEVERAGE_TTL_S = 1.0
MARKETS_TTL_S = 3600.0  # new listings show up within the hour

# ccxt's logger writes request headers (the API key) at debug level: keep it quiet whatever
# level the process logs at.
_CCXT_LOG = logging.getLogger("gateway.venues.ccxt.wire")
_CCXT_LOG.setLevel(logging.WARNING)


class CcxtVenue(CcxtOrders, CcxtMarketData, Venue):
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
        self._settings_lock = asyncio.Lock()
        self._orders: OrderedDict[str, tuple[str, bool]] = OrderedDict()  # id -> (symbol, conditional)
        self._client_ids: OrderedDict[str, str] = OrderedDict()  # client order id -> order id
        self.exits = ExitEmulation(
            f"ccxt {exchange_id}",
            get_order=self.get_order,
            cancel_order=self.cancel_order,
            place_leg=self._place_exit,
            known_client_id=self._client_ids.get,
        )
        self._uncertain: OrderedDict[str, None] = OrderedDict()  # client ids of unconfirmed submits
        self._settings_cache: tuple[dict, float] | None = None  # fetch_leverages answer, when
        self._day: date | None = None
        self._day_equity = Decimal(0)
        # The exchange's own event stream, where the venue has a client for it (Binance USD-M).
        streamed = stream and supports_user_stream(exchange_id, self._options)
        self.user_stream = BinanceUserStream(self) if streamed else None
        self.capabilities = capabilities(exchange_id, self._urls, sandbox, streamed)

    def __repr__(self) -> str:
        return f"CcxtVenue({self.exchange_id!r})"

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
        exchange.on_rest_response = remember_status(exchange.on_rest_response)
        if self._sandbox:
            exchange.set_sandbox_mode(True)
        api = exchange.urls.get("api")
        for key, value in self._urls.items():
            if key == "api" and isinstance(value, str) and isinstance(api, dict):
                exchange.urls["api"] = rebase(api, value)
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
                        self._markets, self._internal = index_markets(exchange)
                    self._markets_at = now
        return exchange

    async def _call(self, fn: Callable, *args: Any, mutating: bool = False, **kwargs: Any) -> Any:
        """Run one ccxt call; its exceptions become gateway errors with safe messages."""
        failure: GatewayError | None = None
        HTTP_STATUS.set(None)
        self._count_request(REQUEST_WEIGHTS.get(getattr(fn, "__name__", ""), 1))
        try:
            return await fn(*args, **kwargs)
        except cx.BaseError as exc:
            failure = translate(exc, self.exchange_id, clean_message(exc, self.exchange_id, self._exchange), mutating)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            failure = UpstreamUnavailable(f"cannot reach {self.exchange_id}")
        raise failure

    def _market(self, symbol: str) -> dict:
        market = self._markets.get(symbol)
        if market is None:
            raise NotFound(f"{self.exchange_id} has no market for {symbol[:32]}")
        return market

    async def get_account(self) -> Account:
        exchange = await self._ready()
        balance, raw_positions = await asyncio.gather(
            self._call(exchange.fetch_balance), self._call(exchange.fetch_positions)
        )
        try:
            currency = self._settle_currency()
            if currency not in balance.get("total", {}):
                # An answer without the settlement currency is not an account of zero: it was
                # not read (a 200 that is not JSON parses to an empty balance). Fail closed.
                raise Garbage(f"no {currency} balance in the answer")
            total = num(balance.get("total", {}).get(currency)) or Decimal(0)
            free = num(balance.get("free", {}).get(currency)) or Decimal(0)
            used = num(balance.get("used", {}).get(currency)) or Decimal(0)
            positions = [p for p in (to_position(raw, self._internal) for raw in raw_positions) if p is not None]
            unrealized = sum((num(raw.get("unrealizedPnl")) or Decimal(0) for raw in raw_positions), Decimal(0))
            maintenance = sum((num(raw.get("maintenanceMargin")) or Decimal(0) for raw in raw_positions), Decimal(0))
        except (Garbage, AttributeError, TypeError) as exc:
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
            positions = [p for p in (to_position(r, self._internal) for r in raw) if p is not None]
            self._position_symbols = {p.symbol for p in positions}
            return positions
        except (Garbage, AttributeError, TypeError) as exc:
            raise UpstreamUnavailable(
                f"{self.exchange_id}'s positions could not be read ({type(exc).__name__})"
            ) from None

    async def get_position(self, symbol: str) -> Position:
        for position in await self.list_positions():
            if position.symbol == symbol:
                return position
        raise NotFound(f"position does not exist: {symbol[:32]}")

    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        exchange = await self._ready()
        market = self._market(symbol)
        ticker = await self._call(exchange.fetch_ticker, market["symbol"])
        try:
            for name in ("last", "close", "mark"):
                price = num(ticker.get(name))
                if price:
                    return price
        except Garbage:
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
            tick_size=increment(exchange, precision.get("price")),
            step_size=increment(exchange, precision.get("amount")),
            min_qty=safe_num((limits.get("amount") or {}).get("min")),
            max_qty=safe_num((limits.get("amount") or {}).get("max")),
            min_notional=safe_num((limits.get("cost") or {}).get("min")),
            max_leverage=int(leverage) if leverage else None,
        )

    async def get_clock(self) -> Clock:
        now = utcnow()  # crypto derivatives trade around the clock
        return Clock(timestamp=now, is_open=True, next_open=now, next_close=now + timedelta(days=1))

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
