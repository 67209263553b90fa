"""Codec between Binance USDⓈ-M futures REST and the internal model, in both directions.

Used by the Binance futures dialect (requests in, responses out). Shapes follow what ccxt 4.5's
``binanceusdm`` sends and reads (``ccxt/binance.py``): its ``parse_order``, ``parse_market``,
``parse_balance_custom`` and ``parse_position_risk`` decide which fields matter.

Conventions of the wire:
- requests are flat string parameters (query string, or a form-encoded body); every number goes
  through ``gateway.numbers`` so NaN, infinities, negatives and absurd sizes are refused;
- responses carry quantities and prices as strings and times as integer milliseconds;
- symbols are ``BTCUSDT`` on the wire and ``BTC/USDT`` (crypto) inside; ``SymbolBook`` maps them;
- plain orders (MARKET, LIMIT) live at ``/fapi/v1/order``; conditional ones (stop-market, stop-limit,
  trailing stop) at ``/fapi/v1/algoOrder`` with their own field names (``algoId``, ``triggerPrice``).
  Internally both are one order; ``is_algo`` says which shape an order is rendered in.

Errors raised here are ``InvalidRequest`` (the dialect picks the Binance code by route) or
``BinanceError`` with an explicit code. Messages echo nothing from the request but names of
parameters (cut short) and values already validated against a fixed set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..errors import GatewayError, InvalidRequest
from ..model import (
    Account,
    AssetClass,
    Order,
    OrderIntent,
    OrderQuery,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    classify_symbol,
)
from ..numbers import MAX_PRICE, MAX_QTY, fmt, parse_decimal
from ..ports import TradingRules

# ---------------------------------------------------------------------------------------
# Error codes. ccxt maps a Binance error to an exception by its code, but under a custom host
# (every bot pointed at the gateway) only the codes in binance's top-level ``exceptions['exact']``
# count; the per-market tables apply to binance.com hosts only. Every code below is in that
# top-level table (checked against ccxt 4.5.90), so bots get the specific exception.

UNKNOWN = -1000  # OperationFailed: an unexpected error (500)
UPSTREAM_DOWN = -1001  # OperationFailed: the venue is unreachable; nothing was done (503)
UNAUTHORIZED = -1002  # AuthenticationError
TOO_MANY_REQUESTS = -1003  # RateLimitExceeded (429)
UPSTREAM_UNKNOWN = -1007  # RequestTimeout: "send status unknown; execution status unknown" (503)
BAD_ORDER = -1014  # InvalidOrder: malformed order input (Binance: unsupported order combination)
# AuthenticationError: a bad signature, and also a timestamp outside recvWindow. Binance uses
# -1021 for the latter, but ccxt maps -1021 to InvalidNonce (a NetworkError that bots retry); a
# stale or replayed signed request is an authentication failure, so it gets -1022 too.
BAD_SIGNATURE = -1022
TOO_MANY_PARAMETERS = -1101  # BadRequest
MANDATORY_PARAMETER = -1102  # BadRequest
BAD_SYMBOL = -1121  # BadSymbol
BAD_PARAMETER = -1130  # BadRequest: a malformed value outside an order
ORDER_REJECTED = -2010  # InvalidOrder: the policy or the venue refused the order
CANCEL_REJECTED = -2011  # OrderNotFound: cancel of an unknown or closed order
NO_SUCH_ORDER = -2013  # OrderNotFound
BAD_API_KEY = -2014  # AuthenticationError: missing or malformed X-MBX-APIKEY
REJECTED_API_KEY = -2015  # AuthenticationError: unknown, revoked or not allowed key (futures: never DDoS)
BAD_LEVERAGE = -4028  # BadRequest: leverage refused (Binance: "Leverage X is not valid")
INSUFFICIENT_MARGIN = -4050  # InsufficientFunds (Binance futures' own -2019 is unmapped off binance.com)
NOT_SUPPORTED = -5000  # unmapped (ExchangeError): an endpoint the gateway does not serve


class BinanceError(GatewayError):
    """An error with its Binance code and HTTP status chosen by the code that raised it."""

    kind = "binance"

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


# gateway error kind -> (HTTP status, Binance code). ``invalid`` is split by the dialect: on order
# routes it is BAD_ORDER (InvalidOrder), elsewhere BAD_PARAMETER (BadRequest).
CODES_BY_KIND: dict[str, tuple[int, int]] = {
    "invalid": (400, BAD_PARAMETER),
    "too_large": (413, TOO_MANY_PARAMETERS),
    "unauthorized": (401, REJECTED_API_KEY),
    "forbidden": (403, REJECTED_API_KEY),
    "not_found": (400, NO_SUCH_ORDER),
    "insufficient_funds": (400, INSUFFICIENT_MARGIN),
    "order_rejected": (400, ORDER_REJECTED),
    "risk_rejected": (400, ORDER_REJECTED),
    "halted": (403, ORDER_REJECTED),
    "rate_limited": (429, TOO_MANY_REQUESTS),
    "upstream_unavailable": (503, UPSTREAM_DOWN),
    "upstream_uncertain": (503, UPSTREAM_UNKNOWN),
}

# ---------------------------------------------------------------------------------------
# Symbols

# Quote assets tried, longest first, when a wire symbol is not in the venue's list.
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "USD", "BTC", "ETH")
_WIRE_SYMBOL = re.compile(r"^[A-Z0-9]{4,20}$")
MAX_SYMBOL_LENGTH = 20


def wire_symbol(symbol: str) -> str:
    """BTC/USDT -> BTCUSDT."""
    return symbol.replace("/", "")


class SymbolBook:
    """Wire symbols of the venue's crypto markets, both ways."""

    def __init__(self, markets: Iterable[TradingRules] = ()):
        self.markets: dict[str, TradingRules] = {}  # wire symbol -> rules
        for market in markets:
            symbol = market.asset.symbol
            if classify_symbol(symbol) is AssetClass.CRYPTO:
                self.markets[wire_symbol(symbol)] = market

    def resolve(self, raw: object, name: str = "symbol") -> str:
        """A wire symbol into the internal one; BinanceError(-1121) when it is not one."""
        if not isinstance(raw, str) or not raw:
            raise BinanceError(
                400, MANDATORY_PARAMETER, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        text = raw.strip().upper()
        if len(text) > MAX_SYMBOL_LENGTH or not _WIRE_SYMBOL.match(text):
            raise BinanceError(400, BAD_SYMBOL, "Invalid symbol.")
        market = self.markets.get(text)
        if market is not None:
            return market.asset.symbol
        for quote in QUOTE_ASSETS:  # a symbol the venue did not list: split by its quote asset
            if text.endswith(quote) and len(text) > len(quote) + 1:
                symbol = f"{text[: -len(quote)]}/{quote}"
                if classify_symbol(symbol) is AssetClass.CRYPTO:
                    return symbol
        raise BinanceError(400, BAD_SYMBOL, "Invalid symbol.")


# ---------------------------------------------------------------------------------------
# Small helpers


def ms(moment: datetime | None) -> int:
    """Integer milliseconds since the epoch (0 for none); naive datetimes are taken as UTC."""
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def wire_id(order_id: str) -> int | str:
    """Binance order ids are integers; an upstream's numeric id goes out as one, any other (the
    paper venue's UUIDs) as the string it is. ccxt reads both."""
    return int(order_id) if order_id.isdigit() and len(order_id) <= 18 else order_id


def _zero(value: Decimal | None) -> str:
    return fmt(value) if value is not None else "0"


def decimals(step: Decimal | None) -> int:
    """Places of a tick or step size: 0.001 -> 3."""
    if step is None:
        return 8
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 8


def refuse_unknown(params: Mapping[str, str], allowed: frozenset[str]) -> None:
    unknown = sorted(name for name in params if name not in allowed)
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0][:64]}")


