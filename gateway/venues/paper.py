"""The ``paper`` venue: the embedded simulated broker behind the ``Venue`` interface.

Every trading call is a thin ``async`` wrapper over ``PaperEngine``; the engine is synchronous and
does no I/O. The engine already returns copies, so callers can never mutate its book through what
they get back. Market data and account reads come from ``paper_market`` (a seeded price path);
an optional live walk moves the marks along it.

Events: the engine's ``OrderUpdate`` and ``PositionUpdate`` values are published through
``Venue._publish`` as they happen (in process, so the stream is never down: subscribers get
``StreamStatus(connected=True)`` once, at ``start``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..errors import Forbidden, InvalidRequest
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
    Position,
    StreamStatus,
    VenueEvent,
    utcnow,
)
from ..ports import STREAM_FEEDS, MarketFeed, TickSink, Watchlist
from .base import TradingRules, Venue, VenueCapabilities
from .paper_data_stream import PaperFeed
from .paper_engine import PaperEngine
from .paper_market import DEFAULT_PAPER_RULES, PAPER_CONFIGURATIONS, PAPER_RULES, PaperMarketData
from .paper_prices import PricePath

PAPER_MAX_LEVERAGE = 125

_ALL_CLASSES = frozenset({OrderClass.BRACKET, OrderClass.OTO, OrderClass.OCO})


def paper_capabilities(engine: PaperEngine) -> VenueCapabilities:
    """What this engine carries natively. A lenient engine carries legs on every asset class;
    one with Alpaca's rules carries them on whole-share equities only (as Alpaca does), and a
    futures engine carries none (Binance has no OTO: exits are separate reduce-only orders)."""
    if engine.futures:
        classes: dict[AssetClass, frozenset[OrderClass]] = {}
    elif engine.alpaca_rules:
        classes = {AssetClass.US_EQUITY: _ALL_CLASSES, AssetClass.US_OPTION: frozenset()}
    else:
        classes = {asset_class: _ALL_CLASSES for asset_class in AssetClass}
    return VenueCapabilities(
        order_classes=classes,
        amend=True,
        reduce_only=True,  # the engine refuses a reduce_only order that would open or grow
        held_for_orders=engine.alpaca_rules,
        legs_need_whole_qty=engine.alpaca_rules,
        stop_limit_only=frozenset({AssetClass.CRYPTO}) if engine.alpaca_rules else frozenset(),
        no_resting_stops=frozenset({AssetClass.US_OPTION}) if engine.alpaca_rules else frozenset(),
        event_stream=True,
        environment="paper",
        rate_limit_per_min=None,
        open_orders_page=500,
    )


class PaperVenue(PaperMarketData, Venue):
    name = "paper"

    def __init__(
        self,
        engine: PaperEngine | None = None,
        *,
        starting_equity: Decimal = Decimal("100000"),
        seed_marks: bool = False,
        futures: bool = False,
        alpaca_rules: bool = False,
        prices: PricePath | None = None,
        walk_every_s: float | None = None,
    ):
        """Wrap ``engine``, or a fresh engine with ``starting_equity`` (and, with ``seed_marks``,
        the engine's seed marks; ``futures`` for a futures account; ``alpaca_rules`` for Alpaca's
        refusals, see ``PaperEngine``) when none is given."""
        if engine is None:
            engine = PaperEngine(
                starting_equity=starting_equity, seed_marks=seed_marks, futures=futures, alpaca_rules=alpaca_rules
            )
        self.engine = engine
        self.capabilities = paper_capabilities(engine)
        engine.add_listener(self._on_engine_event)
        self.prices = prices or PricePath()  # market data: a seeded path anchored at each mark
        # With ``walk_every_s`` the marks themselves follow the path (orders fill as prices move);
        # a symbol whose price was set with ``set_prices`` is pinned and stays where it was put.
        self.walk_every_s = walk_every_s
        self._pinned: set[str] = set()
        self._walker: asyncio.Task | None = None
        # Binance's countdownCancelAll: per symbol, the timer that cancels its open orders.
        self._countdowns: dict[str, asyncio.TimerHandle] = {}
        self._configurations: dict[str, Any] = dict(PAPER_CONFIGURATIONS)
        self._watchlists: dict[str, Watchlist] = {}
        self._feeds: set[PaperFeed] = set()  # market data streams (paper_data_stream)

    def _on_engine_event(self, event: VenueEvent) -> None:
        self._publish(event)

    async def start(self) -> None:
        """The engine lives in this process; only the live walk (if asked for) runs beside it.
        Subscribers hear that the stream is up (the ledger's cue to reconcile once)."""
        self._publish(StreamStatus(connected=True, at=utcnow()))
        if self.walk_every_s and self._walker is None:
            self._walker = asyncio.create_task(self._walk(), name="paper-price-walk")

    async def close(self) -> None:
        for handle in self._countdowns.values():
            handle.cancel()
        self._countdowns.clear()
        walker, self._walker = self._walker, None
        if walker is not None:
            walker.cancel()
            await asyncio.gather(walker, return_exceptions=True)

    # Prices: not part of Venue; the standalone paper broker's POST /_paper/prices uses it.
    async def set_prices(self, prices: Mapping[str, object]) -> None:
        self.engine.set_prices(prices)
        self._pinned.update(prices)
        self._marks_moved(prices)

    async def _walk(self) -> None:
        since = utcnow()
        while True:
            await asyncio.sleep(self.walk_every_s)
            now = utcnow()
            moved = {
                symbol: self.prices.step(symbol, mark, since, now, self._tick(symbol))
                for symbol, mark in self.engine.marks().items()
                if symbol not in self._pinned
            }
            since = now
            changed = {s: m for s, m in moved.items() if m != self.engine.marks().get(s)}
            if changed:
                self.engine.set_prices(changed)  # fills and triggers whatever the new prices reach
                self._marks_moved(changed)

    async def open_feed(self, feed: str, sink: TickSink) -> MarketFeed:
        if feed not in STREAM_FEEDS:
            return await super().open_feed(feed, sink)
        opened = PaperFeed(self, feed, sink, self._feeds.discard)
        self._feeds.add(opened)
        return opened

    def _marks_moved(self, symbols) -> None:
        for feed in list(self._feeds):
            feed.marks_moved(symbols)

    async def get_account(self) -> Account:
        return self.engine.get_account()

    async def list_positions(self) -> list[Position]:
        return self.engine.list_positions()

    async def get_position(self, symbol: str) -> Position:
        return self.engine.get_position(symbol)

    async def close_position(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        self._refuse_if_suspended()
        return self.engine.close_position(symbol, qty, percentage)

    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        self._refuse_if_suspended()
        return self.engine.close_all_positions(cancel_orders)

    async def submit_order(self, intent: OrderIntent) -> Order:
        self._refuse_if_suspended()
        return self.engine.submit_order(intent)

    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        self._refuse_if_suspended()
        return self.engine.replace_order(order_id, change)

    def _refuse_if_suspended(self) -> None:
        """Alpaca's account configuration ``suspend_trade``: while set, the broker refuses every
        new order (a replace and a close are new orders too); cancels still work."""
        if self._configurations.get("suspend_trade") is True:
            raise Forbidden("new orders are refused: trading is suspended on this account (suspend_trade)")

    # Binance's countdownCancelAll: the exchange-side dead man's switch.

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        """(Re)arm the countdown of ``symbol``; 0 stops it. When it runs out, every open order of
        the symbol is canceled, conditional ones too."""
        if symbol not in self.engine.marks():
            raise InvalidRequest(f"unknown symbol {symbol}")
        old = self._countdowns.pop(symbol, None)
        if old is not None:
            old.cancel()
        if countdown_ms > 0:
            loop = asyncio.get_running_loop()
            self._countdowns[symbol] = loop.call_later(countdown_ms / 1000, self._countdown_expired, symbol)

    def countdowns(self) -> list[str]:
        """Symbols whose countdown is running (the paper broker's stats show them)."""
        return sorted(self._countdowns)

    def _countdown_expired(self, symbol: str) -> None:
        self._countdowns.pop(symbol, None)
        self.engine.cancel_symbol_orders(symbol)

    async def cancel_order(self, order_id: str) -> None:
        self.engine.cancel_order(order_id)

    async def cancel_all_orders(self) -> list[BulkResult]:
        return self.engine.cancel_all_orders()

    async def get_order(self, order_id: str, nested: bool = False) -> Order:
        return self.engine.get_order(order_id, nested)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        return self.engine.get_order_by_client_id(client_order_id)

    async def list_orders(self, query: OrderQuery) -> list[Order]:
        return self.engine.list_orders(query)

    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        return self.engine.latest_price(symbol, asset_class)

    async def get_clock(self) -> Clock:
        return self.engine.get_clock()

    async def get_asset(self, symbol: str) -> Asset:
        return self.engine.get_asset(symbol)

    async def list_markets(self) -> list[TradingRules]:
        """Every symbol with a mark (the paper venue trades nothing it cannot price)."""
        markets = []
        for symbol in sorted(self.engine.marks()):
            tick, step = PAPER_RULES.get(symbol, DEFAULT_PAPER_RULES)
            leverage = PAPER_MAX_LEVERAGE if self.engine.futures else None
            markets.append(TradingRules(self.engine.get_asset(symbol), tick, step, min_qty=step, max_leverage=leverage))
        return markets

    # Futures settings: a futures engine has them; a cash engine keeps Venue's refusals.

    async def get_leverage(self, symbol: str) -> int:
        return self.engine.get_leverage(symbol) if self.engine.futures else await super().get_leverage(symbol)

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        if not self.engine.futures:
            return await super().set_leverage(symbol, leverage)
        return self.engine.set_leverage(symbol, leverage)

    async def get_margin_mode(self, symbol: str) -> str:
        return self.engine.get_margin_mode(symbol) if self.engine.futures else await super().get_margin_mode(symbol)

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        if not self.engine.futures:
            return await super().set_margin_mode(symbol, mode)
        self.engine.set_margin_mode(symbol, mode)
