"""Codec between Alpaca Trading API v2 JSON and the internal model, in both directions.

Used by the Alpaca dialect (requests in, responses out) and by the Alpaca venue (requests out,
responses in), so both sides of the gateway speak exactly the same shapes.

Conventions of the wire, checked against alpaca-py 0.44's pydantic models:
- responses carry every number as a string (``"qty": "2"``); timestamps are ISO-8601 UTC;
- requests may carry numbers as JSON numbers or strings; both go through
  ``gateway.numbers.parse_decimal`` so NaN, infinities, negatives and absurd sizes are refused;
- ids are UUIDs; assets get a stable UUID derived from the symbol (``asset_id_for``).

Every error raised here is ``InvalidRequest`` with a message naming the offending field. Messages
echo nothing from the request but the name of an unknown field (cut to 64 characters) and values
already validated against a fixed set.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from ..errors import InvalidRequest
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
    OrderStatus,
    OrderType,
    Position,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    classify_symbol,
    contract_multiplier,
)
from ..numbers import (
    MAX_NOTIONAL,
    MAX_PERCENT,
    MAX_PRICE,
    MAX_QTY,
    fmt,
    parse_decimal,
    parse_optional,
)

# A fixed namespace so every gateway derives the same asset id for the same symbol.
ASSET_NAMESPACE = uuid.UUID("6f1c2b4e-3d0a-5b8e-9c71-2a4d5e6f7081")

MAX_CLIENT_ORDER_ID = 128
MAX_ORDERS_LIMIT = 500
MAX_SYMBOL_LENGTH = 32
_RATIO = Decimal("1e-10")

# Exchanges alpaca-py's AssetExchange enum accepts; anything else is rendered as "" (unknown),
# because an unknown value would make the client's model validation fail.
ALPACA_EXCHANGES = frozenset(
    {"AMEX", "ARCA", "ASCX", "BATS", "NYSE", "NASDAQ", "NYSEARCA", "FTXU", "CBSE", "GNSS", "ERSX", "OTC", "CRYPTO", ""}
)

# Account statuses alpaca-py's AccountStatus enum accepts.
ALPACA_ACCOUNT_STATUSES = frozenset(
    {
        "ACCOUNT_CLOSED", "ACCOUNT_UPDATED", "ACTION_REQUIRED", "ACTIVE", "AML_REVIEW", "APPROVAL_PENDING",
        "APPROVED", "DISABLED", "DISABLE_PENDING", "EDITED", "INACTIVE", "KYC_SUBMITTED", "LIMITED",
        "ONBOARDING", "PAPER_ONLY", "REAPPROVAL_PENDING", "REJECTED", "RESUBMITTED", "SIGNED_UP",
        "SUBMISSION_FAILED", "SUBMITTED",
    }
)

# Fields alpaca-py's OrderRequest subclasses can send (alpaca/trading/requests.py), and no more.
ORDER_FIELDS = frozenset(
    {
        "symbol",
        "qty",
        "notional",
        "side",
        "type",
        "time_in_force",
        "order_class",
        "extended_hours",
        "client_order_id",
        "legs",
        "take_profit",
        "stop_loss",
        "position_intent",
        "limit_price",
        "stop_price",
        "trail_price",
        "trail_percent",
    }
)
TAKE_PROFIT_FIELDS = frozenset({"limit_price"})
STOP_LOSS_FIELDS = frozenset({"stop_price", "limit_price"})
REPLACE_FIELDS = frozenset({"qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id"})
ORDER_QUERY_FIELDS = frozenset({"status", "limit", "after", "until", "direction", "nested", "symbols", "side"})
POSITION_INTENTS = {
    "buy_to_open": Side.BUY,
    "buy_to_close": Side.BUY,
    "sell_to_open": Side.SELL,
    "sell_to_close": Side.SELL,
}

# Which price fields each order type takes: (required, allowed).
_TYPE_PRICES: dict[OrderType, tuple[frozenset[str], frozenset[str]]] = {
    OrderType.MARKET: (frozenset(), frozenset()),
    OrderType.LIMIT: (frozenset({"limit_price"}), frozenset({"limit_price"})),
    OrderType.STOP: (frozenset({"stop_price"}), frozenset({"stop_price"})),
    OrderType.STOP_LIMIT: (frozenset({"stop_price", "limit_price"}), frozenset({"stop_price", "limit_price"})),
    OrderType.TRAILING_STOP: (frozenset(), frozenset({"trail_price", "trail_percent"})),
}

# Alpaca statuses the internal model does not name, mapped to the nearest internal one. Unknown
# ones count as open: for risk it is safer to keep reserving for an order than to forget it.
_UPSTREAM_STATUSES = {
    "done_for_day": OrderStatus.ACCEPTED,
    "stopped": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "pending_review": OrderStatus.PENDING_NEW,
    "suspended": OrderStatus.HELD,
    "calculated": OrderStatus.PARTIALLY_FILLED,
}

E = TypeVar("E", bound=Enum)


# ---------------------------------------------------------------------------------------
# Small helpers


def alpaca_error_code(status: int) -> int:
    """Alpaca's error code for an HTTP status: 422 -> 42210000."""
    return status * 100000 + 10000


