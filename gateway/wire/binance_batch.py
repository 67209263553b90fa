"""Binance USDⓈ-M ``batchOrders`` and order amend (``PUT /fapi/v1/order``), parsed.

- ``POST /fapi/v1/batchOrders``: ``batchOrders`` is a JSON list of at most 5 orders, each with the
  parameters of ``POST /fapi/v1/order`` (values as strings, or JSON numbers and booleans, which
  clients also send). Each order is parsed on its own: one malformed order is that order's error
  in the answer, the others go on (Binance answers per order).
- ``PUT /fapi/v1/order``: Binance modifies LIMIT orders only, giving symbol, side, quantity and
  price (the side must be the order's). The gateway judges it as a replace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from ..errors import InvalidRequest
from ..model import Order, OrderReplace, OrderType
from ..numbers import MAX_PRICE, MAX_QTY, parse_decimal
from .binance import AUTH_PARAMS, refuse_unknown, require

MAX_BATCH = 5  # Binance's limit
MAX_BATCH_CHARS = 16_384
BATCH_PARAMS = AUTH_PARAMS | {"batchOrders"}
AMEND_PARAMS = AUTH_PARAMS | {"symbol", "side", "quantity", "price", "orderId", "origClientOrderId", "priceMatch"}


def parse_batch(params: Mapping[str, str]) -> list[dict[str, str]]:
    """The batch's orders as parameter maps (each parsed later, on its own)."""
    refuse_unknown(params, BATCH_PARAMS)
    raw = require(params, "batchOrders")
    if len(raw) > MAX_BATCH_CHARS:
        raise InvalidRequest("batchOrders is too long")
    try:
        orders = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest("batchOrders is not a JSON list of orders") from None
    if not isinstance(orders, list) or not orders:
        raise InvalidRequest("batchOrders must be a non-empty JSON list of orders")
    if len(orders) > MAX_BATCH:
        raise InvalidRequest(f"batchOrders holds at most {MAX_BATCH} orders")
    return [_order_params(order) for order in orders]


def _no_constant(name: str) -> None:
    raise ValueError(name)  # NaN, Infinity: never a number here


def _order_params(order: object) -> dict[str, str]:
    """One order's values as the strings a query string would carry; an order that is not an
    object of scalars becomes an empty map, refused when parsed (as that order's error)."""
    if not isinstance(order, dict):
        return {"_malformed": "not an object"}
    out: dict[str, str] = {}
    for key, value in order.items():
        if key in AUTH_PARAMS:
            out["_malformed"] = f"{key} belongs to the batch, not to an order"
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (str, int, Decimal)):
            out[key] = str(value)
        else:
            out["_malformed"] = f"{key} is not a scalar"
    return out


def parse_amend(params: Mapping[str, str], order: Order) -> OrderReplace:
    """A PUT on a LIMIT order: new quantity and price, same side."""
    refuse_unknown(params, AMEND_PARAMS)
    if order.type is not OrderType.LIMIT:
        raise InvalidRequest("only LIMIT orders can be modified")
    side = require(params, "side").strip().lower()
    if side != order.side.value:
        raise InvalidRequest("side must be the order's side")
    if params.get("priceMatch") not in (None, "", "NONE"):
        raise InvalidRequest("priceMatch is not supported")
    return OrderReplace(
        qty=parse_decimal(require(params, "quantity"), "quantity", maximum=MAX_QTY),
        limit_price=parse_decimal(require(params, "price"), "price", maximum=MAX_PRICE),
    )
