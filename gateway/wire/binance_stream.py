"""Codec of Binance USDⓈ-M futures' user data stream, in both directions.

Served by ``gateway.dialects.binance_user_stream`` (the paper broker; later the gateway to its
bots) and read by ``gateway.venues.ccxt.user_stream`` (the gateway listening to Binance). Field
names are Binance's ("User Data Streams": Event Order Update, Event Algo Order Update, Event
Balance and Position Update) as ccxt.pro's ``binanceusdm`` reads them:

- ``ORDER_TRADE_UPDATE``: a plain order's change; ``x`` is the execution type (NEW, TRADE,
  CANCELED, EXPIRED, AMENDMENT, CALCULATED) and ``X`` the order status; a TRADE carries its
  execution (``l`` qty, ``L`` price, ``t`` trade id).
- ``ALGO_UPDATE``: a conditional order (``/fapi/v1/algoOrder``): ``aid``/``caid`` are its ids,
  ``X`` its algo status (NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED) and
  ``ai`` the order it placed once triggered. When a conditional order fires, Binance sends
  ALGO_UPDATE TRIGGERED (``ai`` set), then ORDER_TRADE_UPDATEs of the order it placed (id
  ``ai``), then ALGO_UPDATE FINISHED. The paper venue's triggered stop *is* its own order, so
  there ``ai`` equals ``aid``; a reader maps ``ai`` back to the algo order either way.
- ``ACCOUNT_UPDATE``: balances (``B``) and positions (``P``) after a change.
- ``listenKeyExpired``: the key expired; the socket is closed after it.

Differences from Binance a reader should know: a replace (the paper venue's cancel-and-new) is
CANCELED for the old order and NEW for its successor; a bracket leg released by its parent's fill
is NEW (Binance has no legs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..errors import InvalidRequest
from ..model import (
    Account,
    AssetClass,
    Order,
    OrderEventType,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
    VenueEvent,
    utcnow,
)
from ..numbers import MAX_PRICE, MAX_QTY, fmt, parse_decimal
from .binance import from_ms, is_algo, ms, wire_id, wire_symbol, wire_type

ORDER_TRADE_UPDATE = "ORDER_TRADE_UPDATE"
ALGO_UPDATE = "ALGO_UPDATE"
ACCOUNT_UPDATE = "ACCOUNT_UPDATE"
LISTEN_KEY_EXPIRED = "listenKeyExpired"

_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP",
    OrderType.TRAILING_STOP: "TRAILING_STOP_MARKET",
}
_TYPES_BY_NAME = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP_MARKET": OrderType.STOP,
    "TAKE_PROFIT_MARKET": OrderType.STOP,  # a trigger order; the model has one trigger direction
    "STOP": OrderType.STOP_LIMIT,
    "TAKE_PROFIT": OrderType.STOP_LIMIT,
    "TRAILING_STOP_MARKET": OrderType.TRAILING_STOP,
    "LIQUIDATION": OrderType.MARKET,
}
_STATUS = {
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REPLACED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.REJECTED: "REJECTED",
}
_STATUS_BY_NAME = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
_ALGO_STATUS_BY_NAME = {
    "NEW": OrderStatus.NEW,
    "TRIGGERING": OrderStatus.NEW,
    "TRIGGERED": OrderStatus.NEW,
    "FINISHED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
# Execution type (x) -> event; TRADE is fill or partial fill by the order status.
_EXECUTIONS = {"NEW": OrderEventType.NEW, "CANCELED": OrderEventType.CANCELED, "EXPIRED": OrderEventType.EXPIRED,
               "AMENDMENT": OrderEventType.NEW}  # an in-place change: the order as it now stands
_ALGO_EVENTS = {
    "NEW": OrderEventType.NEW,
    "CANCELED": OrderEventType.CANCELED,
    "EXPIRED": OrderEventType.EXPIRED,
    "REJECTED": OrderEventType.REJECTED,
    "TRIGGERED": OrderEventType.TRIGGERED,
}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}

SymbolResolver = Callable[[str], str | None]  # wire symbol (BTCUSDT) -> internal (BTC/USDT), None: not traded


def _zero(value: Decimal | None) -> str:
    return fmt(value) if value is not None else "0"


def _tif(order: Order) -> str:
    if order.post_only:
        return "GTX"
    return order.time_in_force.value.upper() if order.time_in_force in _TIFS.values() else "GTC"


# ---------------------------------------------------------------------------------------
# Server -> client


def order_event_to_wire(update: OrderUpdate, now_ms: int) -> list[dict[str, Any]]:
    """The messages one order event becomes (none for events Binance does not send)."""
    order = update.order
    if update.event in (OrderEventType.PENDING_NEW, OrderEventType.PENDING_CANCEL, OrderEventType.PENDING_REPLACE,
                        OrderEventType.ACCEPTED, OrderEventType.DONE_FOR_DAY):
        return []
    if not is_algo(order):
        return [_order_trade_update(update, now_ms)]
    if update.event in (OrderEventType.FILL, OrderEventType.PARTIAL_FILL):
        # Binance: the algo order triggers, the order it placed trades, the algo order finishes.
        messages = [_algo_update(order, "TRIGGERED", now_ms), _order_trade_update(update, now_ms)]
        if update.event is OrderEventType.FILL:
            messages.append(_algo_update(order, "FINISHED", now_ms))
        return messages
    if update.event is OrderEventType.TRIGGERED:
        return [_algo_update(order, "TRIGGERED", now_ms)]
    if update.event in (OrderEventType.CANCELED, OrderEventType.REPLACED):
        return [_algo_update(order, "CANCELED", now_ms)]
    if update.event in (OrderEventType.EXPIRED, OrderEventType.REJECTED):
        return [_algo_update(order, update.event.value.upper(), now_ms)]
    return [_algo_update(order, "NEW", now_ms)]


def _order_trade_update(update: OrderUpdate, now_ms: int) -> dict[str, Any]:
    order = update.order
    trade = update.event in (OrderEventType.FILL, OrderEventType.PARTIAL_FILL)
    if trade:
        execution, status = "TRADE", ("FILLED" if update.event is OrderEventType.FILL else "PARTIALLY_FILLED")
    elif update.event in (OrderEventType.CANCELED, OrderEventType.REPLACED):
        execution, status = "CANCELED", "CANCELED"
    elif update.event is OrderEventType.EXPIRED:
        execution, status = "EXPIRED", "EXPIRED"
    else:  # new, triggered (a released leg), rejected
        execution, status = "NEW", _STATUS.get(order.status, "NEW")
    kind = wire_type(order)
    filled = order.filled_qty or Decimal(0)
    size = order.qty if order.qty is not None else filled
    at = ms(update.at)
    body = {
        "s": wire_symbol(order.symbol),
        "c": order.client_order_id,
        "S": order.side.value.upper(),
        "o": "MARKET" if trade and is_algo(order) else kind,  # a fired stop trades as a market order
        "f": _tif(order),
        "q": _zero(size),
        "p": _zero(order.limit_price),
        "ap": _zero(order.filled_avg_price),
        "sp": _zero(order.stop_price),
        "x": execution,
        "X": status,
        "i": wire_id(order.id),
        "l": _zero(update.qty if trade else None),
        "z": _zero(filled),
        "L": _zero(update.price if trade else None),
        "N": "USDT",
        "n": "0",
        "T": at,
        "t": _trade_id(update) if trade else 0,
        "b": "0",
        "a": "0",
        "m": False,
        "R": False,
        "wt": "CONTRACT_PRICE",
        "ot": kind,
        "ps": "BOTH",
        "cp": order.close_position,
        "rp": "0",
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "NONE",
        "pm": "NONE",
        "gtd": 0,
    }
    if order.type is OrderType.TRAILING_STOP:
        body["cr"] = _zero(order.trail_percent)
    return {"e": ORDER_TRADE_UPDATE, "E": now_ms, "T": at, "o": body}


def _trade_id(update: OrderUpdate) -> int:
    # Binance trade ids are integers; the paper venue's execution ids are UUIDs.
    if update.execution_id and update.execution_id.isdigit():
        return int(update.execution_id)
    return int(update.execution_id.replace("-", "")[:15], 16) if update.execution_id else 0


def _algo_update(order: Order, status: str, now_ms: int) -> dict[str, Any]:
    fired = status in ("TRIGGERED", "FINISHED")
    return {
        "e": ALGO_UPDATE,
        "T": ms(order.updated_at),
        "E": now_ms,
        "o": {
            "caid": order.client_order_id,
            "aid": wire_id(order.id),
            "at": "CONDITIONAL",
            "o": wire_type(order),
            "s": wire_symbol(order.symbol),
            "S": order.side.value.upper(),
            "ps": "BOTH",
            "f": _tif(order),
            "q": _zero(order.qty if order.qty is not None else order.filled_qty),
            "X": status,
            "ai": str(wire_id(order.id)) if fired else "",
            "ap": _zero(order.filled_avg_price if fired else None),
            "aq": _zero(order.filled_qty if fired else None),
            "act": "MARKET" if fired and order.type is not OrderType.STOP_LIMIT else ("LIMIT" if fired else "0"),
            "tp": _zero(order.stop_price),
            "p": _zero(order.limit_price),
            "V": "NONE",
            "wt": "CONTRACT_PRICE",
            "pm": "NONE",
            "cp": order.close_position,
            "pP": False,
            "R": False,
            "tt": ms(order.updated_at) if fired else 0,
            "gtd": 0,
        },
    }


def account_update_to_wire(
    position: PositionUpdate,
    now_ms: int,
    *,
    account: Account | None = None,
    mark: Decimal | None = None,
    margin_mode: str = "cross",
) -> dict[str, Any]:
    """One position's change (and, when known, the wallet), reason ORDER."""
    unrealized = (mark - position.entry_price) * position.qty if mark is not None and position.qty else Decimal(0)
    balances = []
    if account is not None:
        wallet = _zero(account.cash)
        balances.append({"a": account.currency or "USDT", "wb": wallet, "cw": wallet, "bc": "0"})
    return {
        "e": ACCOUNT_UPDATE,
        "E": now_ms,
        "T": ms(position.at),
        "a": {
            "m": "ORDER",
            "B": balances,
            "P": [
                {
                    "s": wire_symbol(position.symbol),
                    "pa": _zero(position.qty),
                    "ep": _zero(position.entry_price),
                    "bep": _zero(position.entry_price),
                    "cr": "0",
                    "up": _zero(unrealized),
                    "mt": "isolated" if margin_mode == "isolated" else "cross",
                    "iw": "0",
                    "ps": "BOTH",
                    "ma": position.symbol.split("/")[-1],
                }
            ],
        },
    }


