"""The gateway side of the read path: market data and the broker account's other calls.

``MarketReads`` stands between every bot and the venue's ``MarketData`` port:
- identical requests in flight are coalesced into one venue call, and answers are kept for a
  short TTL, so a hundred bots polling the same ticker cost one upstream call per TTL;
- callers that are not authenticated (Binance's public endpoints) are rate-limited per source
  address (``admit_public``, in request weight), and dialects answer them only for symbols the
  venue lists, so no stranger can make the gateway spend the account's budget.

``AccountService`` serves ``AccountReads`` and judges the few writes in it: an account-configuration
change that would loosen a broker protection is refused (a policy decision, not a bot's), a
tightening one is forwarded and audited; writes need the trade scope.

Both take the venue as a constructor argument; ``Backend.market_data()`` / ``Backend.account()``
build one per backend on first use.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .errors import Forbidden, InvalidRequest
from .market import Bar, FundingRate, OrderBook, Page, Quote, SeriesQuery, Snapshot, Trade
from .model import AssetClass, Caller

log = logging.getLogger("gateway.market_data")

DEFAULT_TTL_S = 1.0
MAX_CACHE_ENTRIES = 4096
MAX_CACHED_ITEMS = 2000  # a larger answer (a page of history) is coalesced but not kept
PUBLIC_LIMIT_PER_MIN = 1200  # request weight per source address per minute (half Binance's 2,400)
PUBLIC_BURST = 200
MAX_TRACKED_ADDRESSES = 10_000


class RateLimitExceeded(Exception):
    """A source address spent its public budget; ``retry_after_s`` says when it refills."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"rate limit exceeded; retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens = tokens
        self.at = at


class AddressLimiter:
    """A token bucket per source address (``per_min`` a minute, bursts up to ``burst``)."""

    def __init__(self, per_min: int = PUBLIC_LIMIT_PER_MIN, burst: int = PUBLIC_BURST, monotonic=time.monotonic):
        if per_min <= 0 or burst <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_min / 60.0
        self.burst = float(burst)
        self.monotonic = monotonic
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, address: str | None, cost: float = 1.0) -> None:
        """Spend ``cost``; raises RateLimitExceeded when the address has too little left."""
        key = address or "?"
        now = self.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            while len(self._buckets) > MAX_TRACKED_ADDRESSES:
                self._buckets.popitem(last=False)  # the longest-idle address starts afresh
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self._buckets.move_to_end(key)
        if bucket.tokens < cost:
            raise RateLimitExceeded(max(1.0, math.ceil((cost - bucket.tokens) / self.rate)))
        bucket.tokens -= cost


_DEFAULT_LIMITER = object()


def _size(value: Any) -> int:
    """Items in an answer: a page's series, or the entries of a mapping or list."""
    if isinstance(value, Page):
        return sum(len(items) for items in value.items.values())
    if isinstance(value, (dict, list, tuple)):
        return len(value)
    return 1


