"""Binance USDⓈ-M futures market data and the account reads bots make at start, out of the
internal market model (klines, depth, trades, aggTrades, tickers, premium index, funding, open
interest, userTrades, commission rate), plus the parameters in.

Numbers go out as strings, as Binance writes them; times as integer milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ..market import Bar, FundingRate, OrderBook, Quote, Snapshot, TimeFrame, TimeUnit, Trade
from ..numbers import fmt
from ..ports import Fill
from .binance import BAD_PARAMETER, BinanceError, from_ms, ms, wire_symbol

INVALID_INTERVAL = -1120
INVALID_LIMIT = -1130  # Binance: "Data sent for parameter 'limit' is not valid."

INTERVALS: dict[str, TimeFrame] = {
    "1m": TimeFrame(1, TimeUnit.MINUTE),
    "3m": TimeFrame(3, TimeUnit.MINUTE),
    "5m": TimeFrame(5, TimeUnit.MINUTE),
    "15m": TimeFrame(15, TimeUnit.MINUTE),
    "30m": TimeFrame(30, TimeUnit.MINUTE),
    "1h": TimeFrame(1, TimeUnit.HOUR),
    "2h": TimeFrame(2, TimeUnit.HOUR),
    "4h": TimeFrame(4, TimeUnit.HOUR),
    "6h": TimeFrame(6, TimeUnit.HOUR),
    "8h": TimeFrame(8, TimeUnit.HOUR),
    "12h": TimeFrame(12, TimeUnit.HOUR),
    "1d": TimeFrame(1, TimeUnit.DAY),
    "1w": TimeFrame(1, TimeUnit.WEEK),
    "1M": TimeFrame(1, TimeUnit.MONTH),
}
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
MAX_KLINES = 1500
MAX_TRADES = 1000
MAX_FUNDING = 1000


# ---------------------------------------------------------------------------------------
# Parameters in


def parse_interval(value: str | None) -> TimeFrame:
    frame = INTERVALS.get(value or "")
    if frame is None:
        raise BinanceError(400, INVALID_INTERVAL, "Invalid interval.")
    return frame


def parse_limit(value: str | None, *, default: int, maximum: int, allowed: Iterable[int] | None = None) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 6 or not 1 <= int(value) <= maximum or (
        allowed is not None and int(value) not in allowed
    ):
        raise BinanceError(400, INVALID_LIMIT, "Data sent for parameter 'limit' is not valid.")
    return int(value)


def parse_time_ms(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 15:
        raise BinanceError(400, BAD_PARAMETER, f"Data sent for parameter '{name}' is not valid.")
    return from_ms(int(value))


def kline_range(params: Mapping[str, str], frame: TimeFrame, limit: int, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) for klines: from startTime, or the ``limit`` klines ending at endTime (now)."""
    start = parse_time_ms(params.get("startTime"), "startTime")
    end = parse_time_ms(params.get("endTime"), "endTime")
    step = timedelta(seconds=frame.seconds)
    if end is not None:
        end = end + timedelta(milliseconds=1)  # endTime is inclusive at Binance
    if start is None:
        end = end or now + timedelta(seconds=1)  # ``now`` is whole seconds: keep a bar starting at it
        start = end - step * limit
    elif end is None:
        end = max(start, min(now, start + step * limit))  # a start in the future: no klines
    if end < start:
        raise BinanceError(400, BAD_PARAMETER, "startTime must not be after endTime.")
    return start, end


def depth_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


# ---------------------------------------------------------------------------------------
# The model out


def kline_to_wire(bar: Bar, frame: TimeFrame) -> list[Any]:
    open_ms = ms(bar.t)
    quote_volume = (bar.vwap or bar.close) * bar.volume
    return [
        open_ms,
        fmt(bar.open),
        fmt(bar.high),
        fmt(bar.low),
        fmt(bar.close),
        fmt(bar.volume),
        open_ms + frame.seconds * 1000 - 1,
        fmt(quote_volume.quantize(Decimal("0.00000001"))),
        bar.trade_count,
        fmt((bar.volume / 2).quantize(Decimal("0.0001"))),  # taker buy base: the model has no split
        fmt((quote_volume / 2).quantize(Decimal("0.00000001"))),
        "0",
    ]


def depth_to_wire(book: OrderBook, now_ms: int) -> dict[str, Any]:
    return {
        "lastUpdateId": ms(book.t),
        "E": now_ms,
        "T": ms(book.t),
        "bids": [[fmt(p), fmt(q)] for p, q in book.bids],
        "asks": [[fmt(p), fmt(q)] for p, q in book.asks],
    }


def trade_to_wire(trade: Trade) -> dict[str, Any]:
    return {
        "id": trade.id,
        "price": fmt(trade.price),
        "qty": fmt(trade.size),
        "quoteQty": fmt(trade.price * trade.size),
        "time": ms(trade.t),
        "isBuyerMaker": trade.taker_side == "sell",
    }