def require(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise BinanceError(
            400, MANDATORY_PARAMETER, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidRequest(f"{name} must be true or false")
    return lowered == "true"


def parse_int(value: str | None, name: str, *, low: int, high: int, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    text = value.strip()
    if not text.isdigit() or len(text) > 16:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    number = int(text)
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return number


def _choice(params: Mapping[str, str], name: str, allowed: Iterable[str], default: str | None = None) -> str:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            require(params, name)
        return default  # type: ignore[return-value]
    choices = tuple(allowed)
    upper = value.strip().upper()
    if upper not in choices:
        raise InvalidRequest(f"{name} must be one of: {', '.join(choices)}")
    return upper


# Binance's own pattern for client order ids.
_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def parse_client_id(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not _CLIENT_ID.match(value):
        raise InvalidRequest(f"{name} must match ^[.A-Z:/a-z0-9_-]{{1,36}}$")
    return value


def parse_order_id(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 64 or not value.isprintable() or not value.strip():
        raise BinanceError(400, NO_SUCH_ORDER, "Order does not exist.")
    return value.strip()


# ---------------------------------------------------------------------------------------
# Orders in

# Parameters of a signed request the dialect consumes itself.
AUTH_PARAMS = frozenset({"timestamp", "recvWindow", "signature"})

# Accepted and ignored: they change nothing the paper venue or the gateway models. workingType
# (which price triggers a stop: the paper venue has one price), priceProtect, the response type
# (the answer is always RESULT, a superset of ACK) and self-trade prevention (one account).
_IGNORED = {
    "workingType": ("MARK_PRICE", "CONTRACT_PRICE"),
    "newOrderRespType": ("ACK", "RESULT"),
    "selfTradePreventionMode": ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"),
}
_COMMON_ORDER = (
    frozenset(
        {
            "symbol",
            "side",
            "positionSide",
            "type",
            "timeInForce",
            "quantity",
            "price",
            "reduceOnly",
            "closePosition",
            "priceProtect",
            "priceMatch",
            "goodTillDate",
            *_IGNORED,
        }
    )
    | AUTH_PARAMS
)
ORDER_PARAMS = _COMMON_ORDER | {"newClientOrderId", "stopPrice", "activationPrice", "callbackRate"}
ALGO_ORDER_PARAMS = _COMMON_ORDER | {"algoType", "clientAlgoId", "triggerPrice", "activatePrice", "callbackRate"}

PLAIN_TYPES = ("MARKET", "LIMIT")
ALGO_TYPES = ("STOP_MARKET", "STOP", "TAKE_PROFIT_MARKET", "TAKE_PROFIT", "TRAILING_STOP_MARKET")
CLOSE_POSITION_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")  # Binance: closePosition only with these
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
MAX_CALLBACK_RATE = Decimal(10)  # Binance: 0.1 to 10 percent


def parse_order(params: Mapping[str, str], book: SymbolBook) -> OrderIntent:
    """POST /fapi/v1/order: MARKET and LIMIT only; conditional types belong to algoOrder."""
    refuse_unknown(params, ORDER_PARAMS)
    kind = params.get("type", "").strip().upper()
    if kind in ALGO_TYPES or kind.startswith("TAKE_PROFIT"):
        raise InvalidRequest(f"order type {kind} is not supported on this endpoint; use POST /fapi/v1/algoOrder")
    kind = _choice(params, "type", PLAIN_TYPES)
    for name in ("stopPrice", "activationPrice", "callbackRate"):
        if params.get(name):
            raise InvalidRequest(f"{name} is not allowed for {kind} orders")
    return _intent(
        params, book, kind, client_order_id=parse_client_id(params.get("newClientOrderId"), "newClientOrderId")
    )


def parse_algo_order(params: Mapping[str, str], book: SymbolBook) -> OrderIntent:
    """POST /fapi/v1/algoOrder (algoType CONDITIONAL): stop-market, stop-limit, take-profit
    (market and limit), trailing stop (with its activatePrice). A ``closePosition`` order comes
    back without a quantity: the caller sets it to the position."""
    refuse_unknown(params, ALGO_ORDER_PARAMS)
    _choice(params, "algoType", ("CONDITIONAL",))
    kind = _choice(params, "type", ALGO_TYPES)
    return _intent(params, book, kind, client_order_id=parse_client_id(params.get("clientAlgoId"), "clientAlgoId"))


def _intent(params: Mapping[str, str], book: SymbolBook, kind: str, client_order_id: str | None) -> OrderIntent:
    symbol = book.resolve(params.get("symbol"))
    side = Side(_choice(params, "side", ("BUY", "SELL")).lower())
    if _choice(params, "positionSide", ("BOTH", "LONG", "SHORT"), default="BOTH") != "BOTH":
        raise InvalidRequest("hedge mode (positionSide LONG/SHORT) is not supported; use positionSide BOTH")
    close_position = parse_bool(params.get("closePosition"), "closePosition")
    if close_position:
        if kind not in CLOSE_POSITION_TYPES:
            raise InvalidRequest(f"closePosition is not allowed for {kind} orders")
        _forbid(params, "closePosition orders", "quantity", "reduceOnly")
    parse_bool(params.get("priceProtect"), "priceProtect")
    if _choice(params, "priceMatch", ("NONE",), default="NONE") != "NONE":
        raise InvalidRequest("priceMatch is not supported")
    if params.get("goodTillDate") not in (None, "", "0"):
        raise InvalidRequest("goodTillDate (GTD) is not supported")
    for name, allowed in _IGNORED.items():
        _choice(params, name, allowed, default=allowed[0])
    tif_raw = params.get("timeInForce", "").strip().upper()
    if tif_raw == "GTD":
        raise InvalidRequest("timeInForce GTD is not supported by the gateway; use GTC, IOC, FOK or GTX")
    post_only = tif_raw == "GTX"  # Good Till Crossing: Binance's post-only
    if post_only and kind != "LIMIT":
        raise InvalidRequest(f"timeInForce GTX is not allowed for {kind} orders")
    tif = TimeInForce.GTC if post_only else _TIFS[_choice(params, "timeInForce", tuple(_TIFS), default="GTC")]
    qty = None if close_position else parse_decimal(require(params, "quantity"), "quantity", maximum=MAX_QTY)
    reduce_only = close_position or parse_bool(params.get("reduceOnly"), "reduceOnly")
    fields: dict[str, Any] = {"profit_trigger": kind.startswith("TAKE_PROFIT"), "close_position": close_position}
    if kind != "TRAILING_STOP_MARKET":
        _forbid(params, kind, "activatePrice", "activationPrice")
    if kind == "MARKET":
        order_type = OrderType.MARKET
        _forbid(params, kind, "price")
    elif kind == "LIMIT":
        order_type = OrderType.LIMIT
        fields["limit_price"] = parse_decimal(require(params, "price"), "price", maximum=MAX_PRICE)
    elif kind in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
        order_type = OrderType.STOP
        _forbid(params, kind, "price", "callbackRate")
        fields["stop_price"] = parse_decimal(require(params, "triggerPrice"), "triggerPrice", maximum=MAX_PRICE)
    elif kind in ("STOP", "TAKE_PROFIT"):
        order_type = OrderType.STOP_LIMIT
        _forbid(params, kind, "callbackRate")
        fields["stop_price"] = parse_decimal(require(params, "triggerPrice"), "triggerPrice", maximum=MAX_PRICE)
        fields["limit_price"] = parse_decimal(require(params, "price"), "price", maximum=MAX_PRICE)
    else:  # TRAILING_STOP_MARKET
        order_type = OrderType.TRAILING_STOP
        _forbid(params, kind, "price", "triggerPrice")
        fields["trail_percent"] = parse_decimal(
            require(params, "callbackRate"), "callbackRate", maximum=MAX_CALLBACK_RATE
        )
        activation = params.get("activatePrice") or params.get("activationPrice")
        if activation:
            fields["activation_price"] = parse_decimal(activation, "activatePrice", maximum=MAX_PRICE)
    if order_type is not OrderType.LIMIT and tif is not TimeInForce.GTC and order_type is not OrderType.MARKET:
        raise InvalidRequest(f"timeInForce {tif.value.upper()} is not allowed for {kind} orders")
    return OrderIntent(
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        side=side,
        type=order_type,
        time_in_force=tif,
        qty=qty,
        client_order_id=client_order_id,
        reduce_only=reduce_only,
        post_only=post_only,
        **fields,
    )


def _forbid(params: Mapping[str, str], kind: str, *names: str) -> None:
    for name in names:
        if params.get(name):
            raise InvalidRequest(f"{name} is not allowed for {kind} orders")


def parse_leverage(params: Mapping[str, str]) -> int:
    value = require(params, "leverage")
    text = value.strip()
    if not text.isdigit() or len(text) > 4 or not 1 <= int(text) <= 125:
        raise BinanceError(400, BAD_LEVERAGE, "Leverage must be a whole number from 1 to 125.")
    return int(text)


def parse_margin_type(params: Mapping[str, str]) -> str:
    value = _choice(params, "marginType", ("ISOLATED", "CROSSED", "CROSS"))
    return "isolated" if value == "ISOLATED" else "cross"


MAX_LIST_LIMIT = 1000  # Binance's cap on allOrders
INTERNAL_LIST_LIMIT = 500  # OrderQuery's


def parse_history_query(params: Mapping[str, str], symbol: str | None) -> OrderQuery:
    """allOrders / allAlgoOrders: newest ``limit`` orders in [startTime, endTime]."""
    if params.get("orderId") or params.get("algoId"):
        raise InvalidRequest("paging by orderId is not supported; use startTime and endTime")
    limit = parse_int(params.get("limit"), "limit", low=1, high=MAX_LIST_LIMIT, default=500) or 500
    start = parse_int(params.get("startTime"), "startTime", low=0, high=2**53)
    end = parse_int(params.get("endTime"), "endTime", low=0, high=2**53)
    return OrderQuery(
        status="all",
        limit=min(limit, INTERNAL_LIST_LIMIT),
        # The internal bounds are exclusive; Binance's are inclusive.
        after=from_ms(start - 1) if start else None,
        until=from_ms(end + 1) if end is not None else None,
        direction="desc",
        symbols=(symbol,) if symbol else (),
    )


# ---------------------------------------------------------------------------------------
# Orders out

_STATUS = {
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REPLACED: "CANCELED",  # a replace cancels the old order
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.REJECTED: "REJECTED",
}
_ALGO_STATUS = {
    OrderStatus.FILLED: "FINISHED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REPLACED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.REJECTED: "REJECTED",
}
_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP",
    OrderType.TRAILING_STOP: "TRAILING_STOP_MARKET",
}


_PROFIT_TYPES = {OrderType.STOP: "TAKE_PROFIT_MARKET", OrderType.STOP_LIMIT: "TAKE_PROFIT"}


def wire_type(order: Order) -> str:
    if order.profit_trigger and order.type in _PROFIT_TYPES:
        return _PROFIT_TYPES[order.type]
    return _TYPES[order.type]


def is_algo(order: Order) -> bool:
    """Conditional orders are rendered (and listed) as Binance algo orders."""
    return order.type in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)


def is_binance_order(order: Order) -> bool:
    """Orders this dialect can show: crypto ones (the account may hold others, placed elsewhere)."""
    return order.asset_class is AssetClass.CRYPTO


def _tif(order: Order) -> str:
    if order.post_only:
        return "GTX"
    return order.time_in_force.value.upper() if order.time_in_force in _TIFS.values() else "GTC"


def _size(order: Order) -> Decimal:
    # A notional order (placed through another dialect) has no quantity until it fills.
    return order.qty if order.qty is not None else order.filled_qty


def order_to_wire(order: Order) -> dict[str, Any]:
    """A plain order (GET/POST/DELETE /fapi/v1/order). Conditional orders are rendered the algo
    way (``algo_order_to_wire``) wherever they appear."""
    if is_algo(order):
        return algo_order_to_wire(order)
    filled = order.filled_qty or Decimal(0)
    average = order.filled_avg_price
    kind = wire_type(order)
    return _noted(
        order,
        {
            "orderId": wire_id(order.id),
            "symbol": wire_symbol(order.symbol),
            "status": _STATUS.get(order.status, "NEW"),
            "clientOrderId": order.client_order_id,
            "price": _zero(order.limit_price),
            "avgPrice": _zero(average),
            "origQty": _zero(_size(order)),
            "executedQty": _zero(filled),
            "cumQty": _zero(filled),
            "cumQuote": _zero(filled * average if average is not None else None),
            "timeInForce": _tif(order),
            "type": kind,
            "reduceOnly": False,
            "closePosition": False,
            "side": order.side.value.upper(),
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": kind,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "time": ms(order.created_at),
            "updateTime": ms(order.updated_at),
        },
    )


def _noted(order: Order, body: dict[str, Any]) -> dict[str, Any]:
    # Not a Binance field: what the gateway changed (a clamp, an attached stop). ccxt keeps it in
    # the order's ``info``; a human reading the answer sees it.
    if order.gateway_note:
        body["gatewayNote"] = order.gateway_note
    return body


def algo_order_to_wire(order: Order) -> dict[str, Any]:
    """A conditional order the way /fapi/v1/algoOrder answers. Internally a triggered stop is the
    same order, filled; Binance would show a separate plain order (``actualOrderId``), so the fill
    is carried here too (``executedQty``, ``avgPrice``), which ccxt reads."""
    filled = order.filled_qty or Decimal(0)
    body: dict[str, Any] = {
        "algoId": wire_id(order.id),
        "clientAlgoId": order.client_order_id,
        "algoType": "CONDITIONAL",
        "orderType": wire_type(order),
        "symbol": wire_symbol(order.symbol),
        "side": order.side.value.upper(),
        "positionSide": "BOTH",
        "timeInForce": _tif(order),
        "quantity": _zero(_size(order)),
        "algoStatus": _ALGO_STATUS.get(order.status, "NEW"),
        "triggerPrice": _zero(order.stop_price),
        "price": _zero(order.limit_price),
        "icebergQuantity": None,
        "selfTradePreventionMode": "NONE",
        "workingType": "CONTRACT_PRICE",
        "priceMatch": "NONE",
        "closePosition": order.close_position,
        "priceProtect": False,
        "reduceOnly": False,
        "createTime": ms(order.created_at),
        "updateTime": ms(order.updated_at),
        "triggerTime": ms(order.filled_at) if order.status is OrderStatus.FILLED else 0,
        "goodTillDate": 0,
        "executedQty": _zero(filled),
        "avgPrice": _zero(order.filled_avg_price),
        "actualOrderId": wire_id(order.id) if order.status is OrderStatus.FILLED else "",
    }
    if order.type is OrderType.TRAILING_STOP:
        body["callbackRate"] = _zero(order.trail_percent)
        if order.activation_price is not None:
            body["activatePrice"] = _zero(order.activation_price)
    return _noted(order, body)


def algo_cancel_to_wire(order: Order) -> dict[str, Any]:
    return {"algoId": wire_id(order.id), "clientAlgoId": order.client_order_id, "code": "200", "msg": "success"}


# ---------------------------------------------------------------------------------------
# Account and positions out

# Maintenance margin ratio advertised in leverageBracket and used for maintMargin, so the two
# agree; the paper venue liquidates nothing, so it is informational.
MAINT_MARGIN_RATIO = Decimal("0.004")
MAX_NOTIONAL_VALUE = "1000000000"


def margin_asset(account: Account) -> str:
    return account.currency or "USDT"


def account_totals(account: Account) -> dict[str, str]:
    """The totals Binance reports for a futures account, from the internal account.

    wallet = cash (on a futures account: before unrealised P&L); margin balance = equity;
    available = the venue's buying power (for a futures venue, its available margin)."""
    unrealized = account.equity - account.cash
    available = max(account.buying_power, Decimal(0))
    return {
        "totalInitialMargin": _zero(account.initial_margin),
        "totalMaintMargin": _zero(account.maintenance_margin),
        "totalWalletBalance": _zero(account.cash),
        "totalUnrealizedProfit": _zero(unrealized),
        "totalMarginBalance": _zero(account.equity),
        "totalPositionInitialMargin": _zero(account.initial_margin),
        "totalOpenOrderInitialMargin": "0",
        "totalCrossWalletBalance": _zero(account.cash),
        "totalCrossUnPnl": _zero(unrealized),
        "availableBalance": _zero(available),
        "maxWithdrawAmount": _zero(available),
    }


def account_to_wire(account: Account, positions: list[dict[str, Any]], now_ms: int, version: int) -> dict[str, Any]:
    """GET /fapi/v2/account and /fapi/v3/account. ccxt's fetch_balance reads ``assets`` and skips
    an asset whose ``updateTime`` is 0, so it is always the time of the answer."""
    totals = account_totals(account)
    asset = {
        "asset": margin_asset(account),
        "walletBalance": totals["totalWalletBalance"],
        "unrealizedProfit": totals["totalUnrealizedProfit"],
        "marginBalance": totals["totalMarginBalance"],
        "maintMargin": totals["totalMaintMargin"],
        "initialMargin": totals["totalInitialMargin"],
        "positionInitialMargin": totals["totalPositionInitialMargin"],
        "openOrderInitialMargin": "0",
        "crossWalletBalance": totals["totalWalletBalance"],
        "crossUnPnl": totals["totalUnrealizedProfit"],
        "availableBalance": totals["availableBalance"],
        "maxWithdrawAmount": totals["maxWithdrawAmount"],
        "marginAvailable": True,
        "updateTime": now_ms,
    }
    body: dict[str, Any] = {**totals, "assets": [asset], "positions": positions}
    if version == 2:
        body.update(
            feeTier=0,
            canTrade=account.status == "ACTIVE",
            canDeposit=True,
            canWithdraw=True,
            updateTime=now_ms,
            multiAssetsMargin=False,
            tradeGroupId=-1,
        )
    return body


def balance_to_wire(account: Account, now_ms: int) -> list[dict[str, Any]]:
    """GET /fapi/v2/balance and /fapi/v3/balance."""
    totals = account_totals(account)
    return [
        {
            "accountAlias": "gateway",
            "asset": margin_asset(account),
            "balance": totals["totalWalletBalance"],
            "crossWalletBalance": totals["totalWalletBalance"],
            "crossUnPnl": totals["totalUnrealizedProfit"],
            "availableBalance": totals["availableBalance"],
            "maxWithdrawAmount": totals["maxWithdrawAmount"],
            "marginAvailable": True,
            "updateTime": now_ms,
        }
    ]


def position_to_wire(position: Position, leverage: int, margin_mode: str, now_ms: int) -> dict[str, Any]:
    """One entry of positionRisk (v2 and v3 fields together; ccxt reads either). ``marginType``
    is given, so ccxt does not have to guess the mode from ``isolatedMargin``."""
    notional = position.market_value
    initial = abs(notional) / leverage if leverage else abs(notional)
    isolated = margin_mode == "isolated"
    return {
        "symbol": wire_symbol(position.symbol),
        "positionSide": "BOTH",
        "positionAmt": _zero(position.qty),
        "entryPrice": _zero(position.avg_entry_price),
        "breakEvenPrice": _zero(position.avg_entry_price),
        "markPrice": _zero(position.current_price),
        "unRealizedProfit": _zero(position.unrealized_pl),
        "liquidationPrice": "0",
        "leverage": str(leverage),
        "maxNotionalValue": MAX_NOTIONAL_VALUE,
        "marginType": "isolated" if isolated else "cross",
        "isAutoAddMargin": "false",
        "isolatedMargin": _zero(initial if isolated else Decimal(0)),
        "isolatedWallet": _zero(initial if isolated else Decimal(0)),
        "notional": _zero(notional),
        "marginAsset": _base_quote(position.symbol)[1],
        "initialMargin": _zero(initial),
        "maintMargin": _zero(abs(notional) * MAINT_MARGIN_RATIO),
        "positionInitialMargin": _zero(initial),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": now_ms,
    }


def account_position_to_wire(entry: dict[str, Any]) -> dict[str, Any]:
    """The short form of a position inside /fapi/v3/account."""
    keys = (
        "symbol",
        "positionSide",
        "positionAmt",
        "unRealizedProfit",
        "isolatedMargin",
        "notional",
        "isolatedWallet",
        "initialMargin",
        "maintMargin",
        "updateTime",
        "leverage",
        "entryPrice",
    )
    out = {key: entry[key] for key in keys}
    out["unrealizedProfit"] = out.pop("unRealizedProfit")
    return out


def symbol_config_to_wire(symbol: str, leverage: int, margin_mode: str) -> dict[str, Any]:
    """GET /fapi/v1/symbolConfig (ccxt's fetch_leverage and fetch_margin_mode)."""
    return {
        "symbol": wire_symbol(symbol),
        "marginType": "ISOLATED" if margin_mode == "isolated" else "CROSSED",
        "isAutoAddMargin": "false",
        "leverage": leverage,
        "maxNotionalValue": MAX_NOTIONAL_VALUE,
    }


# ---------------------------------------------------------------------------------------
# Markets out

DEFAULT_MAX_LEVERAGE = 125
ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"]
TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX"]
PERPETUAL_DELIVERY = 4133404800000  # Binance's delivery date for perpetuals (2100-12-25)


def _base_quote(symbol: str) -> tuple[str, str]:
    base, quote = symbol.split("/")
    return base, quote


def market_to_wire(market: TradingRules) -> dict[str, Any]:
    """One exchangeInfo symbol. ccxt refuses to create an order whose type is not in
    ``orderTypes`` and takes precision and limits from ``filters``."""
    base, quote = _base_quote(market.asset.symbol)
    tick = market.tick_size or Decimal("0.00000001")
    step = market.step_size or Decimal("0.00000001")
    max_qty = market.max_qty or MAX_QTY
    filters: list[dict[str, Any]] = [
        {"filterType": "PRICE_FILTER", "minPrice": fmt(tick), "maxPrice": fmt(MAX_PRICE), "tickSize": fmt(tick)},
        {
            "filterType": "LOT_SIZE",
            "minQty": fmt(market.min_qty or step),
            "maxQty": fmt(max_qty),
            "stepSize": fmt(step),
        },
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": fmt(market.min_qty or step),
            "maxQty": fmt(max_qty),
            "stepSize": fmt(step),
        },
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
    ]
    if market.min_notional is not None:
        filters.append({"filterType": "MIN_NOTIONAL", "notional": fmt(market.min_notional)})
    return {
        "symbol": wire_symbol(market.asset.symbol),
        "pair": wire_symbol(market.asset.symbol),
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY,
        "onboardDate": 1569398400000,
        "status": "TRADING" if market.asset.tradable else "BREAK",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": decimals(tick),
        "quantityPrecision": decimals(step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": filters,
        "orderTypes": ORDER_TYPES,
        "timeInForce": TIME_IN_FORCE,
    }


def exchange_info_to_wire(markets: Iterable[TradingRules], now_ms: int) -> dict[str, Any]:
    symbols = [market_to_wire(m) for m in markets]
    quotes = sorted({s["marginAsset"] for s in symbols})
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": q, "marginAvailable": True, "autoAssetExchange": "-10000"} for q in quotes],
        "symbols": symbols,
    }


def leverage_bracket_to_wire(symbol: str, max_leverage: int) -> dict[str, Any]:
    """One bracket per symbol whose ``initialLeverage`` is the highest leverage the caller may
    set: a bot that picks "the maximum available leverage" picks the policy's ceiling."""
    return {
        "symbol": wire_symbol(symbol),
        "notionalCoef": 1.0,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": max_leverage,
                "notionalCap": int(MAX_NOTIONAL_VALUE),
                "notionalFloor": 0,
                "maintMarginRatio": float(MAINT_MARGIN_RATIO),
                "cum": 0.0,
            }
        ],
    }


