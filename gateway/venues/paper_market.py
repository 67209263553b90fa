"""The paper venue's market data and account reads (``MarketData`` and ``AccountReads`` ports),
from the seeded price path anchored at the engine's marks (``paper_prices``) and from the engine's
own orders. Mixed into ``PaperVenue``; it relies on the venue's ``engine``, ``prices``,
``_configurations`` and ``_watchlists``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..market import ONE_DAY, ONE_MINUTE, Bar, FundingRate, OrderBook, Page, Quote, SeriesQuery, Snapshot, Trade
from ..model import AssetClass, Order, OrderQuery, classify_symbol, parse_occ, utcnow
from ..numbers import fmt
from ..ports import CalendarDay, Fill, Income, Watchlist
from .paper_prices import bar_start, volume_base

# Order rules the paper venue advertises (it accepts anything finer; these only tell clients how
# to round). Per symbol where a round number fits the price, else the default.
PAPER_RULES: dict[str, tuple[Decimal, Decimal]] = {  # symbol -> (tick size, step size)
    "BTC/USDT": (Decimal("0.1"), Decimal("0.001")),
    "ETH/USDT": (Decimal("0.01"), Decimal("0.001")),
    "SOL/USDT": (Decimal("0.01"), Decimal("0.01")),
    "BNB/USDT": (Decimal("0.01"), Decimal("0.01")),
    "XRP/USDT": (Decimal("0.0001"), Decimal("0.1")),
}
DEFAULT_PAPER_RULES = (Decimal("0.0001"), Decimal("0.001"))
CENT = Decimal("0.01")
FUNDING_INTERVAL = timedelta(hours=8)
PAPER_FUNDING_RATE = Decimal("0.0001")  # Binance's baseline (interest 0.01% per 8 h, premium 0)
# Alpaca's defaults for a new paper account.
PAPER_CONFIGURATIONS: dict[str, Any] = {
    "dtbp_check": "entry",
    "fractional_trading": True,
    "max_margin_multiplier": "4",
    "no_shorting": False,
    "pdt_check": "entry",
    "suspend_trade": False,
    "trade_confirm_email": "all",
    "ptp_no_exception_entry": False,
    "max_options_trading_level": 3,
}
MAX_WATCHLISTS = 200
MAX_WATCHLIST_SYMBOLS = 1000


class PaperMarketData:
    """Mixin for ``PaperVenue``."""

    # -- market data (the seeded price path, anchored at the marks) ---------------------------

    def _tick(self, symbol: str) -> Decimal:
        if symbol in PAPER_RULES:
            return PAPER_RULES[symbol][0]
        return DEFAULT_PAPER_RULES[0] if classify_symbol(symbol) is AssetClass.CRYPTO else CENT

    @staticmethod
    def _volume(symbol: str) -> float:
        asset_class = classify_symbol(symbol)
        return volume_base(asset_class.value if asset_class else "")

    def _marks(self, asset_class: AssetClass | None, symbols: Sequence[str]) -> dict[str, Decimal]:
        marks = self.engine.marks()
        return {
            s: marks[s] for s in symbols if s in marks and (asset_class is None or classify_symbol(s) is asset_class)
        }

    def _mark(self, symbol: str) -> Decimal:
        marks = self.engine.marks()
        if symbol not in marks:
            raise NotFound(f"no market data for {symbol[:32]}")
        return marks[symbol]

    async def series(self, query: SeriesQuery) -> Page:
        marks = self._marks(query.asset_class, query.symbols)
        return self.prices.page(query, marks, utcnow(), self._tick, self._volume)

    async def latest_trades(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Trade]:
        now = utcnow()
        return {
            s: self.prices.latest_trade(s, m, now, self._volume(s)) for s, m in self._marks(asset_class, symbols).items()
        }

    async def latest_quotes(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Quote]:
        now = utcnow()
        return {
            s: self.prices.latest_quote(s, m, now, self._tick(s), self._volume(s))
            for s, m in self._marks(asset_class, symbols).items()
        }

    def _bar(self, symbol: str, mark: Decimal, now: datetime, timeframe, back: int = 0) -> Bar:
        index = int(bar_start(now, timeframe, back).timestamp()) // timeframe.seconds
        return self.prices.bar(symbol, mark, now, timeframe, index, self._tick(symbol), self._volume(symbol))

    async def latest_bars(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Bar]:
        now = utcnow()
        return {s: self._bar(s, m, now, ONE_MINUTE) for s, m in self._marks(asset_class, symbols).items()}

    async def snapshots(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Snapshot]:
        now = utcnow()
        return {
            s: Snapshot(
                latest_trade=self.prices.latest_trade(s, m, now, self._volume(s)),
                latest_quote=self.prices.latest_quote(s, m, now, self._tick(s), self._volume(s)),
                minute_bar=self._bar(s, m, now, ONE_MINUTE),
                daily_bar=self._bar(s, m, now, ONE_DAY),
                prev_daily_bar=self._bar(s, m, now, ONE_DAY, back=1),
            )
            for s, m in self._marks(asset_class, symbols).items()
        }

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        return self.prices.book(symbol, self._mark(symbol), utcnow(), depth, self._tick(symbol), self._volume(symbol))

    def _require_perpetual(self, symbol: str) -> Decimal:
        if not self.engine.futures:
            raise self._not_served("funding rates (a cash account has no perpetuals)")
        return self._mark(symbol)

    async def funding_rate(self, symbol: str) -> FundingRate:
        mark = self._require_perpetual(symbol)
        now = utcnow()
        return FundingRate(symbol, mark, mark, PAPER_FUNDING_RATE, _next_funding(now), now)

    async def funding_history(self, symbol: str, start: datetime | None, end: datetime | None, limit: int) -> list[FundingRate]:
        """Past funding times (every 8 h) in [start, end], oldest first, at the baseline rate
        (the paper account pays none: see paper_engine)."""
        mark = self._require_perpetual(symbol)
        last = _next_funding(min(end or utcnow(), utcnow())) - FUNDING_INTERVAL
        times = []
        t = last
        while len(times) < limit and (start is None or t >= start):
            times.append(t)
            t -= FUNDING_INTERVAL
        return [FundingRate(symbol, mark, mark, PAPER_FUNDING_RATE, t, t) for t in reversed(times)]

    async def open_interest(self, symbol: str) -> Decimal:
        """Contracts open across the paper account (the only participant)."""
        self._require_perpetual(symbol)
        return sum((abs(p.qty) for p in self.engine.list_positions() if p.symbol == symbol), Decimal(0))

    # -- account reads ------------------------------------------------------------------------

    async def list_assets(self, asset_class: AssetClass | None = None) -> list:
        return [self.engine.get_asset(s) for s in sorted(self._marks(asset_class, list(self.engine.marks())))]

    async def calendar(self, start: date, end: date) -> list[CalendarDay]:
        """Every weekday, regular hours (the paper market has no holidays)."""
        days, day = [], start
        while day <= end:
            if day.weekday() < 5:
                days.append(CalendarDay(day, "09:30", "16:00"))
            day += timedelta(days=1)
        return days

    async def account_configurations(self) -> dict[str, Any]:
        return dict(self._configurations)

    async def update_account_configurations(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        self._configurations.update(changes)
        return dict(self._configurations)

    def _filled_orders(self, symbol: str | None = None) -> list[Order]:
        query = OrderQuery(status="all", limit=500, direction="asc", symbols=(symbol,) if symbol else ())
        return [o for o in self.engine.list_orders(query) if o.filled_qty > 0 and o.filled_avg_price is not None]

    async def account_activities(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """FILL activities, one per filled order (the paper engine fills an order at once)."""
        activities = []
        for order in self._filled_orders():
            activities.append(
                {
                    "id": f"{order.filled_at or order.updated_at:%Y%m%d%H%M%S%f}::{order.id}",
                    "activity_type": "FILL",
                    "transaction_time": (order.filled_at or order.updated_at).isoformat().replace("+00:00", "Z"),
                    "type": "fill",
                    "price": fmt(order.filled_avg_price),
                    "qty": fmt(order.filled_qty),
                    "side": order.side.value,
                    "symbol": order.symbol,
                    "leaves_qty": "0",
                    "order_id": order.id,
                    "cum_qty": fmt(order.filled_qty),
                    "order_status": order.status.value,
                }
            )
        return list(reversed(activities))  # newest first, as Alpaca lists them

    async def portfolio_history(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Two points: the start of the day and now (the paper engine keeps no equity series)."""
        account = self.engine.get_account()
        now = utcnow()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        base = account.last_equity
        pl = account.equity - base
        pct = pl / base if base else Decimal(0)
        return {
            "timestamp": [int(day.timestamp()), int(now.timestamp())],
            "equity": [float(base), float(account.equity)],
            "profit_loss": [0.0, float(pl)],
            "profit_loss_pct": [0.0, float(pct)],
            "base_value": float(base),
            "timeframe": params.get("timeframe") or "1D",
            "cashflow": {},
        }

    async def list_watchlists(self) -> list[Watchlist]:
        return sorted(self._watchlists.values(), key=lambda w: w.created_at)

    async def get_watchlist(self, watchlist_id: str) -> Watchlist:
        try:
            return self._watchlists[watchlist_id]
        except KeyError:
            raise NotFound("watchlist not found") from None

    def _known_symbols(self, symbols: Sequence[str]) -> tuple[str, ...]:
        marks = self.engine.marks()
        unknown = [s for s in symbols if s not in marks]
        if unknown:
            raise InvalidRequest(f"unknown symbol {unknown[0][:32]}")
        if len(symbols) > MAX_WATCHLIST_SYMBOLS:
            raise InvalidRequest(f"a watchlist holds at most {MAX_WATCHLIST_SYMBOLS} symbols")
        return tuple(dict.fromkeys(symbols))

    def _name_free(self, name: str, but: str | None = None) -> None:
        if any(w.name == name and w.id != but for w in self._watchlists.values()):
            raise InvalidRequest(f"a watchlist named {name[:64]!r} already exists")

    async def create_watchlist(self, name: str, symbols: Sequence[str]) -> Watchlist:
        if len(self._watchlists) >= MAX_WATCHLISTS:
            raise InvalidRequest(f"at most {MAX_WATCHLISTS} watchlists")
        self._name_free(name)
        now = utcnow()
        watchlist = Watchlist(str(uuid.uuid4()), name, self._known_symbols(symbols), now, now)
        self._watchlists[watchlist.id] = watchlist
        return watchlist

    async def update_watchlist(self, watchlist_id: str, name: str | None, symbols: Sequence[str] | None) -> Watchlist:
        old = await self.get_watchlist(watchlist_id)
        if name is not None:
            self._name_free(name, but=watchlist_id)
        new = Watchlist(
            old.id,
            name if name is not None else old.name,
            self._known_symbols(symbols) if symbols is not None else old.symbols,
            old.created_at,
            utcnow(),
        )
        self._watchlists[watchlist_id] = new
        return new

    async def delete_watchlist(self, watchlist_id: str) -> None:
        await self.get_watchlist(watchlist_id)
        del self._watchlists[watchlist_id]

    def _contract(self, symbol: str) -> dict[str, Any]:
        occ = parse_occ(symbol)
        asset = self.engine.get_asset(symbol)
        return {
            "id": asset.id,
            "symbol": symbol,
            "name": asset.name,
            "status": "active",
            "tradable": True,
            "expiration_date": occ.expiry.isoformat(),
            "root_symbol": occ.root,
            "underlying_symbol": occ.root,
            "underlying_asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"paper-asset:{occ.root}")),
            "type": "call" if occ.is_call else "put",
            "style": "american",
            "strike_price": fmt(occ.strike),
            "multiplier": "100",
            "size": "100",
            "open_interest": None,
            "open_interest_date": None,
            "close_price": fmt(self.engine.marks()[symbol]),
            "close_price_date": utcnow().date().isoformat(),
        }

    async def option_contracts(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Every option the paper market prices, filtered by underlying and expiry."""
        underlyings = {s for s in (params.get("underlying_symbols") or "").split(",") if s}
        contracts = []
        for symbol in sorted(self._marks(AssetClass.US_OPTION, list(self.engine.marks()))):
            occ = parse_occ(symbol)
            if underlyings and occ.root not in underlyings:
                continue
            if params.get("type") and params["type"] != ("call" if occ.is_call else "put"):
                continue
            expiry = occ.expiry.isoformat()
            if params.get("expiration_date") and expiry != params["expiration_date"]:
                continue
            if params.get("expiration_date_gte") and expiry < params["expiration_date_gte"]:
                continue
            if params.get("expiration_date_lte") and expiry > params["expiration_date_lte"]:
                continue
            contracts.append(self._contract(symbol))
        return {"option_contracts": contracts, "next_page_token": None}

    async def option_contract(self, symbol_or_id: str) -> dict[str, Any]:
        for symbol in self._marks(AssetClass.US_OPTION, list(self.engine.marks())):
            contract = self._contract(symbol)
            if symbol_or_id in (symbol, contract["id"]):
                return contract
        raise NotFound("option contract not found")

    async def fills(self, symbol: str | None, start: datetime | None, end: datetime | None, limit: int) -> list[Fill]:
        """One fill per filled order (the paper engine fills an order at once; no fees)."""
        fills = []
        for order in self._filled_orders(symbol):
            t = order.filled_at or order.updated_at
            if (start is not None and t < start) or (end is not None and t > end):
                continue
            fills.append(
                Fill(order.id, order.id, order.symbol, order.side, order.filled_avg_price, order.filled_qty,
                     Decimal(0), order.symbol.split("/")[-1], Decimal(0), t)
            )
        return fills[-limit:]

    async def income(self, symbol, kind, start, end, limit) -> list[Income]:
        if kind == "FUNDING_FEE":
            return []  # the paper engine charges no funding (see paper_engine)
        return await super().income(symbol, kind, start, end, limit)

    async def commission_rate(self, symbol: str) -> tuple[Decimal, Decimal]:
        self._mark(symbol)
        return Decimal(0), Decimal(0)  # the paper engine charges no fees


def _next_funding(now: datetime) -> datetime:
    """Binance funds perpetuals at 00:00, 08:00 and 16:00 UTC."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    t = day
    while t <= now:
        t += FUNDING_INTERVAL
    return t