def agg_trade_to_wire(trade: Trade) -> dict[str, Any]:
    return {
        "a": trade.id,
        "p": fmt(trade.price),
        "q": fmt(trade.size),
        "f": trade.id,
        "l": trade.id,
        "T": ms(trade.t),
        "m": trade.taker_side == "sell",
    }


def ticker_24hr_to_wire(symbol: str, snapshot: Snapshot, now_ms: int) -> dict[str, Any]:
    """24 h statistics from the snapshot's daily bar, the last trade, and the top of the book
    (ccxt reads bid/ask from this answer)."""
    last = snapshot.latest_trade.price if snapshot.latest_trade else (snapshot.daily_bar.close if snapshot.daily_bar else Decimal(0))
    day = snapshot.daily_bar
    open_ = day.open if day else last
    change = last - open_
    body = {
        "symbol": wire_symbol(symbol),
        "priceChange": fmt(change),
        "priceChangePercent": fmt((change / open_ * 100).quantize(Decimal("0.001"))) if open_ else "0",
        "weightedAvgPrice": fmt(day.vwap or day.close) if day else fmt(last),
        "lastPrice": fmt(last),
        "lastQty": fmt(snapshot.latest_trade.size) if snapshot.latest_trade else "0",
        "openPrice": fmt(open_),
        "highPrice": fmt(max(day.high, last)) if day else fmt(last),
        "lowPrice": fmt(min(day.low, last)) if day else fmt(last),
        "volume": fmt(day.volume) if day else "0",
        "quoteVolume": fmt(((day.vwap or day.close) * day.volume).quantize(Decimal("0.00000001"))) if day else "0",
        "openTime": ms(day.t) if day else now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 0,
        "lastId": snapshot.latest_trade.id if snapshot.latest_trade else 0,
        "count": day.trade_count if day else 0,
    }
    if snapshot.latest_quote is not None:
        body.update(book_ticker_fields(snapshot.latest_quote))
    return body


def book_ticker_fields(quote: Quote) -> dict[str, str]:
    return {
        "bidPrice": fmt(quote.bid),
        "bidQty": fmt(quote.bid_size),
        "askPrice": fmt(quote.ask),
        "askQty": fmt(quote.ask_size),
    }


def book_ticker_to_wire(symbol: str, quote: Quote) -> dict[str, Any]:
    return {"symbol": wire_symbol(symbol), **book_ticker_fields(quote), "time": ms(quote.t), "lastUpdateId": ms(quote.t)}


def price_ticker_to_wire(symbol: str, trade: Trade) -> dict[str, Any]:
    return {"symbol": wire_symbol(symbol), "price": fmt(trade.price), "time": ms(trade.t)}


def premium_index_to_wire(funding: FundingRate) -> dict[str, Any]:
    return {
        "symbol": wire_symbol(funding.symbol),
        "markPrice": fmt(funding.mark_price),
        "indexPrice": fmt(funding.index_price),
        "estimatedSettlePrice": fmt(funding.index_price),
        "lastFundingRate": fmt(funding.rate),
        "interestRate": "0.00010000",
        "nextFundingTime": ms(funding.next_funding),
        "time": ms(funding.t),
    }


def funding_rate_to_wire(funding: FundingRate) -> dict[str, Any]:
    return {
        "symbol": wire_symbol(funding.symbol),
        "fundingRate": fmt(funding.rate),
        "fundingTime": ms(funding.next_funding),
        "markPrice": fmt(funding.mark_price),
    }


def open_interest_to_wire(symbol: str, amount: Decimal, now_ms: int) -> dict[str, Any]:
    return {"openInterest": fmt(amount), "symbol": wire_symbol(symbol), "time": now_ms}


def user_trade_to_wire(fill: Fill) -> dict[str, Any]:
    quote = fill.price * fill.qty
    return {
        "buyer": fill.side.value == "buy",
        "commission": fmt(fill.commission),
        "commissionAsset": fill.commission_asset,
        "id": _int_id(fill.id),
        "maker": fill.maker,
        "orderId": _int_id(fill.order_id),
        "price": fmt(fill.price),
        "qty": fmt(fill.qty),
        "quoteQty": fmt(quote),
        "realizedPnl": fmt(fill.realized_pnl),
        "side": fill.side.value.upper(),
        "positionSide": "BOTH",
        "symbol": wire_symbol(fill.symbol),
        "time": ms(fill.t),
    }


def commission_to_wire(symbol: str, maker: Decimal, taker: Decimal) -> dict[str, Any]:
    return {"symbol": wire_symbol(symbol), "makerCommissionRate": fmt(maker), "takerCommissionRate": fmt(taker)}


def _int_id(value: str) -> int | str:
    return int(value) if value.isdigit() and len(value) <= 18 else value


def spot_exchange_info(now_ms: int) -> dict[str, Any]:
    """``GET /api/v3/exchangeInfo``: the gateway serves futures only, so no spot symbol (ccxt
    ``binance`` loads its markets from every API it knows; the futures ones come from /fapi)."""
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "exchangeFilters": [],
        "symbols": [],
    }