class MarketReads:
    """The venue's market data behind a short cache with request coalescing."""

    def __init__(
        self,
        venue,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        limiter: AddressLimiter | None | object = _DEFAULT_LIMITER,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        """``limiter``: the per-address budget of unauthenticated requests (None: unlimited, as
        the paper broker is unless told otherwise)."""
        self.venue = venue
        self.ttl_s = ttl_s
        self.limiter = AddressLimiter(monotonic=monotonic) if limiter is _DEFAULT_LIMITER else limiter
        self.monotonic = monotonic
        self.upstream_calls = 0  # venue calls made (metrics; tests assert on it)
        # Called before each venue call (a cache miss): the account's request budget may refuse it.
        self.before_upstream: Callable[[], None] | None = None
        self._cache: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self._inflight: dict[tuple, asyncio.Future] = {}

    # -- the mechanism ----------------------------------------------------------------------

    async def cached(self, key: tuple, fetch: Callable[[], Awaitable[Any]], ttl_s: float | None = None) -> Any:
        """``fetch()``'s answer for ``key``: from the cache while fresh, else from the one call in
        flight for it, else from a new call. Failures are shared by the waiters, never cached."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        hit = self._cache.get(key)
        if hit is not None and self.monotonic() - hit[0] <= ttl:
            return hit[1]
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fetch(key, fetch, ttl))
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: one waiter giving up (its client went away) must not cancel the others' call
        return await asyncio.shield(future)

    async def _fetch(self, key: tuple, fetch: Callable[[], Awaitable[Any]], ttl: float) -> Any:
        if self.before_upstream is not None:
            self.before_upstream()
        self.upstream_calls += 1
        value = await fetch()
        if ttl > 0 and _size(value) <= MAX_CACHED_ITEMS:
            now = self.monotonic()
            # Entries are kept in insertion order: drop the expired ones from the front, so a bot
            # paging through history does not leave its pages behind in memory.
            while self._cache and now - next(iter(self._cache.values()))[0] > self.ttl_s:
                self._cache.popitem(last=False)
            self._cache[key] = (now, value)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return value

    def admit_public(self, remote: str | None, cost: float = 1.0) -> None:
        """An unauthenticated request from ``remote``; raises RateLimitExceeded past its budget."""
        if self.limiter is not None:
            self.limiter.take(remote, cost)

    # -- the port, cached -------------------------------------------------------------------

    async def series(self, query: SeriesQuery) -> Page:
        return await self.cached(query.cache_key, lambda: self.venue.series(query))

    async def latest_trades(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Trade]:
        symbols = tuple(symbols)
        return await self.cached(("trade", asset_class, symbols), lambda: self.venue.latest_trades(asset_class, symbols))

    async def latest_quotes(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Quote]:
        symbols = tuple(symbols)
        return await self.cached(("quote", asset_class, symbols), lambda: self.venue.latest_quotes(asset_class, symbols))

    async def latest_bars(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Bar]:
        symbols = tuple(symbols)
        return await self.cached(("bar", asset_class, symbols), lambda: self.venue.latest_bars(asset_class, symbols))

    async def snapshots(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Snapshot]:
        symbols = tuple(symbols)
        return await self.cached(("snapshot", asset_class, symbols), lambda: self.venue.snapshots(asset_class, symbols))

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        return await self.cached(("book", symbol, depth), lambda: self.venue.order_book(symbol, depth))

    async def funding_rate(self, symbol: str) -> FundingRate:
        return await self.cached(("funding", symbol), lambda: self.venue.funding_rate(symbol))

    async def funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        symbols = tuple(symbols)
        return await self.cached(("fundings", symbols), lambda: self.venue.funding_rates(symbols))

    async def funding_history(
        self, symbol: str, start: datetime | None, end: datetime | None, limit: int
    ) -> list[FundingRate]:
        key = ("funding-history", symbol, start, end, limit)
        return await self.cached(key, lambda: self.venue.funding_history(symbol, start, end, limit))

    async def open_interest(self, symbol: str) -> Decimal:
        return await self.cached(("open-interest", symbol), lambda: self.venue.open_interest(symbol))


# ---------------------------------------------------------------------------------------
# The broker account's other calls


TRADE_SCOPE = "trade"
# Account configurations that are broker protections, and how a change loosens each.
_CHECK_COVERAGE = {"both": {"entry", "exit"}, "entry": {"entry"}, "exit": {"exit"}, "none": set()}


def _loosens(name: str, old: Any, new: Any) -> str | None:
    """Why changing ``name`` from ``old`` to ``new`` loosens a protection (None: it does not)."""
    if old == new:
        return None
    if name == "no_shorting":
        return "it would allow short selling" if old is True and new is not True else None
    if name == "suspend_trade":
        return "it would resume trading the broker suspended" if old is True and new is not True else None
    if name == "ptp_no_exception_entry":
        return "it would allow publicly traded partnership entries" if new is True else None
    if name in ("dtbp_check", "pdt_check"):
        kept = _CHECK_COVERAGE.get(str(new))
        if kept is None:
            return f"{new!r} is not a known {name} value"
        if not _CHECK_COVERAGE.get(str(old), set()) <= kept:
            return f"it would check fewer orders ({old} -> {new})"
        return None
    if name in ("max_margin_multiplier", "max_options_trading_level"):
        try:
            return f"it would raise the limit ({old} -> {new})" if Decimal(str(new)) > Decimal(str(old)) else None
        except ArithmeticError:
            return f"{new!r} is not a number"
    return None


PROTECTED_CONFIGURATIONS = (
    "no_shorting",
    "dtbp_check",
    "max_margin_multiplier",
    "pdt_check",
    "suspend_trade",
    "ptp_no_exception_entry",
    "max_options_trading_level",
)
CONFIGURATION_FIELDS = frozenset(PROTECTED_CONFIGURATIONS) | {"fractional_trading", "trade_confirm_email"}


class AccountService:
    """``AccountReads`` of the venue, with the writes judged (scope, configuration policy) and the
    allowed ones audited."""

    def __init__(
        self, venue, *, audit=None, scopes: Callable[[str], frozenset[str]] | None = None, judge: bool = True
    ):
        """``judge=False`` is the broker itself (the paper broker): every change is applied, as
        Alpaca applies its owner's. Judged, a change that is allowed must be recorded first, so
        without an ``audit`` log no change is made at all (fail closed)."""
        self.venue = venue
        self.audit = audit
        self.scopes = scopes
        self.judge = judge

    def __getattr__(self, name: str):
        # Plain reads pass straight through to the venue's AccountReads.
        if name in _READS:
            return getattr(self.venue, name)
        raise AttributeError(name)

    def require_trade(self, caller: Caller) -> None:
        if self.scopes is not None and TRADE_SCOPE not in self.scopes(caller.key_id):
            raise Forbidden("this credential is read-only")

    async def _record(self, type: str, caller: Caller, data: dict) -> None:
        if self.audit is not None:
            await self.audit.append(type, {"key_id": caller.key_id, "dialect": caller.dialect, **data})

    async def update_account_configurations(self, caller: Caller, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Forward a configuration change that only tightens; refuse one that loosens a broker
        protection (Forbidden naming the field and why)."""
        self.require_trade(caller)
        unknown = sorted(set(changes) - CONFIGURATION_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown account configuration {unknown[0][:64]}")
        if not self.judge:
            return await self.venue.update_account_configurations(changes)
        if self.audit is None:
            raise Forbidden("account configuration changes are refused: the gateway has no audit log to record them")
        current = await self.venue.account_configurations()
        changed = {name: value for name, value in changes.items() if current.get(name) != value}
        for name in PROTECTED_CONFIGURATIONS:
            if name in changed:
                why = _loosens(name, current.get(name), changed[name])
                if why is not None:
                    await self._record(
                        "account.configuration_refused", caller, {"field": name, "value": changed[name], "reason": why}
                    )
                    raise Forbidden(
                        f"account configuration {name} is a broker protection and the gateway refuses to "
                        f"loosen it: {why}; an operator changes it at the broker"
                    )
        if not changed:
            return current
        await self._record("account.configured", caller, {"changes": changed, "before": {k: current.get(k) for k in changed}})
        return await self.venue.update_account_configurations(changed)

    async def create_watchlist(self, caller: Caller, name: str, symbols: Sequence[str]):
        self.require_trade(caller)
        return await self.venue.create_watchlist(name, symbols)

    async def update_watchlist(self, caller: Caller, watchlist_id: str, name: str | None, symbols: Sequence[str] | None):
        self.require_trade(caller)
        return await self.venue.update_watchlist(watchlist_id, name, symbols)

    async def delete_watchlist(self, caller: Caller, watchlist_id: str) -> None:
        self.require_trade(caller)
        await self.venue.delete_watchlist(watchlist_id)


_READS = frozenset(
    {
        "list_assets",
        "calendar",
        "account_configurations",
        "account_activities",
        "portfolio_history",
        "list_watchlists",
        "get_watchlist",
        "option_contracts",
        "option_contract",
        "corporate_announcements",
        "fills",
        "income",
        "commission_rate",
    }
)