def ticker_to_wire(symbol: str, price: Decimal, now_ms: int) -> dict[str, Any]:
    """GET /fapi/v1/ticker/24hr. The venue gives one reference price, so the day's statistics are
    that price and no volume."""
    p = fmt(price)
    return {
        "symbol": wire_symbol(symbol),
        "priceChange": "0",
        "priceChangePercent": "0",
        "weightedAvgPrice": p,
        "lastPrice": p,
        "lastQty": "0",
        "openPrice": p,
        "highPrice": p,
        "lowPrice": p,
        "volume": "0",
        "quoteVolume": "0",
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 0,
        "lastId": 0,
        "count": 0,
    }


def price_to_wire(symbol: str, price: Decimal, now_ms: int) -> dict[str, Any]:
    return {"symbol": wire_symbol(symbol), "price": fmt(price), "time": now_ms}


def coins_to_wire(markets: Iterable[TradingRules]) -> list[dict[str, Any]]:
    """GET /sapi/v1/capital/config/getall, which ccxt's load_markets calls when keys are set: every
    asset of the markets, with no deposit or withdrawal (the gateway moves no funds)."""
    assets = sorted({part for m in markets for part in _base_quote(m.asset.symbol)})
    return [
        {
            "coin": asset,
            "name": asset,
            "depositAllEnable": False,
            "withdrawAllEnable": False,
            "free": "0",
            "locked": "0",
            "freeze": "0",
            "withdrawing": "0",
            "ipoing": "0",
            "ipoable": "0",
            "storage": "0",
            "isLegalMoney": False,
            "trading": True,
            "networkList": [],
        }
        for asset in assets
    ]
