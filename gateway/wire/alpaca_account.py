"""Alpaca's account calls besides trading (assets, calendar, configurations, activities, portfolio
history, watchlists, option contracts, corporate actions), both directions: bots' parameters and
bodies validated in, the model out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from ..errors import InvalidRequest
from ..model import Asset, AssetClass, classify_symbol
from ..ports import CalendarDay, Watchlist
from .alpaca import asset_to_wire, iso, parse_symbol

MAX_CALENDAR_DAYS = 366 * 20
MAX_ANNOUNCEMENT_DAYS = 90  # Alpaca's own limit on since..until
MAX_WATCHLIST_NAME = 64
QUOTE_ALIASES = ("USDT", "USDC", "USD", "BTC")  # BTCUSD -> BTC/USD, as Alpaca answers

ASSET_PARAMS = frozenset({"status", "asset_class", "exchange", "attributes"})
ACTIVITY_PARAMS = frozenset(
    {"activity_types", "activity_type", "category", "date", "until", "after", "direction", "page_size", "page_token"}
)
HISTORY_PARAMS = frozenset(
    {"period", "timeframe", "intraday_reporting", "start", "pnl_reset", "end", "date_end", "extended_hours",
     "force_engine_version", "cashflow_types"}
)
CONTRACT_PARAMS = frozenset(
    {"underlying_symbols", "status", "expiration_date", "expiration_date_gte", "expiration_date_lte", "root_symbol",
     "type", "style", "strike_price_gte", "strike_price_lte", "page_token", "limit", "ppind", "show_deliverables"}
)
ANNOUNCEMENT_PARAMS = frozenset({"ca_types", "since", "until", "symbol", "cusip", "date_type"})

# Account configuration fields and the values each takes.
_CONFIG_CHOICES: dict[str, tuple] = {
    "dtbp_check": ("both", "entry", "exit"),
    "pdt_check": ("both", "entry", "exit"),
    "trade_confirm_email": ("all", "none"),
    "max_margin_multiplier": ("1", "2", "4"),
}
_CONFIG_BOOLS = ("fractional_trading", "no_shorting", "suspend_trade", "ptp_no_exception_entry")


def parse_date(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise InvalidRequest(f"{name} must be a date (YYYY-MM-DD)") from None


def parse_calendar_range(params: Mapping[str, str], today: date) -> tuple[date, date]:
    start = parse_date(params.get("start"), "start") or today - timedelta(days=365)
    end = parse_date(params.get("end"), "end") or today + timedelta(days=365)
    if end < start:
        raise InvalidRequest("end must not be before start")
    if (end - start).days > MAX_CALENDAR_DAYS:
        raise InvalidRequest(f"the calendar range is too large: at most {MAX_CALENDAR_DAYS} days per request")
    return start, end


def parse_asset_class(value: str | None) -> AssetClass | None:
    if not value:
        return None
    try:
        return AssetClass(value.strip().lower())
    except ValueError:
        raise InvalidRequest("asset_class must be one of: us_equity, crypto, us_option") from None


def alias_candidates(raw: str) -> list[str]:
    """The symbols a bot may mean: ``BTCUSD`` is ``BTC/USD`` (Alpaca answers the slash form)."""
    text = raw.strip().upper()
    if "/" in text:
        return [text]
    candidates = [text]
    for quote in QUOTE_ALIASES:
        if text.endswith(quote) and len(text) > len(quote) + 1:
            symbol = f"{text[: -len(quote)]}/{quote}"
            if classify_symbol(symbol) is AssetClass.CRYPTO:
                candidates.append(symbol)
    return candidates


def parse_configuration_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """A PATCH body: every field typed, unknown ones refused, nulls (alpaca-py sends the whole
    model) ignored."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        if name in _CONFIG_BOOLS:
            if not isinstance(value, bool):
                raise InvalidRequest(f"{name} must be true or false")
        elif name in _CONFIG_CHOICES:
            value = str(value) if name == "max_margin_multiplier" and isinstance(value, int) else value
            if value not in _CONFIG_CHOICES[name]:
                raise InvalidRequest(f"{name} must be one of: {', '.join(_CONFIG_CHOICES[name])}")
        elif name == "max_options_trading_level":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
                raise InvalidRequest("max_options_trading_level must be an integer from 0 to 3")
        else:
            raise InvalidRequest(f"unknown field {str(name)[:64]}")
        changes[name] = value
    return changes


def parse_watchlist_body(body: Mapping[str, Any], *, partial: bool) -> tuple[str | None, list[str] | None]:
    unknown = sorted(set(body) - {"name", "symbols"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0][:64]}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > MAX_WATCHLIST_NAME
                             or not name.isprintable()):
        raise InvalidRequest(f"name must be a printable string of at most {MAX_WATCHLIST_NAME} characters")
    if name is None and not partial:
        raise InvalidRequest("name is required")
    raw = body.get("symbols")
    symbols = None
    if raw is not None:
        if not isinstance(raw, list):
            raise InvalidRequest("symbols must be a list")
        symbols = [parse_symbol(s, "symbols")[0] for s in raw]
    return name, symbols


def parse_announcement_range(params: Mapping[str, str]) -> None:
    for name in ("ca_types", "since", "until"):
        if not params.get(name):
            raise InvalidRequest(f"{name} is required")
    since, until = parse_date(params["since"], "since"), parse_date(params["until"], "until")
    if until < since or (until - since).days > MAX_ANNOUNCEMENT_DAYS:
        raise InvalidRequest(f"since..until must be a range of at most {MAX_ANNOUNCEMENT_DAYS} days")


def calendar_to_wire(day: CalendarDay) -> dict[str, Any]:
    return {
        "date": day.date.isoformat(),
        "open": day.open,
        "close": day.close,
        "session_open": day.open.replace(":", ""),
        "session_close": day.close.replace(":", ""),
        "settlement_date": (day.date + timedelta(days=1)).isoformat(),
    }


def account_uuid(account_id: str) -> str:
    try:
        return str(uuid.UUID(account_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gateway-account:{account_id}"))


def watchlist_to_wire(watchlist: Watchlist, account_id: str, assets: list[Asset]) -> dict[str, Any]:
    return {
        "id": watchlist.id,
        "account_id": account_uuid(account_id),
        "name": watchlist.name,
        "created_at": iso(watchlist.created_at),
        "updated_at": iso(watchlist.updated_at),
        "assets": [asset_to_wire(a) for a in assets],
    }