def asset_id_for(symbol: str) -> str:
    """A stable UUID for a symbol, so the same asset has the same id on every call."""
    return str(uuid.uuid5(ASSET_NAMESPACE, symbol))


def _as_uuid(value: str, namespace_key: str) -> str:
    """``value`` if it already is a UUID, else a stable UUID derived from it."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return str(uuid.uuid5(ASSET_NAMESPACE, f"{namespace_key}:{value}"))


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``; naive datetimes are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object, name: str) -> datetime:
    """An ISO-8601 timestamp (or date) into an aware UTC datetime."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidRequest(f"{name} must be an ISO-8601 timestamp")
    # An unencoded '+' in a query string arrives as a space.
    text = value.strip().replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _optional_time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    return None if value in (None, "") else parse_time(value, name)


def parse_enum(enum_type: type[E], value: object, name: str) -> E:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    try:
        return enum_type(value.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise InvalidRequest(f"{name} must be one of: {allowed}") from None


def parse_bool(value: object, name: str) -> bool:
    """A JSON boolean, or the strings true/false (any case) from a query string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidRequest(f"{name} must be true or false")


def parse_symbol(value: object, name: str = "symbol") -> tuple[str, AssetClass]:
    """A symbol (upper-cased) and its asset class from its shape: AAPL, BTC/USD or an OCC option."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be a non-empty string")
    if len(value) > MAX_SYMBOL_LENGTH:
        raise InvalidRequest(f"{name} is longer than {MAX_SYMBOL_LENGTH} characters")
    symbol = value.strip().upper()
    asset_class = classify_symbol(symbol)
    if asset_class is None:
        raise InvalidRequest(f"{name} is not a known symbol shape (stock like AAPL, crypto like BTC/USD, OCC option)")
    return symbol, asset_class


def parse_client_order_id(value: object, name: str = "client_order_id") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")
    if len(value) > MAX_CLIENT_ORDER_ID:
        raise InvalidRequest(f"{name} must be at most {MAX_CLIENT_ORDER_ID} characters")
    # It is echoed in responses and logs: no control characters.
    if not value.isprintable():
        raise InvalidRequest(f"{name} must not contain control characters")
    return value


def refuse_unknown(data: Mapping[str, Any], allowed: frozenset[str], where: str = "") -> None:
    """Refuse fields the wire contract does not have, naming the first (sorted) offender."""
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        field = unknown[0][:64]
        raise InvalidRequest(f"unknown field {where}{field}")


