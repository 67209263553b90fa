"""The interfaces the core depends on: the upstream ``Venue`` (with its capabilities and event
stream), the bot-facing ``Backend`` dialects serve, and the ``Authenticator``.

``Venue`` is what the gateway calls upstream (paper engine, Alpaca over HTTP, ccxt).
``Backend`` is what a dialect calls for an authenticated bot: the same operations plus the
``Caller``. The gateway's risk pipeline is a Backend in front of a Venue; the standalone paper
broker is ``DirectBackend`` in front of the paper venue. So one dialect serves both.

Errors are ``gateway.errors`` exceptions; venues translate their upstream's errors into them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import logging

from .errors import GatewayError, OrderRejected, Unauthorized, UpstreamUnavailable
from .market import Bar, FundingRate, NotServed, OrderBook, Page, Quote, SeriesQuery, Snapshot, Trade
from .model import (
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Caller,
    Clock,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    Position,
    Side,
    VenueEvent,
)

if TYPE_CHECKING:
    from .market_data import AccountService, MarketReads

log = logging.getLogger(__name__)

MAX_PAGES = 200  # 100,000 open orders at Alpaca's 500 a page


class IncompleteListing(UpstreamUnavailable):
    """A paged listing could not be read to its end."""


@dataclass(frozen=True, slots=True)
class TradingRules:
    """One tradable symbol and the venue's order rules for it, as far as the venue says (None:
    no such rule, or unknown). Served to bots that must round to them (Binance exchangeInfo)."""

    asset: Asset
    tick_size: Decimal | None = None  # price increment
    step_size: Decimal | None = None  # quantity increment
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    max_leverage: int | None = None  # the venue's own ceiling (the policy's may be lower)


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    """What a venue does natively, so the gateway never guesses (and refuses what it cannot do
    instead of silently emulating it against a real account).

    - ``order_classes``: classes whose legs the venue carries natively, per asset class
      (Alpaca: bracket/OTO/OCO on whole-share equities only; crypto simple only).
    - ``amend``: the venue replaces an open order in place (Alpaca PATCH, Binance PUT);
      otherwise a replace is cancel + new.
    - ``reduce_only``: the venue enforces reduce-only / closePosition orders (Binance), so a
      gateway stop can never open a position there.
    - ``held_for_orders``: an open sell holds the shares it would sell (Alpaca); a second sell
      of held shares is refused by the venue.
    - ``legs_need_whole_qty``: legs only on whole-unit quantities (Alpaca: no legs on
      fractional or notional orders).
    - ``stop_limit_only``: asset classes whose stops must carry a limit (Alpaca crypto).
    - ``no_resting_stops``: asset classes the venue takes no stop orders for at all (Alpaca
      options): the gateway emulates their protective stops from the price feed.
    - ``event_stream``: the venue pushes order events (``subscribe``); without it the ledger
      relies on reconcile alone.
    - ``environment``: ``paper`` (simulated), ``sandbox`` (the broker's test account) or
      ``live`` (real money).
    - ``rate_limit_per_min``: the account's request budget (Alpaca 200 requests; Binance 2,400
      weight), shared by the gateway and every bot behind it.
    - ``open_orders_page``: the most open orders one list call returns (paging beyond).
    """

    order_classes: Mapping[AssetClass, frozenset[OrderClass]] = field(default_factory=dict)
    amend: bool = True
    reduce_only: bool = False
    held_for_orders: bool = False
    legs_need_whole_qty: bool = False
    stop_limit_only: frozenset[AssetClass] = frozenset()
    no_resting_stops: frozenset[AssetClass] = frozenset()
    event_stream: bool = False
    environment: str = "paper"
    rate_limit_per_min: int | None = None
    open_orders_page: int = 500

    def native_legs(self, asset_class: AssetClass, order_class: OrderClass) -> bool:
        return order_class is OrderClass.SIMPLE or order_class in self.order_classes.get(asset_class, frozenset())


EventSink = Callable[[VenueEvent], None]
Unsubscribe = Callable[[], None]


class _Refuses:
    """Ports whose methods a venue may leave out: the default refuses loudly (``NotServed``, a
    404 in the bot's wire format), never an empty answer."""

    name: str = "venue"

    def _not_served(self, what: str) -> NotServed:
        return NotServed(f"the {self.name} venue does not serve {what}")


class MarketData(_Refuses):
    """The market-data port: what a venue can tell about prices (read-only; nothing here may
    change the account). Every method refuses (``NotServed``) unless the venue overrides it, so
    a venue that cannot answer says so instead of answering empty."""

    async def series(self, query: SeriesQuery) -> Page:
        """Historical bars, trades or quotes (one page)."""
        raise self._not_served(f"historical {query.kind.value} for {query.asset_class.value}")

    async def latest_trades(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Trade]:
        """Symbols the venue does not know are left out of the answer (Alpaca does the same)."""
        raise self._not_served(f"latest trades for {asset_class.value}")

    async def latest_quotes(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Quote]:
        raise self._not_served(f"latest quotes for {asset_class.value}")

    async def latest_bars(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Bar]:
        raise self._not_served(f"latest bars for {asset_class.value}")

    async def snapshots(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Snapshot]:
        raise self._not_served(f"snapshots for {asset_class.value}")

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        raise self._not_served("order books")

    async def funding_rate(self, symbol: str) -> FundingRate:
        raise self._not_served("funding rates")

    async def funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        """Several symbols' funding at once; a venue with a batch call overrides this, so one
        request for every symbol costs one upstream call, not one per symbol."""
        return [await self.funding_rate(symbol) for symbol in symbols]

    async def funding_history(self, symbol: str, start: datetime | None, end: datetime | None, limit: int) -> list[FundingRate]:
        raise self._not_served("funding rate history")

    async def open_interest(self, symbol: str) -> Decimal:
        raise self._not_served("open interest")


# -- market data streams ------------------------------------------------------------------
# Feeds by name (Alpaca's paths: stocks "v2/iex", "v2/sip", "v2/test"; "v1beta3/crypto/us";
# options "v1beta1/indicative", "v1beta1/opra") and the asset class each carries.
STREAM_FEEDS: Mapping[str, AssetClass] = {
    "v2/iex": AssetClass.US_EQUITY,
    "v2/sip": AssetClass.US_EQUITY,
    "v2/test": AssetClass.US_EQUITY,
    "v1beta3/crypto/us": AssetClass.CRYPTO,
    "v1beta1/indicative": AssetClass.US_OPTION,
    "v1beta1/opra": AssetClass.US_OPTION,
}
# Channels a feed carries: trades, quotes and minute bars (bars), the current minute's bar as it
# changes (updatedBars) and the day's bar (dailyBars).
STREAM_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars")


@dataclass(frozen=True, slots=True)
class MarketTick:
    """One market data message: ``item`` for ``symbol`` on ``channel`` (one of STREAM_CHANNELS)."""

    channel: str
    symbol: str
    item: Trade | Quote | Bar


TickSink = Callable[[MarketTick], None]


class MarketFeed(ABC):
    """One upstream connection to a feed, shared by every bot on it (the dialect fans out)."""

    @abstractmethod
    async def update(self, subscriptions: Mapping[str, frozenset[str]]) -> None:
        """Make the upstream subscription exactly ``subscriptions`` (channel -> symbols, "*" for all)."""

    @abstractmethod
    async def close(self) -> None: ...


class MarketStreams(_Refuses):
    """Live market data. ``open_feed`` connects once; ticks go to ``sink`` (synchronously, on
    the event loop; it must not block) until the feed is closed."""

    async def open_feed(self, feed: str, sink: TickSink) -> MarketFeed:
        raise self._not_served(f"the {feed} market data stream")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of the account's orders (Binance userTrades)."""

    id: str
    order_id: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    t: datetime
    maker: bool = False


@dataclass(frozen=True, slots=True)
class Income:
    """One entry of the account's income history (realized PnL, commission, funding fee)."""

    symbol: str
    kind: str  # Binance's incomeType: REALIZED_PNL, COMMISSION, FUNDING_FEE, ...
    amount: Decimal  # signed: a fee paid is negative
    asset: str
    t: datetime
    trade_id: str = ""


@dataclass(frozen=True, slots=True)
class CalendarDay:
    date: date
    open: str  # "09:30", exchange local time (America/New_York), as Alpaca writes it
    close: str


@dataclass(frozen=True, slots=True)
class Watchlist:
    id: str
    name: str
    symbols: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


class AccountReads(_Refuses):
    """The broker-account calls bots make at startup or for reporting, besides trading: asset
    lists, calendar, account configuration, activities, portfolio history, watchlists, option
    contracts, corporate actions, fills. Each refuses (``NotServed``) unless the venue has it.
    Answers whose shape is the broker's own (configurations, activities, portfolio history,
    option contracts, announcements) are JSON objects in Alpaca's wire shape."""

    async def list_assets(self, asset_class: AssetClass | None = None) -> list[Asset]:
        raise self._not_served("asset lists")

    async def calendar(self, start: date, end: date) -> list[CalendarDay]:
        raise self._not_served("the market calendar")

    async def account_configurations(self) -> dict[str, Any]:
        raise self._not_served("account configurations")

    async def update_account_configurations(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        raise self._not_served("account configurations")

    async def account_activities(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        raise self._not_served("account activities")

    async def portfolio_history(self, params: Mapping[str, str]) -> dict[str, Any]:
        raise self._not_served("portfolio history")

    async def list_watchlists(self) -> list[Watchlist]:
        raise self._not_served("watchlists")

    async def get_watchlist(self, watchlist_id: str) -> Watchlist:
        raise self._not_served("watchlists")

    async def create_watchlist(self, name: str, symbols: Sequence[str]) -> Watchlist:
        raise self._not_served("watchlists")

    async def update_watchlist(self, watchlist_id: str, name: str | None, symbols: Sequence[str] | None) -> Watchlist:
        raise self._not_served("watchlists")

    async def delete_watchlist(self, watchlist_id: str) -> None:
        raise self._not_served("watchlists")

    async def option_contracts(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``{"option_contracts": [...], "next_page_token": ...}``"""
        raise self._not_served("option contracts")

    async def option_contract(self, symbol_or_id: str) -> dict[str, Any]:
        raise self._not_served("option contracts")

    async def corporate_announcements(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        raise self._not_served("corporate actions")

    async def fills(self, symbol: str | None, start: datetime | None, end: datetime | None, limit: int) -> list[Fill]:
        """The account's executions, oldest first (``symbol`` None: every symbol)."""
        raise self._not_served("the account's trades")

    async def income(
        self, symbol: str | None, kind: str | None, start: datetime | None, end: datetime | None, limit: int
    ) -> list[Income]:
        """Binance's income history. By default realized PnL and commissions from ``fills``; a
        venue that knows its funding payments overrides it."""
        if kind not in (None, "REALIZED_PNL", "COMMISSION"):
            raise self._not_served(f"{kind} income")
        rows: list[Income] = []
        for fill in await self.fills(symbol, start, end, 1000):
            if kind in (None, "REALIZED_PNL") and fill.realized_pnl:
                rows.append(Income(fill.symbol, "REALIZED_PNL", fill.realized_pnl, fill.commission_asset, fill.t, fill.id))
            if kind in (None, "COMMISSION") and fill.commission:
                rows.append(Income(fill.symbol, "COMMISSION", -fill.commission, fill.commission_asset, fill.t, fill.id))
        return rows[-limit:]

    async def commission_rate(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(maker, taker) as fractions."""
        raise self._not_served("commission rates")


class Venue(MarketData, AccountReads, MarketStreams, ABC):
    """One upstream trading account."""

    name: str = "venue"
    capabilities: VenueCapabilities = VenueCapabilities()
    # Told of every request the venue sends to its broker, with its weight: the account's
    # shared request budget (gateway/pipeline/budget.py) counts them.
    request_hook: Callable[[int], None] | None = None

    def _count_request(self, weight: int = 1) -> None:
        hook = self.request_hook
        if hook is not None:
            hook(weight)

    def subscribe(self, sink: EventSink) -> Unsubscribe:
        """Deliver the venue's order and account events to ``sink`` (synchronously, in event
        order, on the event loop) until the returned callable is called. A venue without a
        stream never calls it; one with a stream sends ``StreamStatus(connected=True)`` whenever
        it (re)connects."""
        sinks = self.__dict__.setdefault("_event_sinks", [])
        sinks.append(sink)

        def unsubscribe() -> None:
            if sink in sinks:
                sinks.remove(sink)

        return unsubscribe

    def _publish(self, event: VenueEvent) -> None:
        # A copy: a sink may unsubscribe (itself or another) while being called.
        for sink in list(self.__dict__.get("_event_sinks", ())):
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - one broken consumer must not starve the others
                log.exception("venue event sink failed")

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open sessions, load markets. Called once before any other call."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions. Idempotent."""

    @abstractmethod
    async def get_account(self) -> Account: ...

    @abstractmethod
    async def list_positions(self) -> list[Position]: ...

    @abstractmethod
    async def get_position(self, symbol: str) -> Position:
        """Raises NotFound when there is no open position in ``symbol``."""

    @abstractmethod
    async def close_position(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        """Market order that reduces the position by qty, by percentage, or entirely."""

    @abstractmethod
    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]: ...

    @abstractmethod
    async def submit_order(self, intent: OrderIntent) -> Order:
        """Submit. Must be idempotent on ``intent.client_order_id``: a second submit with the
        same id returns the existing order (or raises OrderRejected), never a second order."""

    @abstractmethod
    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        """Returns the new order; the old one becomes ``replaced``."""

    @abstractmethod
    async def cancel_order(self, order_id: str) -> None: ...

    @abstractmethod
    async def cancel_all_orders(self) -> list[BulkResult]: ...

    @abstractmethod
    async def get_order(self, order_id: str, nested: bool = False) -> Order: ...

    @abstractmethod
    async def get_order_by_client_id(self, client_order_id: str) -> Order: ...

    @abstractmethod
    async def list_orders(self, query: OrderQuery) -> list[Order]: ...

    async def list_open_orders(self) -> list[Order]:
        """Every open order, legs nested, paged until complete (oldest first). Raises
        IncompleteListing when the pages do not add up: a partial list must never be taken for
        the whole, or the ledger would drop what it did not see."""
        page = self.capabilities.open_orders_page
        seen: dict[str, Order] = {}
        after = None
        for _ in range(MAX_PAGES):
            batch = await self.list_orders(
                OrderQuery(status="open", limit=page, nested=True, direction="asc", after=after)
            )
            fresh = [o for o in batch if o.id not in seen]
            for order in fresh:
                seen[order.id] = order
            if len(batch) < page:
                return list(seen.values())
            if not fresh:
                raise IncompleteListing(f"{self.name}: a full page of open orders brought nothing new")
            # Alpaca's ``after`` is exclusive on submission time: step back one microsecond so
            # orders sharing the boundary's timestamp are not skipped (duplicates are dropped).
            after = max(o.submitted_at for o in fresh) - timedelta(microseconds=1)
        raise IncompleteListing(f"{self.name}: more than {MAX_PAGES} pages of open orders")

    @abstractmethod
    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        """Reference price (last trade or mark). Raises NotFound when the venue has none."""

    @abstractmethod
    async def get_clock(self) -> Clock: ...

    @abstractmethod
    async def get_asset(self, symbol: str) -> Asset:
        """Raises NotFound for an unknown symbol."""

    # Margin venues (futures). Cash venues keep the defaults: 1x, and no changes accepted.

    async def get_leverage(self, symbol: str) -> int:
        return 1

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        """Set the symbol's leverage; returns the leverage now in force. A cash venue is always
        1x: asking for 1x is answered, anything else is refused."""
        if leverage == 1:
            return 1
        raise OrderRejected(f"{self.name} does not support leverage settings")

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        """``isolated`` or ``cross``."""
        raise OrderRejected(f"{self.name} does not support margin modes")

    async def get_margin_mode(self, symbol: str) -> str:
        return "cross"

    async def list_markets(self) -> list[TradingRules]:
        """Every symbol the venue trades, with its order rules. Empty when the venue cannot list
        them (a dialect that needs the list then serves none)."""
        return []

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        """The exchange-side dead man's switch (Binance ``countdownCancelAll``): cancel every open
        order of ``symbol``, conditional ones included, unless renewed within ``countdown_ms``;
        0 stops the countdown. A venue without one refuses."""
        raise self._not_served("an exchange-side countdown (countdownCancelAll)")


class Backend(ABC):
    """What a dialect serves to an authenticated caller."""

    @abstractmethod
    async def get_account(self, caller: Caller) -> Account: ...

    @abstractmethod
    async def list_positions(self, caller: Caller) -> list[Position]: ...

    @abstractmethod
    async def get_position(self, caller: Caller, symbol: str) -> Position: ...

    @abstractmethod
    async def close_position(
        self, caller: Caller, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order: ...

    @abstractmethod
    async def close_all_positions(self, caller: Caller, cancel_orders: bool = False) -> list[BulkResult]: ...

    @abstractmethod
    async def submit_order(self, caller: Caller, intent: OrderIntent) -> Order: ...

    async def submit_orders(self, caller: Caller, intents: Sequence[OrderIntent]) -> list[Order | GatewayError]:
        """A batch (Binance ``batchOrders``): one result per order, in order, an error for each
        one refused. By default one by one; a backend that judges orders decides the batch in one
        step (``RiskGateway``)."""
        results: list[Order | GatewayError] = []
        for intent in intents:
            try:
                results.append(await self.submit_order(caller, intent))
            except GatewayError as exc:
                results.append(exc)
        return results

    @abstractmethod
    async def replace_order(self, caller: Caller, order_id: str, change: OrderReplace) -> Order: ...

    @abstractmethod
    async def cancel_order(self, caller: Caller, order_id: str) -> None: ...

    @abstractmethod
    async def cancel_all_orders(self, caller: Caller) -> list[BulkResult]: ...

    @abstractmethod
    async def get_order(self, caller: Caller, order_id: str, nested: bool = False) -> Order: ...

    @abstractmethod
    async def get_order_by_client_id(self, caller: Caller, client_order_id: str) -> Order: ...

    @abstractmethod
    async def list_orders(self, caller: Caller, query: OrderQuery) -> list[Order]: ...

    @abstractmethod
    async def latest_price(self, caller: Caller, symbol: str, asset_class: AssetClass) -> Decimal: ...

    @abstractmethod
    async def get_clock(self, caller: Caller) -> Clock: ...

    @abstractmethod
    async def get_asset(self, caller: Caller, symbol: str) -> Asset: ...

    # Margin (futures) operations; a backend that has no margin venue refuses them.

    async def get_leverage(self, caller: Caller, symbol: str) -> int:
        return 1

    async def set_leverage(self, caller: Caller, symbol: str, leverage: int) -> int:
        raise OrderRejected("leverage settings are not supported here")

    async def set_margin_mode(self, caller: Caller, symbol: str, mode: str) -> None:
        raise OrderRejected("margin modes are not supported here")

    # Reads added for the Binance dialect. A backend in front of one venue (``self.venue``) passes
    # them through by default, so the answers never depend on a subclass remembering to.

    async def get_margin_mode(self, caller: Caller, symbol: str) -> str:
        venue = getattr(self, "venue", None)
        return await venue.get_margin_mode(symbol) if isinstance(venue, Venue) else "cross"

    async def list_markets(self, caller: Caller) -> list[TradingRules]:
        venue = getattr(self, "venue", None)
        return await venue.list_markets() if isinstance(venue, Venue) else []

    # Market data and the broker account's other calls. A backend in front of one venue serves
    # them through one shared service each (cache, coalescing, per-address limits; configuration
    # policy and audit), built on first use unless the owner assigns its own in ``__init__``:
    # ``self.market_reads = MarketReads(venue)``, ``self.account_service = AccountService(...)``.

    def market_data(self) -> "MarketReads":
        reads = self.__dict__.get("market_reads")
        if reads is None:
            from .market_data import MarketReads

            reads = self.__dict__["market_reads"] = MarketReads(self._the_venue())
        return reads

    def account(self) -> "AccountService":
        service = self.__dict__.get("account_service")
        if service is None:
            from .market_data import AccountService

            service = self.__dict__["account_service"] = AccountService(
                self._the_venue(),
                audit=getattr(self, "audit", None),
                scopes=getattr(self, "scopes", None),
            )
        return service

    def market_streams(self) -> MarketStreams:
        """The live market data feeds the dialects fan out to bots (the venue's)."""
        return self._the_venue()

    def _the_venue(self) -> Venue:
        venue = getattr(self, "venue", None)
        if not isinstance(venue, Venue):
            raise NotServed("this backend has no venue to read market data from")
        return venue

    async def leverage_limit(self, caller: Caller, symbol: str) -> Decimal | None:
        """The highest leverage this caller may set for ``symbol`` (None: no limit besides the
        venue's). Dialects advertise it (Binance leverageBracket), so a bot that reads "the
        maximum available leverage" reads the policy's."""
        return None

    async def countdown_cancel_all(self, caller: Caller, symbol: str, countdown_ms: int) -> None:
        """A caller's countdownCancelAll. Refused by default: behind the gateway the exchange's
        countdown is the gateway's own heartbeat (a bot must not stop or stretch it)."""
        raise NotServed("countdownCancelAll is kept by the gateway itself (its broker heartbeat)")

    def order_events(self, caller: Caller, sink: EventSink) -> Unsubscribe | None:
        """Push this caller's order and account events to ``sink`` until the returned callable
        is called; the stream dialects (Alpaca ``/stream``, Binance's user data stream) serve
        them to bots in the bot's wire format.

        ``sink`` is called synchronously on the event loop with ``OrderUpdate`` and
        ``PositionUpdate`` values (``StreamStatus`` may be passed too and is ignored by the
        dialects); it must not block. Only events about this caller's own orders and account
        may reach it.

        None (the default): this backend has no event stream, and the dialects say so (Alpaca
        answers ``listen`` with no streams; Binance refuses a listenKey). The gateway's backend
        implements it from its ledger; ``DirectBackend`` passes the venue's events through."""
        return None


class DirectBackend(Backend):
    """A venue served as-is, no risk checks: the standalone paper broker."""

    def __init__(self, venue: Venue):
        self.venue = venue
        from .market_data import AccountService, MarketReads

        # No cache: a paper broker's data must follow a price pinned a moment ago. No public
        # budget either: the broker's own rate limit (if configured) is the one that applies.
        self.market_reads = MarketReads(venue, ttl_s=0.0, limiter=None)
        # The broker applies its owner's configuration changes (the gateway judges its bots' ones).
        self.account_service = AccountService(venue, judge=False)

    async def get_account(self, caller):
        return await self.venue.get_account()

    async def list_positions(self, caller):
        return await self.venue.list_positions()

    async def get_position(self, caller, symbol):
        return await self.venue.get_position(symbol)

    async def close_position(self, caller, symbol, qty=None, percentage=None):
        return await self.venue.close_position(symbol, qty, percentage)

    async def close_all_positions(self, caller, cancel_orders=False):
        return await self.venue.close_all_positions(cancel_orders)

    async def submit_order(self, caller, intent):
        return await self.venue.submit_order(intent)

    async def replace_order(self, caller, order_id, change):
        return await self.venue.replace_order(order_id, change)

    async def cancel_order(self, caller, order_id):
        return await self.venue.cancel_order(order_id)

    async def cancel_all_orders(self, caller):
        return await self.venue.cancel_all_orders()

    async def get_order(self, caller, order_id, nested=False):
        return await self.venue.get_order(order_id, nested)

    async def get_order_by_client_id(self, caller, client_order_id):
        return await self.venue.get_order_by_client_id(client_order_id)

    async def list_orders(self, caller, query):
        return await self.venue.list_orders(query)

    async def latest_price(self, caller, symbol, asset_class):
        return await self.venue.latest_price(symbol, asset_class)

    async def get_clock(self, caller):
        return await self.venue.get_clock()

    async def get_asset(self, caller, symbol):
        return await self.venue.get_asset(symbol)

    async def get_leverage(self, caller, symbol):
        return await self.venue.get_leverage(symbol)

    async def set_leverage(self, caller, symbol, leverage):
        return await self.venue.set_leverage(symbol, leverage)

    async def set_margin_mode(self, caller, symbol, mode):
        return await self.venue.set_margin_mode(symbol, mode)

    async def get_margin_mode(self, caller, symbol):
        return await self.venue.get_margin_mode(symbol)

    async def list_markets(self, caller):
        return await self.venue.list_markets()

    async def countdown_cancel_all(self, caller, symbol, countdown_ms):
        return await self.venue.countdown_cancel_all(symbol, countdown_ms)

    def order_events(self, caller, sink):
        """The venue's own events, as they are: one account, no one else's orders."""
        return self.venue.subscribe(sink)


class Authenticator(ABC):
    """How a dialect checks a bot's credential. Implementations compare in constant time."""

    @abstractmethod
    def authenticate(self, key_id: str, secret: str, dialect: str, remote: str | None) -> Caller:
        """Raises Unauthorized (never saying which part was wrong)."""

    @abstractmethod
    def hmac_secret(self, key_id: str, dialect: str, remote: str | None) -> tuple[bytes, Caller]:
        """For signature dialects (Binance): the shared secret to verify an HMAC with, and the
        caller it stands for. Raises Unauthorized for an unknown, revoked or expired key."""

    def verify_signed(
        self, key_id: str, dialect: str, remote: str | None, signed_with: Callable[[bytes], bool]
    ) -> Caller:
        """A signed request's caller: ``signed_with(secret)`` says whether the request was signed
        with the credential's secret. Implementations that keep revoked credentials check the
        signature BEFORE the credential's standing, so naming a revoked key is not proof of
        holding it. Raises Unauthorized."""
        secret, caller = self.hmac_secret(key_id, dialect, remote)
        if not signed_with(secret):
            self.record_failure(caller.key_id, remote, "bad request signature")
            raise Unauthorized("invalid credentials")
        return caller

    def record_failure(self, key_id: str, remote: str | None, reason: str) -> None:
        """A failure the dialect found itself (a replayed signature): count it, report it."""
