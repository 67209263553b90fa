"""The ccxt venue's codec: exchange answers into the model (Decimal throughout) and intents into
ccxt's ``create_order`` arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ...errors import GatewayError
from ...model import (
    AssetClass,
    Order,
    OrderIntent,
    OrderQuery,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    utcnow,
)

_PRECISION = Decimal("0.000000000001")
TIFS = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}


class Garbage(Exception):
    """An exchange answer that does not fit the model."""


def num(value: Any) -> Decimal | None:
    """An exchange number into Decimal (None stays None). Floats go through repr; more than 12
    places are rounded (ccxt computes some fields in binary floating point)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Garbage("boolean where a number belongs")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise Garbage("not a number") from None
    if not number.is_finite():
        raise Garbage("not a finite number")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        number = number.quantize(_PRECISION, rounding=ROUND_HALF_EVEN)
    return number


def safe_num(value: Any) -> Decimal | None:
    try:
        return num(value)
    except Garbage:
        return None


def to_time(value: Any) -> datetime | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def native_order_type(raw: dict, info: dict) -> OrderType:
    native = str(info.get("orderType") or info.get("type") or "").upper()
    if "TRAILING" in native:
        return OrderType.TRAILING_STOP
    if native in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        return OrderType.STOP  # a trigger order; the internal model has one trigger direction
    if native in ("STOP", "TAKE_PROFIT"):
        return OrderType.STOP_LIMIT
    kind = raw.get("type")
    trigger = raw.get("triggerPrice") is not None
    if kind == "limit":
        return OrderType.STOP_LIMIT if trigger else OrderType.LIMIT
    return OrderType.STOP if trigger else OrderType.MARKET


def order_status(value: Any, filled: Decimal) -> OrderStatus:
    # An unknown or missing status counts as open: for risk it is safer to keep reserving for an
    # order than to forget one.
    if value == "closed":
        return OrderStatus.FILLED
    if value == "canceled":
        return OrderStatus.CANCELED
    if value == "expired":
        return OrderStatus.EXPIRED
    if value == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW


def time_in_force(value: Any) -> TimeInForce:
    return {"IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}.get(str(value).upper(), TimeInForce.GTC)


def order_args(intent: OrderIntent) -> tuple[str, Decimal | None, dict]:
    """ccxt's create_order type, price and params for an intent's entry."""
    params: dict[str, Any] = {}
    if intent.close_position:
        params["closePosition"] = True  # Binance refuses reduceOnly beside it; it implies it
    elif intent.reduce_only:
        params["reduceOnly"] = True
    # ccxt's unified names: takeProfitPrice makes a TAKE_PROFIT(_MARKET), triggerPrice a STOP(_MARKET).
    trigger = "takeProfitPrice" if intent.profit_trigger else "triggerPrice"
    if intent.type is OrderType.MARKET:
        return "market", None, params
    if intent.type is OrderType.LIMIT and intent.post_only:
        return "limit", intent.limit_price, {**params, "postOnly": True}  # ccxt sends GTX
    if intent.type is OrderType.LIMIT:
        return "limit", intent.limit_price, {**params, "timeInForce": TIFS[intent.time_in_force]}
    if intent.type is OrderType.STOP:
        return "market", None, {**params, trigger: intent.stop_price}
    if intent.type is OrderType.STOP_LIMIT:
        return "limit", intent.limit_price, {**params, trigger: intent.stop_price}
    if intent.activation_price is not None:
        params["activationPrice"] = intent.activation_price
    return "market", None, {**params, "trailingPercent": str(intent.trail_percent)}


CONDITIONAL_PARAMS = ("triggerPrice", "takeProfitPrice", "trailingPercent")


def is_conditional(params: dict) -> bool:
    """Whether create_order params make an algo (conditional) order, which has its own endpoints."""
    return any(name in params for name in CONDITIONAL_PARAMS)


def filter_orders(orders: list[Order], query: OrderQuery) -> list[Order]:
    def wanted(order: Order) -> bool:
        if query.status != "all" and order.status.is_open != (query.status == "open"):
            return False
        return (
            (query.after is None or order.submitted_at > query.after)
            and (query.until is None or order.submitted_at < query.until)
            and (not query.symbols or order.symbol in query.symbols)
            and (query.side is None or order.side == query.side)
        )

    unique = {o.id: o for o in orders if wanted(o)}
    ordered = sorted(unique.values(), key=lambda o: o.submitted_at, reverse=query.direction == "desc")
    return ordered[: query.limit]


def bulk_status(exc: GatewayError) -> int:
    return {"not_found": 404, "insufficient_funds": 403, "order_rejected": 422}.get(exc.kind, 500)


def to_order(
    raw: dict, internal: dict[str, str], conditional: bool | None, fallback_client_id: str | None
) -> tuple[Order, bool]:
    """An exchange order and whether it is conditional (algo); ``internal``: ccxt -> internal symbol."""
    info = raw.get("info") or {}
    order_id = raw.get("id")
    symbol = internal.get(raw.get("symbol"))
    if order_id is None or symbol is None:
        raise Garbage("order without id or known symbol")
    if conditional is None:
        conditional = "algoId" in info or raw.get("triggerPrice") is not None
    side = Side(raw.get("side") or "buy")
    order_type = native_order_type(raw, info)
    created = to_time(raw.get("timestamp")) or utcnow()
    updated = to_time(raw.get("lastUpdateTimestamp")) or created
    filled = num(raw.get("filled")) or Decimal(0)
    status = order_status(raw.get("status"), filled)
    trail = (
        num(info.get("callbackRate") or info.get("priceRate")) if order_type is OrderType.TRAILING_STOP else None
    )
    order = Order(
        id=str(order_id),
        client_order_id=raw.get("clientOrderId") or fallback_client_id or str(order_id),
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        side=side,
        type=order_type,
        time_in_force=time_in_force(raw.get("timeInForce")),
        status=status,
        created_at=created,
        updated_at=updated,
        submitted_at=created,
        qty=num(raw.get("amount")),
        filled_qty=filled,
        filled_avg_price=num(raw.get("average")) if filled else None,
        limit_price=num(raw.get("price")) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=num(raw.get("triggerPrice"))
        if order_type is not OrderType.LIMIT and order_type is not OrderType.MARKET
        else None,
        trail_percent=trail
        if trail is not None
        else (Decimal(1) if order_type is OrderType.TRAILING_STOP else None),
        filled_at=updated if status is OrderStatus.FILLED else None,
        canceled_at=updated if status is OrderStatus.CANCELED else None,
        post_only=raw.get("postOnly") is True or str(info.get("timeInForce", "")).upper() == "GTX",
        profit_trigger=str(info.get("orderType") or info.get("type") or "").upper().startswith("TAKE_PROFIT"),
        close_position=info.get("closePosition") in (True, "true"),
        activation_price=safe_num(info.get("activatePrice") or info.get("activationPrice"))
        if order_type is OrderType.TRAILING_STOP
        else None,
    )
    return order, bool(conditional)


def to_position(raw: dict, internal: dict[str, str]) -> Position | None:
    symbol = internal.get(raw.get("symbol"))
    contracts = num(raw.get("contracts"))
    if symbol is None or not contracts:
        return None
    size = contracts * (num(raw.get("contractSize")) or Decimal(1))
    entry = num(raw.get("entryPrice")) or Decimal(0)
    mark = num(raw.get("markPrice")) or entry
    return Position(
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        qty=-size if raw.get("side") == "short" else size,
        avg_entry_price=entry,
        current_price=mark,
    )