def listen_key_expired(listen_key: str, now_ms: int) -> dict[str, Any]:
    return {"e": LISTEN_KEY_EXPIRED, "E": now_ms, "listenKey": listen_key}


# ---------------------------------------------------------------------------------------
# Binance -> the gateway (the venue side)


def events_from_wire(message: object, resolve: SymbolResolver) -> list[VenueEvent]:
    """The model's events in one user-data message. Messages about symbols the venue does not
    trade, and message kinds the model has no event for, give none. InvalidRequest when a
    message the model does track cannot be read."""
    if not isinstance(message, Mapping):
        raise InvalidRequest("user data message must be an object")
    kind = message.get("e")
    if kind == ORDER_TRADE_UPDATE:
        update = _order_update_from_wire(message, resolve)
        return [update] if update is not None else []
    if kind == ALGO_UPDATE:
        update = _algo_update_from_wire(message, resolve)
        return [update] if update is not None else []
    if kind == ACCOUNT_UPDATE:
        return _positions_from_wire(message, resolve)
    return []


def _body(message: Mapping[str, Any]) -> Mapping[str, Any]:
    body = message.get("o")
    if not isinstance(body, Mapping):
        raise InvalidRequest("user data message has no order")
    return body


def _num(data: Mapping[str, Any], name: str, maximum: Decimal = MAX_PRICE) -> Decimal | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    number = parse_decimal(value, name, maximum=maximum, allow_zero=True)
    return number or None  # Binance writes "0" for an absent price


