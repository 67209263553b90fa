"""The ccxt venue's markets: which of the exchange's markets the venue trades, URLs moved to a
paper broker or gateway, the venue's capabilities, and the exchange's price/amount grid."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base import errors as cx

from ...errors import OrderRejected
from ...model import AssetClass, classify_symbol
from ..base import VenueCapabilities
from .codec import safe_num
from .user_stream import SUPPORTED_EXCHANGES


def index_markets(exchange: Any) -> tuple[dict[str, dict], dict[str, str]]:
    """(internal symbol -> ccxt market, ccxt symbol -> internal symbol) of the markets traded:
    linear swaps for a derivatives venue, spot otherwise."""
    derivatives = exchange.options.get("defaultType", "spot") in ("swap", "future")
    markets: dict[str, dict] = {}
    for market in exchange.markets.values():
        if derivatives and not (market.get("swap") and market.get("linear")):
            continue
        if not derivatives and not market.get("spot"):
            continue
        symbol = f"{market['base']}/{market['quote']}"
        if classify_symbol(symbol) is AssetClass.CRYPTO and symbol not in markets:
            markets[symbol] = market
    return markets, {m["symbol"]: s for s, m in markets.items()}


def capabilities(exchange_id: str, urls: dict, sandbox: bool, streamed: bool) -> VenueCapabilities:
    """Legs are emulated (no native classes); a replace is cancel + new; exits are reduce-only.
    A venue pointed at a loopback address is a paper broker; the exchange's sandbox is a sandbox;
    anything else may be real money."""
    api = urls.get("api")
    host = urlsplit(api).hostname if isinstance(api, str) else None
    if sandbox:
        environment = "sandbox"
    elif host in ("127.0.0.1", "localhost", "::1"):
        environment = "paper"
    else:
        environment = "live"
    return VenueCapabilities(
        order_classes={},
        amend=False,
        reduce_only=True,
        event_stream=streamed,
        environment=environment,
        rate_limit_per_min=2400 if exchange_id in SUPPORTED_EXCHANGES else None,
    )


def rebase(api: dict, base: str) -> dict:
    """Every URL of ccxt's ``urls['api']`` (nested or not) moved to ``base``, paths kept."""
    root = base.rstrip("/")
    out: dict = {}
    for key, value in api.items():
        if isinstance(value, dict):
            out[key] = rebase(value, base)
        elif isinstance(value, str):
            out[key] = root + urlsplit(value).path
        else:
            out[key] = value
    return out


def on_grid(exchange: Any, market: dict, value: Decimal, what: str, rule: str, rounder: Callable) -> str:
    """``value`` as the exchange's precision writes it; refused (not silently rounded) when it is
    not already on the exchange's grid: a rounded order is not the order the policy judged."""
    try:
        text = rounder(market["symbol"], format(value, "f"))
        fits = Decimal(text) == value
    except (cx.BaseError, InvalidOperation, ValueError, TypeError):
        fits, text = False, ""
    if not fits:
        raise OrderRejected(
            f"{what} {format(value.normalize(), 'f')} is not a multiple of the venue's increment ({rule})"
        )
    return text


def round_to_tick(value: Decimal, tick: Decimal | None, up: bool) -> Decimal:
    if not tick:
        return value
    steps = (value / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return (steps * tick).normalize()


def increment(exchange: Any, precision: Any) -> Decimal | None:
    """A precision from ccxt as an increment: tick-size mode gives it directly, decimal-places
    mode gives a count of places."""
    value = safe_num(precision)
    if value is None:
        return None
    if exchange is not None and getattr(exchange, "precisionMode", None) == ccxt_async.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    return value
