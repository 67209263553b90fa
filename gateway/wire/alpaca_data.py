"""Alpaca's market-data API (``/v2/stocks``, ``/v1beta3/crypto/us``, ``/v1beta1/options``), both
directions: query parameters into ``SeriesQuery``, the internal market model into Alpaca's JSON,
and Alpaca's JSON back into the model (the Alpaca venue reads its upstream's answers with it).

Market data carries prices as JSON numbers (the trading API uses strings); the dialect writes
them with ``wire.exact_json``, so no price passes through a float on the way out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidRequest, UpstreamUnavailable
from ..market import (
    MAX_PAGE,
    MAX_SYMBOLS,
    Bar,
    DataKind,
    OrderBook,
    Page,
    Quote,
    SeriesQuery,
    Snapshot,
    TimeFrame,
    TimeUnit,
    Trade,
    default_start,
)
from ..model import AssetClass, utcnow
from .alpaca import iso, parse_symbol, parse_time

SERIES_PARAMS = frozenset(
    {"symbols", "timeframe", "start", "end", "limit", "page_token", "sort", "feed", "adjustment", "asof", "currency"}
)
LATEST_PARAMS = frozenset({"symbols", "feed", "currency"})
_PASS_THROUGH = ("feed", "adjustment", "asof", "currency")  # given to the venue as they are
_UNITS = {
    "min": TimeUnit.MINUTE, "t": TimeUnit.MINUTE,
    "hour": TimeUnit.HOUR, "h": TimeUnit.HOUR,
    "day": TimeUnit.DAY, "d": TimeUnit.DAY,
    "week": TimeUnit.WEEK, "w": TimeUnit.WEEK,
    "month": TimeUnit.MONTH, "m": TimeUnit.MONTH,
}


# ---------------------------------------------------------------------------------------
# Requests in


def parse_timeframe(value: str | None) -> TimeFrame:
    """``1Min``, ``15Min``, ``1Hour``, ``1Day``, ``1Week``, ``1Month`` (and Alpaca's short ``1T``/``1H``/``1D``)."""
    if not value:
        raise InvalidRequest("timeframe is required")
    text = value.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = _UNITS.get(text[digits:].lower())
    if digits == 0 or digits > 3 or unit is None:
        raise InvalidRequest(f"invalid timeframe {text[:16]!r}: use e.g. 1Min, 15Min, 1Hour, 1Day, 1Week, 1Month")
    return TimeFrame(int(text[:digits]), unit)


def parse_symbols(raw: str | None, asset_class: AssetClass, name: str = "symbols") -> tuple[str, ...]:
    """Comma-separated symbols of one asset class; crypto without a slash (BTCUSD) is refused
    with the form to use."""
    symbols = []
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        symbol, found = parse_symbol(part, name)
        if found is not asset_class:
            raise InvalidRequest(f"invalid symbol {symbol[:32]}: not a {asset_class.value} symbol")
        symbols.append(symbol)
    if not symbols:
        raise InvalidRequest(f"{name} is required")
    if len(symbols) > MAX_SYMBOLS:
        raise InvalidRequest(f"at most {MAX_SYMBOLS} symbols per request")
    return tuple(dict.fromkeys(symbols))


def parse_limit(value: str | None, default: int = 1000) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 6 or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be an integer between 1 and {MAX_PAGE}")
    return int(value)


def parse_series(params: Mapping[str, str], kind: DataKind, asset_class: AssetClass, symbols: tuple[str, ...] | None = None) -> SeriesQuery:
    timeframe = parse_timeframe(params.get("timeframe")) if kind is DataKind.BARS else TimeFrame(1, TimeUnit.MINUTE)
    end = parse_time(params["end"], "end") if params.get("end") else utcnow()
    start = parse_time(params["start"], "start") if params.get("start") else default_start(end, timeframe, kind)
    sort = (params.get("sort") or "asc").lower()
    if sort not in ("asc", "desc"):
        raise InvalidRequest("sort must be asc or desc")
    token = params.get("page_token") or None
    if token is not None and (len(token) > 512 or not token.isprintable()):
        raise InvalidRequest("invalid page_token")
    return SeriesQuery(
        kind=kind,
        asset_class=asset_class,
        symbols=symbols if symbols is not None else parse_symbols(params.get("symbols"), asset_class),
        start=start,
        end=end,
        limit=parse_limit(params.get("limit")),
        timeframe=timeframe,
        page_token=token,
        descending=sort == "desc",
        extra=tuple((k, params[k]) for k in _PASS_THROUGH if params.get(k)),
    )


def series_params(query: SeriesQuery) -> dict[str, str]:
    """The query as Alpaca's parameters (what the Alpaca venue sends upstream)."""
    params = {
        "symbols": ",".join(query.symbols),
        "start": iso(query.start) or "",
        "end": iso(query.end) or "",
        "limit": str(query.limit),
        "sort": "desc" if query.descending else "asc",
    }
    if query.kind is DataKind.BARS:
        params["timeframe"] = str(query.timeframe)
    if query.page_token:
        params["page_token"] = query.page_token
    params.update(dict(query.extra))
    return params


# ---------------------------------------------------------------------------------------
# The model out


def bar_to_wire(bar: Bar) -> dict[str, Any]:
    body: dict[str, Any] = {
        "t": iso(bar.t), "o": bar.open, "h": bar.high, "l": bar.low, "c": bar.close, "v": bar.volume,
        "n": bar.trade_count,
    }
    if bar.vwap is not None:
        body["vw"] = bar.vwap
    return body


def trade_to_wire(trade: Trade, asset_class: AssetClass) -> dict[str, Any]:
    body: dict[str, Any] = {"t": iso(trade.t), "p": trade.price, "s": trade.size, "i": trade.id}
    if asset_class is AssetClass.CRYPTO:
        body["tks"] = {"buy": "B", "sell": "S"}.get(trade.taker_side or "", "B")
    else:
        body.update({"x": "V" if asset_class is AssetClass.US_EQUITY else "N", "c": ["@"]})
        if asset_class is AssetClass.US_EQUITY:
            body["z"] = "C"
    return body


def quote_to_wire(quote: Quote, asset_class: AssetClass) -> dict[str, Any]:
    body: dict[str, Any] = {"t": iso(quote.t), "bp": quote.bid, "bs": quote.bid_size, "ap": quote.ask, "as": quote.ask_size}
    if asset_class is not AssetClass.CRYPTO:
        body.update({"bx": "V", "ax": "V", "c": ["R"]})
        if asset_class is AssetClass.US_EQUITY:
            body["z"] = "C"
    return body


def item_to_wire(item: Bar | Trade | Quote, asset_class: AssetClass) -> dict[str, Any]:
    if isinstance(item, Bar):
        return bar_to_wire(item)
    if isinstance(item, Trade):
        return trade_to_wire(item, asset_class)
    return quote_to_wire(item, asset_class)


def page_to_wire(page: Page, kind: DataKind, asset_class: AssetClass, single: str | None = None) -> dict[str, Any]:
    """``{"bars": {"AAPL": [...]}, "next_page_token": ...}``; for a single-symbol path
    (``/v2/stocks/AAPL/bars``) ``{"symbol": "AAPL", "bars": [...]}``."""
    if single is not None:
        items = [item_to_wire(i, asset_class) for i in page.items.get(single, [])]
        return {"symbol": single, kind.value: items, "next_page_token": page.next_page_token}
    return {
        kind.value: {s: [item_to_wire(i, asset_class) for i in items] for s, items in page.items.items()},
        "next_page_token": page.next_page_token,
    }


def snapshot_to_wire(snapshot: Snapshot, asset_class: AssetClass) -> dict[str, Any]:
    body: dict[str, Any] = {
        "latestTrade": trade_to_wire(snapshot.latest_trade, asset_class) if snapshot.latest_trade else None,
        "latestQuote": quote_to_wire(snapshot.latest_quote, asset_class) if snapshot.latest_quote else None,
    }
    if asset_class is not AssetClass.US_OPTION:
        body["minuteBar"] = bar_to_wire(snapshot.minute_bar) if snapshot.minute_bar else None
        body["dailyBar"] = bar_to_wire(snapshot.daily_bar) if snapshot.daily_bar else None
        body["prevDailyBar"] = bar_to_wire(snapshot.prev_daily_bar) if snapshot.prev_daily_bar else None
    return body


def book_to_wire(book: OrderBook) -> dict[str, Any]:
    return {
        "t": iso(book.t),
        "b": [{"p": p, "s": s} for p, s in book.bids],
        "a": [{"p": p, "s": s} for p, s in book.asks],
    }


# ---------------------------------------------------------------------------------------
# Alpaca's answers in (the Alpaca venue)


def _dec(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise UpstreamUnavailable(f"the data API sent a malformed {name}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise UpstreamUnavailable(f"the data API sent a malformed {name}") from None
    if not result.is_finite():
        raise UpstreamUnavailable(f"the data API sent a malformed {name}")
    return result


def _time(value: object) -> datetime:
    try:
        return parse_time(value, "t")
    except InvalidRequest:
        raise UpstreamUnavailable("the data API sent a malformed timestamp") from None


def _obj(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UpstreamUnavailable("the data API sent a malformed answer")
    return value


def bar_from_wire(data: object) -> Bar:
    d = _obj(data)
    return Bar(
        t=_time(d.get("t")), open=_dec(d.get("o"), "open"), high=_dec(d.get("h"), "high"), low=_dec(d.get("l"), "low"),
        close=_dec(d.get("c"), "close"), volume=_dec(d.get("v", 0), "volume"), trade_count=int(d.get("n") or 0),
        vwap=_dec(d["vw"], "vwap") if d.get("vw") is not None else None,
    )


def trade_from_wire(data: object) -> Trade:
    d = _obj(data)
    side = {"B": "buy", "S": "sell"}.get(str(d.get("tks", "")))
    raw_id = d.get("i", 0)
    return Trade(
        t=_time(d.get("t")), price=_dec(d.get("p"), "price"), size=_dec(d.get("s", 0), "size"),
        id=raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else 0, taker_side=side,
    )


def quote_from_wire(data: object) -> Quote:
    d = _obj(data)
    return Quote(
        t=_time(d.get("t")), bid=_dec(d.get("bp", 0), "bid"), bid_size=_dec(d.get("bs", 0), "bid size"),
        ask=_dec(d.get("ap", 0), "ask"), ask_size=_dec(d.get("as", 0), "ask size"),
    )


_ITEM_FROM_WIRE = {DataKind.BARS: bar_from_wire, DataKind.TRADES: trade_from_wire, DataKind.QUOTES: quote_from_wire}


def page_from_wire(data: object, kind: DataKind) -> Page:
    d = _obj(data)
    raw = _obj(d.get(kind.value) or {})
    items = {str(s): [_ITEM_FROM_WIRE[kind](i) for i in (v or [])] for s, v in raw.items()}
    token = d.get("next_page_token")
    return Page(items, token if isinstance(token, str) and token else None)


def latest_from_wire(data: object, key: str, parse) -> dict[str, Any]:
    d = _obj(data)
    return {str(s): parse(v) for s, v in _obj(d.get(key) or {}).items()}


def snapshots_from_wire(data: object, nested: bool) -> dict[str, Snapshot]:
    d = _obj(data)
    raw = _obj(d.get("snapshots") or {}) if nested else d
    out = {}
    for symbol, snap in raw.items():
        s = _obj(snap)

        def opt(name, parse):
            return parse(s[name]) if s.get(name) else None

        out[str(symbol)] = Snapshot(
            latest_trade=opt("latestTrade", trade_from_wire),
            latest_quote=opt("latestQuote", quote_from_wire),
            minute_bar=opt("minuteBar", bar_from_wire),
            daily_bar=opt("dailyBar", bar_from_wire),
            prev_daily_bar=opt("prevDailyBar", bar_from_wire),
        )
    return out


def book_from_wire(data: object) -> OrderBook:
    d = _obj(data)

    def levels(raw: object) -> tuple[tuple[Decimal, Decimal], ...]:
        return tuple((_dec(_obj(l).get("p"), "price"), _dec(_obj(l).get("s"), "size")) for l in (raw or []))

    return OrderBook(t=_time(d.get("t")), bids=levels(d.get("b")), asks=levels(d.get("a")))


def symbols_param(symbols: Iterable[str]) -> str:
    return ",".join(symbols)