def _signed(data: Mapping[str, Any], name: str) -> Decimal:
    text = str(data.get(name) or "0").strip()
    negative = text.startswith("-")
    magnitude = parse_decimal(text[1:] if negative else text, name, maximum=MAX_QTY, allow_zero=True)
    return -magnitude if negative else magnitude


def _time(message: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    for value in (body.get("T"), message.get("T"), message.get("E")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return from_ms(value)
    return utcnow()


def _order(body: Mapping[str, Any], order_id: str, client_id: str, symbol: str, status: OrderStatus,
           kind: str, at: Any, *, stop: Decimal | None, filled: Decimal, average: Decimal | None) -> Order:
    order_type = _TYPES_BY_NAME.get(kind)
    if order_type is None:
        raise InvalidRequest("user data message has an unknown order type")
    side = str(body.get("S") or "").lower()
    if side not in ("buy", "sell"):
        raise InvalidRequest("user data message has no side")
    limit = _num(body, "p") if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    trail = _num(body, "cr", MAX_QTY) if order_type is OrderType.TRAILING_STOP else None
    return Order(
        id=order_id,
        client_order_id=client_id or order_id,
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        side=Side(side),
        type=order_type,
        time_in_force=_TIFS.get(str(body.get("f") or "").upper(), TimeInForce.GTC),
        status=status,
        created_at=at,
        updated_at=at,
        submitted_at=at,
        qty=_num(body, "q", MAX_QTY),
        filled_qty=filled,
        filled_avg_price=average if filled else None,
        limit_price=limit,
        stop_price=stop if order_type not in (OrderType.MARKET, OrderType.LIMIT) else None,
        trail_percent=trail,
        filled_at=at if status is OrderStatus.FILLED else None,
        canceled_at=at if status is OrderStatus.CANCELED else None,
        expired_at=at if status is OrderStatus.EXPIRED else None,
        profit_trigger=kind.startswith("TAKE_PROFIT"),
        close_position=body.get("cp") is True,
        post_only=str(body.get("f") or "").upper() == "GTX",
    )


def _order_update_from_wire(message: Mapping[str, Any], resolve: SymbolResolver) -> OrderUpdate | None:
    body = _body(message)
    symbol = resolve(str(body.get("s") or ""))
    if symbol is None:
        return None
    execution = str(body.get("x") or "")
    raw_status = str(body.get("X") or "")
    status = _STATUS_BY_NAME.get(raw_status)
    if status is None:
        raise InvalidRequest("user data message has an unknown order status")
    if execution == "TRADE":
        event = OrderEventType.FILL if status is OrderStatus.FILLED else OrderEventType.PARTIAL_FILL
    else:
        event = _EXECUTIONS.get(execution)
        if event is None:
            return None  # CALCULATED (liquidation bookkeeping): the liquidation order trades on its own
    at = _time(message, body)
    order_id = str(body.get("i") or "")
    if not order_id:
        raise InvalidRequest("user data message has no order id")
    filled = _num(body, "z", MAX_QTY) or Decimal(0)
    order = _order(body, order_id, str(body.get("c") or ""), symbol, status, str(body.get("ot") or body.get("o") or ""),
                   at, stop=_num(body, "sp"), filled=filled, average=_num(body, "ap"))
    trade = event in (OrderEventType.FILL, OrderEventType.PARTIAL_FILL)
    trade_id = body.get("t")
    return OrderUpdate(
        event=event,
        order=order,
        at=at,
        qty=_num(body, "l", MAX_QTY) if trade else None,
        price=_num(body, "L") if trade else None,
        execution_id=str(trade_id) if trade and trade_id not in (None, "", 0) else None,
    )


def _algo_update_from_wire(message: Mapping[str, Any], resolve: SymbolResolver) -> OrderUpdate | None:
    body = _body(message)
    symbol = resolve(str(body.get("s") or ""))
    if symbol is None:
        return None
    raw_status = str(body.get("X") or "")
    event = _ALGO_EVENTS.get(raw_status)
    status = _ALGO_STATUS_BY_NAME.get(raw_status)
    if status is None:
        raise InvalidRequest("user data message has an unknown algo status")
    if event is None:
        return None  # TRIGGERING, FINISHED: the order it placed reports the trades
    order_id = str(body.get("aid") or "")
    if not order_id:
        raise InvalidRequest("user data message has no algo id")
    at = _time(message, body)
    order = _order(body, order_id, str(body.get("caid") or ""), symbol, status, str(body.get("o") or ""), at,
                   stop=_num(body, "tp"), filled=Decimal(0), average=None)
    return OrderUpdate(event=event, order=order, at=at)


def triggered_order_id(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(order id placed, algo id) of an ALGO_UPDATE that fired, so a reader can attribute the
    placed order's trades to the algo order; None for any other message."""
    if message.get("e") != ALGO_UPDATE:
        return None
    body = message.get("o")
    if not isinstance(body, Mapping) or body.get("X") not in ("TRIGGERED", "FINISHED"):
        return None
    placed, algo = str(body.get("ai") or ""), str(body.get("aid") or "")
    return (placed, algo) if placed and algo else None


def _positions_from_wire(message: Mapping[str, Any], resolve: SymbolResolver) -> list[VenueEvent]:
    data = message.get("a")
    rows = data.get("P") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        return []
    at = _time(message, {})
    updates: list[VenueEvent] = []
    for row in rows:
        if not isinstance(row, Mapping) or str(row.get("ps") or "BOTH") != "BOTH":
            continue  # hedge-mode sides are not modelled
        symbol = resolve(str(row.get("s") or ""))
        if symbol is None:
            continue
        entry = _num(row, "ep") or Decimal(0)
        updates.append(PositionUpdate(symbol, AssetClass.CRYPTO, _signed(row, "pa"), entry, at))
    return updates

