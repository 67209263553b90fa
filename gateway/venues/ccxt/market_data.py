"""The ccxt venue's market data and account reads (``MarketData`` and ``AccountReads`` ports),
through ccxt's unified API: OHLCV, trades, tickers, bids/asks, order books, funding, open interest,
the account's trades and fees. Mixed into ``CcxtVenue``; it relies on the venue's ``_ready``,
``_market``, ``_call`` and ``_internal`` (ccxt symbol -> internal symbol).

Anything ccxt returns is read into Decimal with ``_num``; a value that is not a number makes the
answer unavailable (never a guessed zero for a price).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ...errors import UpstreamUnavailable
from ...market import Bar, DataKind, FundingRate, OrderBook, Page, Quote, SeriesQuery, Snapshot, TimeFrame, Trade
from ...model import Asset, AssetClass, Side, utcnow
from ...ports import Fill, Income
from ..base import TradingRules
from .codec import Garbage, num, safe_num, to_time

_UNIT = {"Min": "m", "Hour": "h", "Day": "d", "Week": "w", "Month": "M"}
MAX_OHLCV = 1500  # Binance's largest klines page


def ccxt_timeframe(frame: TimeFrame) -> str:
    return f"{frame.amount}{_UNIT[frame.unit.value]}"


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


class CcxtMarketData:
    """Mixin for ``CcxtVenue``."""

    # -- helpers --------------------------------------------------------------------------

    def _crypto_only(self, asset_class: AssetClass, what: str) -> None:
        if asset_class is not AssetClass.CRYPTO:
            raise self._not_served(f"{what} for {asset_class.value}")

    def _known(self, symbols: Sequence[str]) -> dict[str, str]:
        """internal -> ccxt symbol, for the symbols the exchange lists (the others are left out)."""
        return {s: self._markets[s]["symbol"] for s in symbols if s in self._markets}

    def _decimal(self, value: Any, what: str) -> Decimal:
        try:
            number = num(value)
        except Garbage:
            number = None
        if number is None:
            raise UpstreamUnavailable(f"{self.exchange_id} sent no usable {what}")
        return number

    def _optional(self, value: Any) -> Decimal | None:
        return safe_num(value)

    @staticmethod
    def _at(value: Any) -> datetime:
        return to_time(value) or utcnow()

    def _bar(self, row: Sequence[Any]) -> Bar:
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            raise UpstreamUnavailable(f"{self.exchange_id} sent a malformed candle")
        return Bar(
            t=self._at(row[0]),
            open=self._decimal(row[1], "open"),
            high=self._decimal(row[2], "high"),
            low=self._decimal(row[3], "low"),
            close=self._decimal(row[4], "close"),
            volume=self._optional(row[5]) or Decimal(0),
        )

    def _trade(self, raw: dict) -> Trade:
        raw_id = str(raw.get("id") or "0")
        return Trade(
            t=self._at(raw.get("timestamp")),
            price=self._decimal(raw.get("price"), "trade price"),
            size=self._optional(raw.get("amount")) or Decimal(0),
            id=int(raw_id) if raw_id.isdigit() and len(raw_id) <= 18 else 0,
            taker_side=raw.get("side") if raw.get("side") in ("buy", "sell") else None,
        )

    def _quote(self, raw: dict) -> Quote | None:
        bid, ask = self._optional(raw.get("bid")), self._optional(raw.get("ask"))
        if not bid or not ask:
            return None
        return Quote(
            t=self._at(raw.get("timestamp")),
            bid=bid,
            bid_size=self._optional(raw.get("bidVolume")) or Decimal(0),
            ask=ask,
            ask_size=self._optional(raw.get("askVolume")) or Decimal(0),
        )

    # -- MarketData -----------------------------------------------------------------------

    async def series(self, query: SeriesQuery) -> Page:
        self._crypto_only(query.asset_class, f"historical {query.kind.value}")
        if query.kind is DataKind.QUOTES:
            raise self._not_served("historical quotes")
        exchange = await self._ready()
        items: dict[str, list] = {}
        for symbol, ccxt_symbol in self._known(query.symbols).items():
            since = None if query.descending else _ms(query.start)
            limit = min(query.limit, MAX_OHLCV)
            if query.kind is DataKind.BARS:
                rows = await self._call(exchange.fetch_ohlcv, ccxt_symbol, ccxt_timeframe(query.timeframe), since, limit)
                found = [self._bar(r) for r in rows or []]
            else:
                found = [self._trade(r) for r in await self._call(exchange.fetch_trades, ccxt_symbol, since, limit) or []]
            found = [i for i in found if query.start <= i.t < query.end]
            items[symbol] = list(reversed(found))[: query.limit] if query.descending else found[: query.limit]
        return Page(items, None)

    async def _tickers(self, symbols: Sequence[str]) -> dict[str, dict]:
        exchange = await self._ready()
        known = self._known(symbols)
        if not known:
            return {}
        raw = await self._call(exchange.fetch_tickers, list(known.values()))
        return {s: raw[c] for s, c in known.items() if isinstance(raw, dict) and isinstance(raw.get(c), dict)}

    async def latest_trades(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Trade]:
        self._crypto_only(asset_class, "latest trades")
        out = {}
        for symbol, ticker in (await self._tickers(symbols)).items():
            info = ticker.get("info") if isinstance(ticker.get("info"), dict) else {}
            last = self._optional(ticker.get("last"))
            if last:
                size = self._optional(info.get("lastQty")) or Decimal(0)
                out[symbol] = Trade(self._at(ticker.get("timestamp")), last, size)
        return out

    async def latest_quotes(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Quote]:
        self._crypto_only(asset_class, "latest quotes")
        exchange = await self._ready()
        known = self._known(symbols)
        if not known:
            return {}
        raw = await self._call(exchange.fetch_bids_asks, list(known.values()))
        out = {}
        for symbol, ccxt_symbol in known.items():
            quote = self._quote(raw.get(ccxt_symbol) or {}) if isinstance(raw, dict) else None
            if quote is not None:
                out[symbol] = quote
        return out

    async def latest_bars(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Bar]:
        self._crypto_only(asset_class, "latest bars")
        exchange = await self._ready()
        out = {}
        for symbol, ccxt_symbol in self._known(symbols).items():
            rows = await self._call(exchange.fetch_ohlcv, ccxt_symbol, "1m", None, 1)
            if rows:
                out[symbol] = self._bar(rows[-1])
        return out

    async def snapshots(self, asset_class: AssetClass, symbols: Sequence[str]) -> dict[str, Snapshot]:
        self._crypto_only(asset_class, "snapshots")
        tickers = await self._tickers(symbols)
        quotes = await self.latest_quotes(asset_class, list(tickers))
        out = {}
        for symbol, ticker in tickers.items():
            last = self._optional(ticker.get("last"))
            if not last:
                continue
            t = self._at(ticker.get("timestamp"))
            open_ = self._optional(ticker.get("open")) or last
            day = Bar(
                t=t - timedelta(days=1),
                open=open_,
                high=self._optional(ticker.get("high")) or max(open_, last),
                low=self._optional(ticker.get("low")) or min(open_, last),
                close=last,
                volume=self._optional(ticker.get("baseVolume")) or Decimal(0),
                vwap=self._optional(ticker.get("vwap")),
            )
            info = ticker.get("info") if isinstance(ticker.get("info"), dict) else {}
            size = self._optional(info.get("lastQty")) or Decimal(0)
            out[symbol] = Snapshot(latest_trade=Trade(t, last, size), latest_quote=quotes.get(symbol), daily_bar=day)
        return out

    async def order_book(self, symbol: str, depth: int) -> OrderBook:
        exchange = await self._ready()
        market = self._market(symbol)
        raw = await self._call(exchange.fetch_order_book, market["symbol"], depth)

        def levels(rows: Any) -> tuple[tuple[Decimal, Decimal], ...]:
            return tuple((self._decimal(r[0], "price"), self._decimal(r[1], "size")) for r in (rows or [])[:depth])

        return OrderBook(self._at(raw.get("timestamp")), levels(raw.get("bids")), levels(raw.get("asks")))

    def _funding(self, symbol: str, raw: dict) -> FundingRate:
        mark = self._decimal(raw.get("markPrice"), "mark price")
        return FundingRate(
            symbol=symbol,
            mark_price=mark,
            index_price=self._optional(raw.get("indexPrice")) or mark,
            rate=self._decimal(raw.get("fundingRate"), "funding rate"),
            next_funding=self._at(raw.get("nextFundingTimestamp") or raw.get("fundingTimestamp") or raw.get("timestamp")),
            t=self._at(raw.get("timestamp")),
        )

    async def funding_rate(self, symbol: str) -> FundingRate:
        exchange = await self._ready()
        raw = await self._call(exchange.fetch_funding_rate, self._market(symbol)["symbol"])
        return self._funding(symbol, raw)

    async def funding_rates(self, symbols: Sequence[str]) -> list[FundingRate]:
        exchange = await self._ready()
        known = self._known(symbols)
        raw = await self._call(exchange.fetch_funding_rates, list(known.values())) if known else {}
        return [self._funding(s, raw[c]) for s, c in known.items() if isinstance(raw, dict) and isinstance(raw.get(c), dict)]

    async def funding_history(self, symbol: str, start: datetime | None, end: datetime | None, limit: int) -> list[FundingRate]:
        exchange = await self._ready()
        rows = await self._call(exchange.fetch_funding_rate_history, self._market(symbol)["symbol"], _ms(start), limit)
        out = []
        for row in rows or []:
            rate = self._decimal(row.get("fundingRate"), "funding rate")
            t = self._at(row.get("timestamp"))
            if end is None or t <= end:
                mark = self._optional((row.get("info") or {}).get("markPrice")) or Decimal(0)
                out.append(FundingRate(symbol, mark, mark, rate, t, t))
        return out

    async def open_interest(self, symbol: str) -> Decimal:
        exchange = await self._ready()
        raw = await self._call(exchange.fetch_open_interest, self._market(symbol)["symbol"])
        return self._decimal(raw.get("openInterestAmount") or raw.get("baseVolume"), "open interest")

    # -- AccountReads ---------------------------------------------------------------------

    async def list_assets(self, asset_class: AssetClass | None = None) -> list[Asset]:
        if asset_class not in (None, AssetClass.CRYPTO):
            return []
        markets: list[TradingRules] = await self.list_markets()
        return [m.asset for m in markets]

    async def fills(self, symbol: str | None, start: datetime | None, end: datetime | None, limit: int) -> list[Fill]:
        if symbol is None:
            raise self._not_served("the account's trades without a symbol")
        exchange = await self._ready()
        rows = await self._call(exchange.fetch_my_trades, self._market(symbol)["symbol"], _ms(start), limit)
        out = []
        for row in rows or []:
            t = self._at(row.get("timestamp"))
            if end is not None and t > end:
                continue
            fee = row.get("fee") if isinstance(row.get("fee"), dict) else {}
            info = row.get("info") if isinstance(row.get("info"), dict) else {}
            side = Side.BUY if row.get("side") == "buy" else Side.SELL
            out.append(
                Fill(
                    id=str(row.get("id") or ""),
                    order_id=str(row.get("order") or ""),
                    symbol=symbol,
                    side=side,
                    price=self._decimal(row.get("price"), "fill price"),
                    qty=self._decimal(row.get("amount"), "fill quantity"),
                    commission=self._optional(fee.get("cost")) or Decimal(0),
                    commission_asset=str(fee.get("currency") or symbol.split("/")[-1]),
                    realized_pnl=self._optional(info.get("realizedPnl")) or Decimal(0),
                    t=t,
                    maker=row.get("takerOrMaker") == "maker",
                )
            )
        return out

    async def income(self, symbol, kind, start, end, limit) -> list[Income]:
        """Funding payments from the exchange's own history; the rest from the fills."""
        if kind != "FUNDING_FEE":
            return await super().income(symbol, kind, start, end, limit)
        exchange = await self._ready()
        ccxt_symbol = self._market(symbol)["symbol"] if symbol else None
        rows = await self._call(exchange.fetch_funding_history, ccxt_symbol, _ms(start), limit)
        out = []
        for row in rows or []:
            t = self._at(row.get("timestamp"))
            internal = self._internal.get(row.get("symbol"), symbol or "")
            if end is None or t <= end:
                out.append(Income(internal, "FUNDING_FEE", self._decimal(row.get("amount"), "funding fee"),
                                  str(row.get("code") or ""), t, str(row.get("id") or "")))
        return out

    async def commission_rate(self, symbol: str) -> tuple[Decimal, Decimal]:
        exchange = await self._ready()
        raw = await self._call(exchange.fetch_trading_fee, self._market(symbol)["symbol"])
        return self._decimal(raw.get("maker"), "maker fee"), self._decimal(raw.get("taker"), "taker fee")