def _require(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise InvalidRequest(f"{name} is required")
    return value


def _signed(value: object, name: str, *, maximum: Decimal) -> Decimal:
    """A possibly negative number from a response (cash, short market value, short qty)."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_decimal(value.strip()[1:], name, maximum=maximum, allow_zero=True)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and value < 0:
        return -parse_decimal(-value, name, maximum=maximum, allow_zero=True)
    return parse_decimal(value, name, maximum=maximum, allow_zero=True)


def _signed_optional(data: Mapping[str, Any], name: str, *, maximum: Decimal = MAX_NOTIONAL) -> Decimal | None:
    value = data.get(name)
    return None if value in (None, "") else _signed(value, name, maximum=maximum)


def _amount(data: Mapping[str, Any], name: str, *, maximum: Decimal = MAX_PRICE) -> Decimal | None:
    """A non-negative number from a response; empty or missing is None."""
    value = data.get(name)
    return None if value in (None, "") else parse_decimal(value, name, maximum=maximum, allow_zero=True)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if denominator == 0:
        return Decimal(0)
    return (numerator / denominator).quantize(_RATIO)


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")
    return value


# ---------------------------------------------------------------------------------------
# Responses: internal model -> Alpaca JSON


def order_to_wire(order: Order) -> dict[str, Any]:
    legs = [order_to_wire(leg) for leg in order.legs] if order.legs else None
    body: dict[str, Any] = {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
        "submitted_at": iso(order.submitted_at),
        "filled_at": iso(order.filled_at),
        "expired_at": iso(order.expired_at),
        "expires_at": None,
        "canceled_at": iso(order.canceled_at),
        "failed_at": iso(order.failed_at),
        "replaced_at": iso(order.replaced_at),
        "replaced_by": order.replaced_by,
        "replaces": order.replaces,
        "asset_id": asset_id_for(order.symbol),
        "symbol": order.symbol,
        "asset_class": order.asset_class.value,
        "notional": fmt(order.notional),
        "qty": fmt(order.qty),
        "filled_qty": fmt(order.filled_qty) or "0",
        "filled_avg_price": fmt(order.filled_avg_price),
        "order_class": order.order_class.value,
        "order_type": order.type.value,
        "type": order.type.value,
        "side": order.side.value,
        "position_intent": None,
        "time_in_force": order.time_in_force.value,
        "limit_price": fmt(order.limit_price),
        "stop_price": fmt(order.stop_price),
        "status": order.status.value,
        "extended_hours": order.extended_hours,
        "legs": legs,
        "trail_percent": fmt(order.trail_percent),
        "trail_price": fmt(order.trail_price),
        "hwm": fmt(order.hwm),
    }
    if order.gateway_note:
        # Not an Alpaca field; clients ignore unknown fields, a human reading the JSON sees it.
        body["gateway_note"] = order.gateway_note
    return body


def position_exchange(asset_class: AssetClass) -> str:
    # Positions carry no exchange in the internal model; "" is Alpaca's own "unknown".
    return "CRYPTO" if asset_class is AssetClass.CRYPTO else ""


def position_to_wire(position: Position) -> dict[str, Any]:
    multiplier = contract_multiplier(position.asset_class)
    lastday = position.lastday_price if position.lastday_price is not None else position.current_price
    intraday_pl = (position.current_price - lastday) * position.qty * multiplier
    lastday_value = lastday * position.qty * multiplier
    values = {
        "avg_entry_price": fmt(position.avg_entry_price),
        "market_value": fmt(position.market_value),
        "cost_basis": fmt(position.cost_basis),
        "unrealized_pl": fmt(position.unrealized_pl),
        "unrealized_plpc": fmt(_ratio(position.unrealized_pl, abs(position.cost_basis))),
        "unrealized_intraday_pl": fmt(intraday_pl),
        "unrealized_intraday_plpc": fmt(_ratio(intraday_pl, abs(lastday_value))),
        "current_price": fmt(position.current_price),
        "lastday_price": fmt(lastday),
        "change_today": fmt(_ratio(position.current_price - lastday, lastday)),
    }
    return {
        "asset_id": asset_id_for(position.symbol),
        "symbol": position.symbol,
        "exchange": position_exchange(position.asset_class),
        "asset_class": position.asset_class.value,
        "asset_marginable": position.asset_class is AssetClass.US_EQUITY,
        "qty": fmt(position.qty),
        "qty_available": fmt(position.qty),
        "side": position.side,
        **values,
    }


def account_to_wire(account: Account) -> dict[str, Any]:
    account_id = _as_uuid(account.id, "account")
    number = account.id if account_id != account.id else "PA" + uuid.UUID(account_id).hex[:10].upper()
    return {
        "id": account_id,
        "account_number": number,
        "status": _account_status(account.status),
        "crypto_status": _account_status(account.status),
        "currency": account.currency,
        "buying_power": fmt(account.buying_power),
        "regt_buying_power": fmt(account.buying_power),
        "non_marginable_buying_power": fmt(max(account.cash, Decimal(0))),
        "options_buying_power": fmt(max(account.cash, Decimal(0))),
        "cash": fmt(account.cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "portfolio_value": fmt(account.equity),
        "equity": fmt(account.equity),
        "last_equity": fmt(account.last_equity),
        "long_market_value": fmt(account.long_market_value),
        "short_market_value": fmt(account.short_market_value),
        "initial_margin": fmt(account.initial_margin),
        "maintenance_margin": fmt(account.maintenance_margin),
        "last_maintenance_margin": fmt(account.maintenance_margin),
        "sma": "0",
        "multiplier": fmt(account.multiplier),
        "shorting_enabled": account.multiplier > 1,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "created_at": iso(account.created_at),
    }


def _account_status(status: str) -> str:
    # An unknown status would fail alpaca-py's validation; "INACTIVE" errs on the side of not trading.
    return status if status in ALPACA_ACCOUNT_STATUSES else "INACTIVE"


def clock_to_wire(clock: Clock) -> dict[str, Any]:
    return {
        "timestamp": iso(clock.timestamp),
        "is_open": clock.is_open,
        "next_open": iso(clock.next_open),
        "next_close": iso(clock.next_close),
    }


def asset_to_wire(asset: Asset) -> dict[str, Any]:
    return {
        # The id every other response (orders, positions) uses for this symbol, so a client can
        # match them up; the venue's own asset id does not survive the internal model anyway.
        "id": asset_id_for(asset.symbol),
        "class": asset.asset_class.value,
        "exchange": asset.exchange if asset.exchange in ALPACA_EXCHANGES else "",
        "symbol": asset.symbol,
        "name": asset.name,
        "status": asset.status if asset.status in ("active", "inactive") else "inactive",
        "tradable": asset.tradable,
        "marginable": asset.marginable,
        "shortable": asset.shortable,
        "easy_to_borrow": asset.easy_to_borrow,
        "fractionable": asset.fractionable,
        "attributes": [],
    }


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    return {"code": alpaca_error_code(status), "message": message or "failed"}


def close_result_to_wire(result: BulkResult) -> dict[str, Any]:
    """One row of DELETE /v2/positions (alpaca-py ClosePositionResponse); ``id`` is the symbol."""
    row: dict[str, Any] = {"symbol": result.id, "status": result.status}
    if result.order is not None:
        row["order_id"] = result.order.id
        row["body"] = order_to_wire(result.order)
    else:
        row["body"] = {**_error_body(result.status, result.message), "symbol": result.id}
    return row


def cancel_result_to_wire(result: BulkResult) -> dict[str, Any]:
    """One row of DELETE /v2/orders (alpaca-py CancelOrderResponse); ``id`` is the order id."""
    if result.order is not None:
        body: dict[str, Any] | None = order_to_wire(result.order)
    elif result.message:
        body = _error_body(result.status, result.message)
    else:
        body = None
    return {"id": result.id, "status": result.status, "body": body}


# ---------------------------------------------------------------------------------------
# Responses: Alpaca JSON -> internal model (the venue reading its upstream)


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{what} must be a JSON object")
    return data


def _asset_class_of(data: Mapping[str, Any], symbol: str, field: str = "asset_class") -> AssetClass:
    value = data.get(field)
    if value:
        return parse_enum(AssetClass, value, field)
    found = classify_symbol(symbol)
    if found is None:
        raise InvalidRequest(f"{field} is missing and symbol has no known shape")
    return found


def _order_status(value: object) -> OrderStatus:
    if not isinstance(value, str):
        raise InvalidRequest("status must be a string")
    try:
        return OrderStatus(value)
    except ValueError:
        return _UPSTREAM_STATUSES.get(value, OrderStatus.ACCEPTED)


def order_from_wire(data: object) -> Order:
    data = _object(data, "order")
    if data.get("order_class") == "mleg":
        raise InvalidRequest("multi-leg (mleg) orders are not supported")
    symbol = _str(data, "symbol")
    created = parse_time(data.get("created_at"), "created_at")
    legs = data.get("legs") or []
    if not isinstance(legs, list):
        raise InvalidRequest("legs must be a list")
    return Order(
        id=_str(data, "id"),
        client_order_id=_str(data, "client_order_id"),
        symbol=symbol,
        asset_class=_asset_class_of(data, symbol),
        side=parse_enum(Side, data.get("side"), "side"),
        type=parse_enum(OrderType, data.get("type") or data.get("order_type"), "type"),
        time_in_force=parse_enum(TimeInForce, data.get("time_in_force"), "time_in_force"),
        status=_order_status(data.get("status")),
        created_at=created,
        updated_at=_optional_time(data, "updated_at") or created,
        submitted_at=_optional_time(data, "submitted_at") or created,
        qty=_amount(data, "qty", maximum=MAX_QTY),
        notional=_amount(data, "notional", maximum=MAX_NOTIONAL),
        filled_qty=_amount(data, "filled_qty", maximum=MAX_QTY) or Decimal(0),
        filled_avg_price=_amount(data, "filled_avg_price"),
        limit_price=_amount(data, "limit_price"),
        stop_price=_amount(data, "stop_price"),
        trail_price=_amount(data, "trail_price"),
        trail_percent=_amount(data, "trail_percent", maximum=MAX_PERCENT),
        hwm=_amount(data, "hwm"),
        order_class=parse_enum(OrderClass, data.get("order_class") or "simple", "order_class"),
        legs=[order_from_wire(leg) for leg in legs],
        extended_hours=bool(data.get("extended_hours", False)),
        filled_at=_optional_time(data, "filled_at"),
        canceled_at=_optional_time(data, "canceled_at"),
        expired_at=_optional_time(data, "expired_at"),
        failed_at=_optional_time(data, "failed_at"),
        replaced_at=_optional_time(data, "replaced_at"),
        replaced_by=data.get("replaced_by") or None,
        replaces=data.get("replaces") or None,
        gateway_note=data.get("gateway_note") if isinstance(data.get("gateway_note"), str) else None,
    )


def position_from_wire(data: object) -> Position:
    data = _object(data, "position")
    symbol = _str(data, "symbol")
    qty = _signed(_require(data, "qty"), "qty", maximum=MAX_QTY)
    # Alpaca signs short quantities; be robust to a server that only says side=short.
    if data.get("side") == "short" and qty > 0:
        qty = -qty
    avg_entry = parse_decimal(_require(data, "avg_entry_price"), "avg_entry_price", maximum=MAX_PRICE, allow_zero=True)
    current = _amount(data, "current_price")
    return Position(
        symbol=symbol,
        asset_class=_asset_class_of(data, symbol),
        qty=qty,
        avg_entry_price=avg_entry,
        current_price=current if current is not None else avg_entry,
        lastday_price=_amount(data, "lastday_price"),
    )


def account_from_wire(data: object) -> Account:
    data = _object(data, "account")
    equity = _signed(_require(data, "equity"), "equity", maximum=MAX_NOTIONAL)
    created = _optional_time(data, "created_at")
    extra = {"created_at": created} if created else {}
    return Account(
        id=_str(data, "id"),
        equity=equity,
        cash=_signed(_require(data, "cash"), "cash", maximum=MAX_NOTIONAL),
        buying_power=_signed(_require(data, "buying_power"), "buying_power", maximum=MAX_NOTIONAL),
        long_market_value=_signed_optional(data, "long_market_value") or Decimal(0),
        short_market_value=_signed_optional(data, "short_market_value") or Decimal(0),
        last_equity=_signed_optional(data, "last_equity") or equity,
        currency=data.get("currency") or "USD",
        status=data.get("status") or "ACTIVE",
        multiplier=_amount(data, "multiplier", maximum=Decimal(100)) or Decimal(1),
        initial_margin=_signed_optional(data, "initial_margin") or Decimal(0),
        maintenance_margin=_signed_optional(data, "maintenance_margin") or Decimal(0),
        **extra,
    )


def clock_from_wire(data: object) -> Clock:
    data = _object(data, "clock")
    is_open = data.get("is_open")
    if not isinstance(is_open, bool):
        raise InvalidRequest("is_open must be a boolean")
    return Clock(
        timestamp=parse_time(data.get("timestamp"), "timestamp"),
        is_open=is_open,
        next_open=parse_time(data.get("next_open"), "next_open"),
        next_close=parse_time(data.get("next_close"), "next_close"),
    )


def asset_from_wire(data: object) -> Asset:
    data = _object(data, "asset")
    symbol = _str(data, "symbol")
    return Asset(
        id=_str(data, "id"),
        symbol=symbol,
        asset_class=_asset_class_of(data, symbol, "class"),
        name=data.get("name") or symbol,
        exchange=data.get("exchange") or "",
        tradable=bool(data.get("tradable", False)),
        marginable=bool(data.get("marginable", False)),
        shortable=bool(data.get("shortable", False)),
        easy_to_borrow=bool(data.get("easy_to_borrow", False)),
        fractionable=bool(data.get("fractionable", False)),
        status=data.get("status") or "active",
    )


def _row_status(row: Mapping[str, Any]) -> int:
    status = row.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise InvalidRequest("status must be an integer")
    return status


def _row_outcome(status: int, body: object) -> tuple[Order | None, str | None]:
    if 200 <= status < 300 and isinstance(body, Mapping) and "client_order_id" in body:
        return order_from_wire(body), None
    message = body.get("message") if isinstance(body, Mapping) else None
    return None, message if isinstance(message, str) else None


def close_result_from_wire(data: object) -> BulkResult:
    row = _object(data, "close position result")
    status = _row_status(row)
    order, message = _row_outcome(status, row.get("body"))
    return BulkResult(id=_str(row, "symbol"), status=status, order=order, message=message)


def cancel_result_from_wire(data: object) -> BulkResult:
    row = _object(data, "cancel order result")
    status = _row_status(row)
    order, message = _row_outcome(status, row.get("body"))
    return BulkResult(id=_str(row, "id"), status=status, order=order, message=message)


# ---------------------------------------------------------------------------------------
# Requests: Alpaca JSON -> internal model (the dialect reading a bot)


def parse_order_request(body: object) -> OrderIntent:
    """POST /v2/orders body into an OrderIntent, enforcing Alpaca's order rules."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("order must be a JSON object")
    refuse_unknown(body, ORDER_FIELDS)
    data = {key: value for key, value in body.items() if value is not None}
    order_class = _parse_order_class(data.get("order_class"))
    if "legs" in data:
        raise InvalidRequest("legs are only used by multi-leg (mleg) orders, which are not supported")
    symbol, asset_class = parse_symbol(_require(data, "symbol"))
    side = parse_enum(Side, _require(data, "side"), "side")
    order_type = parse_enum(OrderType, _require(data, "type"), "type")
    tif = parse_enum(TimeInForce, _require(data, "time_in_force"), "time_in_force")
    _check_position_intent(data.get("position_intent"), side)
    qty, notional = _parse_size(data, order_type, order_class)
    prices = _parse_prices(data)
    take_profit, stop_loss = _parse_exits(data, order_class, side, tif)
    if order_class is OrderClass.OCO:
        prices["limit_price"] = _oco_limit(order_type, prices.get("limit_price"), take_profit)
    _check_type_prices(order_type, prices)
    extended_hours = parse_bool(data.get("extended_hours", False), "extended_hours")
    return OrderIntent(
        symbol=symbol,
        asset_class=asset_class,
        side=side,
        type=order_type,
        time_in_force=tif,
        qty=qty,
        notional=notional,
        limit_price=prices.get("limit_price"),
        stop_price=prices.get("stop_price"),
        trail_price=prices.get("trail_price"),
        trail_percent=prices.get("trail_percent"),
        order_class=order_class,
        take_profit=take_profit,
        stop_loss=stop_loss,
        client_order_id=parse_client_order_id(data.get("client_order_id")),
        extended_hours=extended_hours,
    )


def _parse_order_class(value: object) -> OrderClass:
    if value in (None, ""):  # Alpaca treats an empty order_class as simple
        return OrderClass.SIMPLE
    if isinstance(value, str) and value.strip().lower() == "mleg":
        raise InvalidRequest("order_class mleg (multi-leg options) is not supported")
    return parse_enum(OrderClass, value, "order_class")


def _check_position_intent(value: object, side: Side) -> None:
    """position_intent is accepted (alpaca-py sends it) but must agree with side."""
    if value is None:
        return
    if not isinstance(value, str) or value.strip().lower() not in POSITION_INTENTS:
        raise InvalidRequest("position_intent must be one of: " + ", ".join(POSITION_INTENTS))
    if POSITION_INTENTS[value.strip().lower()] is not side:
        raise InvalidRequest(f"position_intent {value.strip().lower()} contradicts side {side.value}")


def _parse_size(
    data: Mapping[str, Any], order_type: OrderType, order_class: OrderClass
) -> tuple[Decimal | None, Decimal | None]:
    has_qty, has_notional = "qty" in data, "notional" in data
    if has_qty and has_notional:
        raise InvalidRequest("qty and notional are mutually exclusive: send exactly one")
    if not has_qty and not has_notional:
        raise InvalidRequest("one of qty or notional is required")
    if has_qty:
        return parse_decimal(data["qty"], "qty", maximum=MAX_QTY), None
    if order_type is not OrderType.MARKET or order_class is not OrderClass.SIMPLE:
        raise InvalidRequest("notional is only allowed for simple market orders")
    return None, parse_decimal(data["notional"], "notional", maximum=MAX_NOTIONAL)


def _parse_prices(data: Mapping[str, Any]) -> dict[str, Decimal]:
    limits = {"limit_price": MAX_PRICE, "stop_price": MAX_PRICE, "trail_price": MAX_PRICE, "trail_percent": MAX_PERCENT}
    prices = {}
    for name, maximum in limits.items():
        value = parse_optional(data.get(name), name, maximum=maximum)
        if value is not None:
            prices[name] = value
    return prices


def _check_type_prices(order_type: OrderType, prices: Mapping[str, Decimal]) -> None:
    required, allowed = _TYPE_PRICES[order_type]
    for name in sorted(prices):
        if name not in allowed:
            raise InvalidRequest(f"{name} is not allowed for {order_type.value} orders")
    for name in sorted(required):
        if name not in prices:
            raise InvalidRequest(f"{name} is required for {order_type.value} orders")
    if order_type is OrderType.TRAILING_STOP and len(prices) != 1:
        raise InvalidRequest("trailing_stop orders need exactly one of trail_price or trail_percent")


def _parse_take_profit(value: object) -> TakeProfit:
    if not isinstance(value, Mapping):
        raise InvalidRequest("take_profit must be an object")
    refuse_unknown(value, TAKE_PROFIT_FIELDS, "take_profit.")
    limit = parse_decimal(value.get("limit_price"), "take_profit.limit_price", maximum=MAX_PRICE)
    return TakeProfit(limit_price=limit)


def _parse_stop_loss(value: object) -> StopLoss:
    if not isinstance(value, Mapping):
        raise InvalidRequest("stop_loss must be an object")
    refuse_unknown(value, STOP_LOSS_FIELDS, "stop_loss.")
    stop = parse_decimal(value.get("stop_price"), "stop_loss.stop_price", maximum=MAX_PRICE)
    limit = parse_optional(value.get("limit_price"), "stop_loss.limit_price", maximum=MAX_PRICE)
    return StopLoss(stop_price=stop, limit_price=limit)


def _parse_exits(
    data: Mapping[str, Any], order_class: OrderClass, side: Side, tif: TimeInForce
) -> tuple[TakeProfit | None, StopLoss | None]:
    """take_profit / stop_loss for bracket, oco and oto; refused on simple orders."""
    take_profit = _parse_take_profit(data["take_profit"]) if "take_profit" in data else None
    stop_loss = _parse_stop_loss(data["stop_loss"]) if "stop_loss" in data else None
    label = order_class.value
    if order_class is OrderClass.SIMPLE:
        if take_profit or stop_loss:
            name = "take_profit" if take_profit else "stop_loss"
            raise InvalidRequest(f"{name} requires order_class bracket, oco or oto")
        return None, None
    if order_class in (OrderClass.BRACKET, OrderClass.OCO):
        if take_profit is None:
            raise InvalidRequest(f"{label} orders require take_profit.limit_price")
        if stop_loss is None:
            raise InvalidRequest(f"{label} orders require stop_loss.stop_price")
    elif (take_profit is None) == (stop_loss is None):
        raise InvalidRequest("oto orders need exactly one of take_profit or stop_loss")
    if tif not in (TimeInForce.DAY, TimeInForce.GTC):
        raise InvalidRequest(f"{label} orders need time_in_force day or gtc")
    if take_profit and stop_loss:
        _check_exit_prices(order_class, side, take_profit, stop_loss)
    return take_profit, stop_loss


def _check_exit_prices(order_class: OrderClass, side: Side, take_profit: TakeProfit, stop_loss: StopLoss) -> None:
    # A bracket's exits trade against its entry; an OCO is itself the exit, on its own side.
    exit_side = side if order_class is OrderClass.OCO else side.opposite
    tp, sl = take_profit.limit_price, stop_loss.stop_price
    if exit_side is Side.SELL and tp <= sl:
        raise InvalidRequest("take_profit.limit_price must be above stop_loss.stop_price when the exits sell")
    if exit_side is Side.BUY and tp >= sl:
        raise InvalidRequest("take_profit.limit_price must be below stop_loss.stop_price when the exits buy")


def _oco_limit(order_type: OrderType, limit_price: Decimal | None, take_profit: TakeProfit | None) -> Decimal:
    """An OCO is a limit order whose limit is the take-profit; Alpaca lets it be omitted."""
    if order_type is not OrderType.LIMIT:
        raise InvalidRequest("oco orders must have type limit")
    assert take_profit is not None  # checked by _parse_exits
    if limit_price is not None and limit_price != take_profit.limit_price:
        raise InvalidRequest("limit_price of an oco order must equal take_profit.limit_price")
    return take_profit.limit_price


def parse_replace_request(body: object) -> OrderReplace:
    """PATCH /v2/orders/{id} body (alpaca-py ReplaceOrderRequest)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("replace must be a JSON object")
    refuse_unknown(body, REPLACE_FIELDS)
    data = {key: value for key, value in body.items() if value is not None}
    if not data:
        raise InvalidRequest("replace needs at least one of: " + ", ".join(sorted(REPLACE_FIELDS)))
    tif = data.get("time_in_force")
    return OrderReplace(
        qty=parse_optional(data.get("qty"), "qty", maximum=MAX_QTY),
        time_in_force=parse_enum(TimeInForce, tif, "time_in_force") if tif is not None else None,
        limit_price=parse_optional(data.get("limit_price"), "limit_price", maximum=MAX_PRICE),
        stop_price=parse_optional(data.get("stop_price"), "stop_price", maximum=MAX_PRICE),
        trail=parse_optional(data.get("trail"), "trail", maximum=MAX_PRICE),
        client_order_id=parse_client_order_id(data.get("client_order_id")),
    )


def parse_order_query(params: Mapping[str, str]) -> OrderQuery:
    """GET /v2/orders query parameters (alpaca-py GetOrdersRequest)."""
    refuse_unknown(params, ORDER_QUERY_FIELDS, "query parameter ")
    status = params.get("status", "open").strip().lower()
    if status not in ("open", "closed", "all"):
        raise InvalidRequest("status must be one of: open, closed, all")
    direction = params.get("direction", "desc").strip().lower()
    if direction not in ("asc", "desc"):
        raise InvalidRequest("direction must be one of: asc, desc")
    return OrderQuery(
        status=status,
        limit=_parse_limit(params.get("limit")),
        after=parse_time(params["after"], "after") if params.get("after") else None,
        until=parse_time(params["until"], "until") if params.get("until") else None,
        direction=direction,
        nested=parse_bool(params["nested"], "nested") if "nested" in params else False,
        symbols=_parse_symbol_list(params.get("symbols")),
        side=parse_enum(Side, params["side"], "side") if params.get("side") else None,
    )


def _parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return 50
    text = value.strip()
    if not text.isdigit() or len(text) > 6:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_ORDERS_LIMIT}")
    limit = int(text)
    if not 1 <= limit <= MAX_ORDERS_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_ORDERS_LIMIT}")
    return limit


def _parse_symbol_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    parts = [part for part in value.split(",") if part.strip()]
    if len(parts) > MAX_ORDERS_LIMIT:
        raise InvalidRequest(f"symbols lists at most {MAX_ORDERS_LIMIT} symbols")
    return tuple(parse_symbol(part, "symbols")[0] for part in parts)


def parse_close_position_params(params: Mapping[str, str]) -> tuple[Decimal | None, Decimal | None]:
    """DELETE /v2/positions/{symbol}: at most one of qty and percentage."""
    refuse_unknown(params, frozenset({"qty", "percentage"}), "query parameter ")
    qty = parse_optional(params.get("qty") or None, "qty", maximum=MAX_QTY)
    percentage = parse_optional(params.get("percentage") or None, "percentage", maximum=MAX_PERCENT)
    if qty is not None and percentage is not None:
        raise InvalidRequest("qty and percentage are mutually exclusive")
    return qty, percentage


# ---------------------------------------------------------------------------------------
# Requests: internal model -> Alpaca JSON (the venue talking to its upstream)


def _put(body: dict[str, Any], name: str, value: Decimal | None) -> None:
    # Numbers go upstream as strings: exact, and Alpaca accepts both.
    if value is not None:
        body[name] = fmt(value)


def intent_to_wire(intent: OrderIntent, client_order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": intent.symbol,
        "side": intent.side.value,
        "type": intent.type.value,
        "time_in_force": intent.time_in_force.value,
        "client_order_id": client_order_id,
    }
    for name in ("qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent"):
        _put(body, name, getattr(intent, name))
    if intent.order_class is not OrderClass.SIMPLE:
        body["order_class"] = intent.order_class.value
    if intent.take_profit is not None:
        body["take_profit"] = {"limit_price": fmt(intent.take_profit.limit_price)}
    if intent.stop_loss is not None:
        stop_loss = {"stop_price": fmt(intent.stop_loss.stop_price)}
        _put(stop_loss, "limit_price", intent.stop_loss.limit_price)
        body["stop_loss"] = stop_loss
    if intent.extended_hours:
        body["extended_hours"] = True
    return body


def replace_to_wire(change: OrderReplace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("qty", "limit_price", "stop_price", "trail"):
        _put(body, name, getattr(change, name))
    if change.time_in_force is not None:
        body["time_in_force"] = change.time_in_force.value
    if change.client_order_id is not None:
        body["client_order_id"] = change.client_order_id
    return body


def order_query_to_params(query: OrderQuery) -> dict[str, str]:
    params = {
        "status": query.status,
        "limit": str(query.limit),
        "direction": query.direction,
        "nested": "true" if query.nested else "false",
    }
    if query.after is not None:
        params["after"] = iso(query.after) or ""
    if query.until is not None:
        params["until"] = iso(query.until) or ""
    if query.symbols:
        params["symbols"] = ",".join(query.symbols)
    if query.side is not None:
        params["side"] = query.side.value
    return params


# ---------------------------------------------------------------------------------------
# Paging (GET /v2/orders returns at most MAX_ORDERS_LIMIT; the rest is reached by time)

_OVERLAP = timedelta(microseconds=1)


class IncompletePage(InvalidRequest):
    """A full page whose orders all share one submission time: Alpaca's exclusive time bounds
    cannot reach past it, so the listing cannot be completed."""


def next_page_query(query: OrderQuery, page: list[Order], seen: set[str]) -> OrderQuery | None:
    """The query for the page after ``page`` (None: ``page`` was the last), for listing every
    order Alpaca's way: ascending pages move ``after``, descending ones ``until``, to the last
    order's submission time. The bound is moved one microsecond short of it, so orders that share
    that time are not skipped (``after``/``until`` are exclusive); the caller drops the ids it has
    already ``seen`` (this function adds the page's). Raises IncompletePage when a full page cannot
    move the bound at all."""
    fresh = [order for order in page if order.id not in seen]
    seen.update(order.id for order in page)
    if len(page) < query.limit:
        return None
    boundary = page[-1].submitted_at
    if not fresh or all(order.submitted_at == boundary for order in page):
        raise IncompletePage(f"more than {query.limit} orders share the submission time {iso(boundary)}")
    if query.direction == "asc":
        return dataclasses.replace(query, after=boundary - _OVERLAP)
    return dataclasses.replace(query, until=boundary + _OVERLAP)

