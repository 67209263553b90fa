"""A seeded price path per symbol, so the paper venues serve bars, trades, quotes and order
books that move like a market and are the same every time for the same seed.

The path is a Brownian motion in log price, built by the Lévy (midpoint) construction: the value
at any step index is found by halving the interval [0, 2^LEVELS] down to it, each midpoint drawn
from a Gaussian keyed by (seed, symbol, step length, node). So any point in time costs O(LEVELS)
without walking from an origin, a contiguous range shares almost all of its nodes, and the same
seed always gives the same path. Each timeframe has its own path (bars of different lengths are
not aggregates of each other), all with the configured daily volatility.

The path is anchored at the symbol's current mark: the bar containing "now" closes at the mark, so
a mark pinned with ``POST /_paper/prices`` moves the whole history with it and the latest trade is
the price orders fill at.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from statistics import NormalDist

from ..errors import InvalidRequest
from ..market import Bar, DataKind, OrderBook, Page, Quote, SeriesQuery, TimeFrame, Trade, floor_time, utc

LEVELS = 42  # 2^42 steps: more than the epoch to now in seconds, and every coarser step
TICK_STEP_S = 10  # one trade (and one quote) every 10 seconds of the path
_NORMAL = NormalDist()
_MAX_NODES = 500_000  # memoized midpoints kept per path before starting afresh
_VOLUME_BASE = {"crypto": 50.0, "us_equity": 20_000.0, "us_option": 20.0}


def _gaussian(key: bytes) -> float:
    digest = hashlib.blake2b(key, digest_size=8).digest()
    (raw,) = struct.unpack(">Q", digest)
    u = (raw + 0.5) / 2**64  # strictly inside (0, 1)
    return _NORMAL.inv_cdf(u)


def _uniform(key: bytes) -> float:
    (raw,) = struct.unpack(">Q", hashlib.blake2b(key, digest_size=8).digest())
    return raw / 2**64


class _Walk:
    """One standard Brownian motion over integer steps, memoized."""

    def __init__(self, key: bytes):
        self.key = key
        top = 2**LEVELS
        self.nodes: dict[int, float] = {0: 0.0, top: math.sqrt(top) * _gaussian(key + b"|top")}

    def at(self, index: int) -> float:
        nodes = self.nodes
        hit = nodes.get(index)
        if hit is not None:
            return hit
        if len(nodes) > _MAX_NODES:
            top = 2**LEVELS
            self.nodes = nodes = {0: 0.0, top: nodes[top]}
        lo, hi = 0, 2**LEVELS
        w_lo, w_hi = nodes[0], nodes[hi]
        while True:
            mid = (lo + hi) // 2
            w_mid = nodes.get(mid)
            if w_mid is None:
                spread = math.sqrt((hi - lo) / 4)
                w_mid = (w_lo + w_hi) / 2 + spread * _gaussian(self.key + b"|" + str(mid).encode())
                nodes[mid] = w_mid
            if mid == index:
                return w_mid
            if index < mid:
                hi, w_hi = mid, w_mid
            else:
                lo, w_lo = mid, w_mid


@dataclass(frozen=True)
class PathConfig:
    seed: int = 7
    daily_volatility: float = 0.02  # standard deviation of one day's log return
    spread_bps: float = 2.0  # quoted spread around the path
    tick_s: int = TICK_STEP_S  # seconds between trades (and steps of the live walk)

    def __post_init__(self) -> None:
        if not 1 <= self.tick_s <= 3600:
            raise ValueError("tick_s must be between 1 and 3600 seconds")
        if not 0 <= self.daily_volatility <= 1:
            raise ValueError("daily_volatility must be between 0 and 1")
        if not 0 <= self.spread_bps <= 1000:
            raise ValueError("spread_bps must be between 0 and 1000")


class PricePath:
    """Bars, trades, quotes and books for a symbol whose current price is ``mark``."""

    def __init__(self, config: PathConfig | None = None):
        self.config = config or PathConfig()
        self._walks: dict[tuple[str, int], _Walk] = {}

    # -- the path -----------------------------------------------------------------------------

    def _walk(self, symbol: str, step_s: int) -> _Walk:
        walk = self._walks.get((symbol, step_s))
        if walk is None:
            if len(self._walks) > 4096:
                self._walks.clear()
            walk = self._walks[(symbol, step_s)] = _Walk(f"{self.config.seed}|{symbol}|{step_s}".encode())
        return walk

    def _sigma(self, step_s: int) -> float:
        return self.config.daily_volatility * math.sqrt(step_s / 86400)

    def _price(self, symbol: str, mark: float, step_s: int, index: int, anchor: int) -> float:
        walk = self._walk(symbol, step_s)
        return mark * math.exp(self._sigma(step_s) * (walk.at(index) - walk.at(anchor)))

    def _noise(self, symbol: str, step_s: int, index: int, what: bytes) -> float:
        return _uniform(f"{self.config.seed}|{symbol}|{step_s}|{index}|".encode() + what)

    # -- what the venue serves ---------------------------------------------------------------

    def bar(self, symbol: str, mark: Decimal, now: datetime, timeframe: TimeFrame, index: int, tick: Decimal,
            volume_base: float) -> Bar:
        step = timeframe.seconds
        anchor = _anchor(now, step)
        m = float(mark)
        open_ = self._price(symbol, m, step, index, anchor)
        close = self._price(symbol, m, step, index + 1, anchor)
        sigma = self._sigma(step)
        high = max(open_, close) * math.exp(sigma * 0.5 * self._noise(symbol, step, index, b"h"))
        low = min(open_, close) * math.exp(-sigma * 0.5 * self._noise(symbol, step, index, b"l"))
        volume = volume_base * (step / 60) * (0.5 + self._noise(symbol, step, index, b"v"))
        count = 1 + int(self._noise(symbol, step, index, b"n") * 50 * max(1, step // 60) ** 0.5)
        o, h, l, c = (_round(x, tick) for x in (open_, high, low, close))
        h, l = max(h, o, c), min(l, o, c)
        return Bar(
            t=datetime.fromtimestamp(index * step, tz=timezone.utc),
            open=o, high=h, low=l, close=c,
            volume=_round(volume, Decimal("0.0001")),
            trade_count=count,
            vwap=_round((open_ + close + high + low) / 4, tick),
        )

    def trade(self, symbol: str, mark: Decimal, now: datetime, index: int, tick: Decimal, volume_base: float) -> Trade:
        anchor = _anchor(now, self.config.tick_s)
        price = self._price(symbol, float(mark), self.config.tick_s, index, anchor)
        size = volume_base / 50 * (0.1 + self._noise(symbol, self.config.tick_s, index, b"s"))
        side = "buy" if self._noise(symbol, self.config.tick_s, index, b"d") < 0.5 else "sell"
        return Trade(
            t=datetime.fromtimestamp(index * self.config.tick_s, tz=timezone.utc),
            price=_round(price, tick), size=_round(size, Decimal("0.0001")), id=index, taker_side=side,
        )

    def quote(self, symbol: str, mark: Decimal, now: datetime, index: int, tick: Decimal, volume_base: float) -> Quote:
        anchor = _anchor(now, self.config.tick_s)
        mid = self._price(symbol, float(mark), self.config.tick_s, index, anchor)
        return self._quote_around(symbol, mid, datetime.fromtimestamp(index * self.config.tick_s, tz=timezone.utc), index,
                                  tick, volume_base)

    def _quote_around(self, symbol: str, mid: float, t: datetime, index: int, tick: Decimal, volume_base: float) -> Quote:
        half = mid * self.config.spread_bps / 20_000
        bid = _round(mid - half, tick, down=True)
        ask = _round(mid + half, tick, up=True)
        if ask <= bid:
            ask = bid + tick
        sizes = [volume_base / 20 * (0.2 + self._noise(symbol, self.config.tick_s, index, w)) for w in (b"bs", b"as")]
        return Quote(t=t, bid=bid, bid_size=_round(sizes[0], Decimal("0.0001")), ask=ask,
                     ask_size=_round(sizes[1], Decimal("0.0001")))

    def latest_trade(self, symbol: str, mark: Decimal, now: datetime, volume_base: float) -> Trade:
        """The last trade is at the mark (what orders fill at), now."""
        index = int(utc(now).timestamp()) // self.config.tick_s
        base = self.trade(symbol, mark, now, index, Decimal("1E-12"), volume_base)
        return Trade(t=_second(now), price=mark, size=base.size, id=index, taker_side=base.taker_side)

    def latest_quote(self, symbol: str, mark: Decimal, now: datetime, tick: Decimal, volume_base: float) -> Quote:
        index = int(utc(now).timestamp()) // self.config.tick_s
        return self._quote_around(symbol, float(mark), _second(now), index, tick, volume_base)

    def book(self, symbol: str, mark: Decimal, now: datetime, depth: int, tick: Decimal, volume_base: float) -> OrderBook:
        top = self.latest_quote(symbol, mark, now, tick, volume_base)
        index = int(utc(now).timestamp()) // self.config.tick_s
        bids, asks = [], []
        for level in range(depth):
            step = tick * level * max(1, int(float(mark) * 0.0001 / float(tick)))
            sizes = [volume_base / 20 * (0.2 + self._noise(symbol, level, index, w)) for w in (b"b", b"a")]
            bids.append((top.bid - step, _round(sizes[0], Decimal("0.0001"))))
            asks.append((top.ask + step, _round(sizes[1], Decimal("0.0001"))))
        return OrderBook(t=top.t, bids=tuple(b for b in bids if b[0] > 0), asks=tuple(asks))

    def step(self, symbol: str, mark: Decimal, since: datetime, now: datetime, tick: Decimal) -> Decimal:
        """The mark moved along the path from ``since`` to ``now`` (the live walk)."""
        a, b = (int(utc(t).timestamp()) // self.config.tick_s for t in (since, now))
        if a == b:
            return mark
        walk = self._walk(symbol, self.config.tick_s)
        moved = float(mark) * math.exp(self._sigma(self.config.tick_s) * (walk.at(b) - walk.at(a)))
        return max(_round(moved, tick), tick)

    # -- a page of a series -------------------------------------------------------------------

    def page(self, query: SeriesQuery, marks: dict[str, Decimal], now: datetime, tick_of, volume_of) -> Page:
        """One page of ``query`` for the symbols in ``marks`` (others are left out, as Alpaca
        does). The page token is "<symbol index>:<item offset>" into the sorted symbols."""
        step = query.timeframe.seconds if query.kind is DataKind.BARS else self.config.tick_s
        symbols = sorted(s for s in query.symbols if s in marks)
        first_symbol, offset = _parse_token(query.page_token, len(symbols))
        items: dict[str, list] = {}
        left = query.limit
        last = int(utc(now).timestamp()) // step  # the item containing now is the last one
        for position in range(first_symbol, len(symbols)):
            symbol = symbols[position]
            lo = -(-int(query.start.timestamp()) // step)  # first item starting at or after start
            hi = min(-(-int(query.end.timestamp()) // step), last + 1)  # items starting before end
            count = max(0, hi - lo)
            skip = offset if position == first_symbol else 0
            take = min(left, max(0, count - skip))
            if take:
                indices = (
                    range(hi - 1 - skip, hi - 1 - skip - take, -1) if query.descending else range(lo + skip, lo + skip + take)
                )
                items[symbol] = [self._item(query, symbol, marks[symbol], now, i, tick_of(symbol), volume_of(symbol))
                                 for i in indices]
                left -= take
            if left == 0:
                if skip + take < count:
                    return Page(items, f"{position}:{skip + take}")
                if position + 1 < len(symbols):
                    return Page(items, f"{position + 1}:0")
                return Page(items, None)
        return Page(items, None)

    def _item(self, query: SeriesQuery, symbol: str, mark: Decimal, now: datetime, index: int, tick: Decimal,
              volume_base: float):
        if query.kind is DataKind.BARS:
            return self.bar(symbol, mark, now, query.timeframe, index, tick, volume_base)
        if query.kind is DataKind.TRADES:
            return self.trade(symbol, mark, now, index, tick, volume_base)
        return self.quote(symbol, mark, now, index, tick, volume_base)


def volume_base(asset_class: str) -> float:
    return _VOLUME_BASE.get(asset_class, 100.0)


def _anchor(now: datetime, step_s: int) -> int:
    """The step index whose price is the mark: the end of the bar containing now."""
    return int(utc(now).timestamp()) // step_s + 1


def _second(now: datetime) -> datetime:
    return utc(now).replace(microsecond=0)


def _round(value: float, quantum: Decimal, *, down: bool = False, up: bool = False) -> Decimal:
    exact = Decimal(repr(value))
    if down:
        return (exact / quantum).to_integral_value(rounding="ROUND_FLOOR") * quantum
    if up:
        return (exact / quantum).to_integral_value(rounding="ROUND_CEILING") * quantum
    return exact.quantize(quantum, rounding=ROUND_HALF_UP) if quantum.as_tuple().exponent < 0 else (
        (exact / quantum).to_integral_value(rounding=ROUND_HALF_UP) * quantum
    )


def _parse_token(token: str | None, symbols: int) -> tuple[int, int]:
    if token is None or token == "":
        return 0, 0
    head, _, tail = token.partition(":")
    if not (head.isdigit() and tail.isdigit() and len(token) <= 24) or int(head) > max(symbols - 1, 0):
        raise InvalidRequest("invalid page_token")
    return int(head), int(tail)


def bar_start(now: datetime, timeframe: TimeFrame, back: int = 0) -> datetime:
    return floor_time(now, timeframe) - timedelta(seconds=timeframe.seconds * back)
