"""Market data in the one internal model: what a venue's ``MarketData`` port answers and every
dialect renders (Alpaca's data API, Binance klines/depth/tickers). Prices and sizes are
``Decimal``; times are aware UTC datetimes.

A query is validated here once (range, limit, timeframe), so every venue gets the same bounded
request and every dialect refuses the same oversized one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from .errors import InvalidRequest, NotFound
from .model import AssetClass

MAX_PAGE = 10_000  # Alpaca's largest page; Binance klines stop at 1,500
MAX_SYMBOLS = 200  # symbols per multi-symbol request
MAX_BOOK_DEPTH = 1000
# How far back one request may reach, in bars of its timeframe: a start this far from the end is
# an oversized range (refused, not silently truncated).
MAX_RANGE_BARS = 5_000_000


class NotServed(NotFound):
    """The venue cannot answer this call (the paper venue has no corporate actions; a crypto
    exchange has no stock quotes). Refused loudly instead of answered empty."""


class DataKind(str, enum.Enum):
    BARS = "bars"
    TRADES = "trades"
    QUOTES = "quotes"


class TimeUnit(str, enum.Enum):
    MINUTE = "Min"
    HOUR = "Hour"
    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"


_UNIT_SECONDS = {
    TimeUnit.MINUTE: 60,
    TimeUnit.HOUR: 3600,
    TimeUnit.DAY: 86400,
    TimeUnit.WEEK: 7 * 86400,
    TimeUnit.MONTH: 30 * 86400,  # a bar's nominal length; month bars start on the 1st at the venue
}
# Alpaca's bounds per unit: 1-59Min, 1-23Hour, 1Day, 1Week, 1/2/3/4/6/12Month.
_UNIT_AMOUNTS = {
    TimeUnit.MINUTE: range(1, 60),
    TimeUnit.HOUR: range(1, 24),
    TimeUnit.DAY: range(1, 2),
    TimeUnit.WEEK: range(1, 2),
    TimeUnit.MONTH: (1, 2, 3, 4, 6, 12),
}


@dataclass(frozen=True, slots=True)
class TimeFrame:
    amount: int
    unit: TimeUnit

    def __post_init__(self) -> None:
        if self.amount not in _UNIT_AMOUNTS[self.unit]:
            raise InvalidRequest(f"invalid timeframe {self.amount}{self.unit.value}")

    @property
    def seconds(self) -> int:
        return self.amount * _UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit.value}"


ONE_MINUTE = TimeFrame(1, TimeUnit.MINUTE)
ONE_DAY = TimeFrame(1, TimeUnit.DAY)


@dataclass(frozen=True, slots=True)
class Bar:
    t: datetime  # the bar's start
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int = 0
    vwap: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    t: datetime
    price: Decimal
    size: Decimal
    id: int = 0
    taker_side: str | None = None  # "buy" or "sell" where the venue says


@dataclass(frozen=True, slots=True)
class Quote:
    t: datetime
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    t: datetime
    bids: tuple[tuple[Decimal, Decimal], ...]  # (price, size), best first
    asks: tuple[tuple[Decimal, Decimal], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    latest_trade: Trade | None = None
    latest_quote: Quote | None = None
    minute_bar: Bar | None = None
    daily_bar: Bar | None = None
    prev_daily_bar: Bar | None = None


@dataclass(frozen=True, slots=True)
class FundingRate:
    """A perpetual's funding: the mark and index prices now, the rate to be paid next and when."""

    symbol: str
    mark_price: Decimal
    index_price: Decimal
    rate: Decimal
    next_funding: datetime
    t: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a time series per symbol; ``next_page_token`` continues it (None: complete)."""

    items: dict[str, list]  # symbol -> [Bar | Trade | Quote], ascending unless asked otherwise
    next_page_token: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """A historical request: one kind of series for some symbols over [start, end)."""

    kind: DataKind
    asset_class: AssetClass
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    limit: int = 1000
    timeframe: TimeFrame = ONE_MINUTE  # bars only
    page_token: str | None = None
    descending: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())  # venue-specific pass-through (feed, adjustment)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise InvalidRequest("symbols is required")
        if len(self.symbols) > MAX_SYMBOLS:
            raise InvalidRequest(f"at most {MAX_SYMBOLS} symbols per request")
        if not 1 <= self.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidRequest("start and end must carry a time zone")
        if self.end < self.start:
            raise InvalidRequest("end must not be before start")
        step = self.timeframe.seconds if self.kind is DataKind.BARS else 1
        if (self.end - self.start).total_seconds() / step > MAX_RANGE_BARS:
            raise InvalidRequest(
                f"the range from {self.start.isoformat()} to {self.end.isoformat()} is too large: at most "
                f"{MAX_RANGE_BARS} {'bars' if self.kind is DataKind.BARS else 'seconds'} per request"
            )

    @property
    def cache_key(self) -> tuple:
        return (
            "series",
            self.kind,
            self.asset_class,
            self.symbols,
            self.start,
            self.end,
            self.limit,
            self.timeframe,
            self.page_token,
            self.descending,
            self.extra,
        )


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def floor_time(moment: datetime, timeframe: TimeFrame) -> datetime:
    """The start of the bar containing ``moment``."""
    step = timeframe.seconds
    seconds = int(utc(moment).timestamp()) // step * step
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def default_start(end: datetime, timeframe: TimeFrame, kind: DataKind) -> datetime:
    """Alpaca's default start is the beginning of the current day; one day back keeps a bot
    that sends no start from getting an empty answer on a weekend."""
    if kind is DataKind.BARS and timeframe.seconds >= 86400:
        return end - timedelta(days=365)
    return end - timedelta(days=1)
