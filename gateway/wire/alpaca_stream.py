"""Codec of Alpaca's trading stream (``/stream``: ``trade_updates``), in both directions.

Served by ``gateway.dialects.alpaca_stream`` (the paper broker, and the gateway to its bots) and
read by ``gateway.venues.alpaca_stream`` (the gateway listening to its upstream). The shapes are
Alpaca's (docs.alpaca.markets "Websocket Streaming") as alpaca-py 0.44's ``TradingStream`` sends
and reads them:

- the client authenticates first, either ``{"action": "auth", "key": K, "secret": S}`` or
  alpaca-py's ``{"action": "authenticate", "data": {"key_id": K, "secret_key": S}}``; the server
  answers ``{"stream": "authorization", "data": {"action": "authenticate", "status":
  "authorized"}}`` (or ``"unauthorized"``, then closes);
- ``{"action": "listen", "data": {"streams": ["trade_updates"]}}`` is answered ``{"stream":
  "listening", "data": {"streams": [...]}}`` naming the streams actually granted;
- each event is ``{"stream": "trade_updates", "data": {"event", "timestamp", "order", and for
  fills "execution_id", "qty", "price", "position_qty"}}``, the order exactly as the REST API
  renders it and every number a string.

Alpaca has no ``triggered`` event: a leg released by its parent's fill is announced ``new`` (its
status is ``new`` from then on), and a stop-limit whose stop was hit is ``new`` as well. So the
decoder reads ``new`` for an order already known as held as its release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..errors import InvalidRequest
from ..model import OrderEventType, OrderUpdate
from ..numbers import MAX_PRICE, MAX_QTY, fmt, parse_decimal
from . import alpaca as rest

TRADE_UPDATES = "trade_updates"
MAX_CREDENTIAL_LENGTH = 256

# Internal event -> the name Alpaca sends. TRIGGERED has no Alpaca name (see the module docs).
_EVENT_NAMES = {event: event.value for event in OrderEventType}
_EVENT_NAMES[OrderEventType.TRIGGERED] = OrderEventType.NEW.value
# Alpaca's names the model has no event for (restated, calculated, stopped, suspended, the
# refusals of a cancel or replace): the order itself did not change in a way the ledger tracks.
_EVENTS_BY_NAME = {event.value: event for event in OrderEventType if event is not OrderEventType.TRIGGERED}
_FILLS = (OrderEventType.FILL, OrderEventType.PARTIAL_FILL)


# ---------------------------------------------------------------------------------------
# Server -> client


def authorization(authorized: bool) -> dict[str, Any]:
    status = "authorized" if authorized else "unauthorized"
    return {"stream": "authorization", "data": {"action": "authenticate", "status": status}}


def listening(streams: list[str]) -> dict[str, Any]:
    return {"stream": "listening", "data": {"streams": list(streams)}}


def error(message: str) -> dict[str, Any]:
    """A refusal of a message the server could not act on (not part of Alpaca's documented
    set; Alpaca closes the connection instead, which the server does after sending this)."""
    return {"stream": "error", "data": {"error": message}}


def trade_update_to_wire(update: OrderUpdate) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": _EVENT_NAMES[update.event],
        "timestamp": rest.iso(update.at),
        "order": rest.order_to_wire(update.order),
    }
    if update.event in _FILLS:
        data["execution_id"] = update.execution_id
        data["qty"] = fmt(update.qty)
        data["price"] = fmt(update.price)
        data["position_qty"] = fmt(update.position_qty)
    return {"stream": TRADE_UPDATES, "data": data}


# ---------------------------------------------------------------------------------------
# Client -> server


def parse_message(raw: str | bytes) -> Mapping[str, Any]:
    """One client message: a JSON object with an ``action``."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("message is not valid JSON") from None
    if not isinstance(message, Mapping) or not isinstance(message.get("action"), str):
        raise InvalidRequest("message must be a JSON object with an action")
    return message


def parse_auth(message: Mapping[str, Any]) -> tuple[str, str]:
    """(key id, secret) of either auth shape; InvalidRequest for anything else."""
    action = message.get("action")
    if action == "auth":
        key, secret = message.get("key"), message.get("secret")
    elif action == "authenticate":
        data = message.get("data")
        data = data if isinstance(data, Mapping) else {}
        key, secret = data.get("key_id"), data.get("secret_key")
    else:
        raise InvalidRequest("authenticate first")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        raise InvalidRequest("auth needs a key and a secret")
    if len(key) > MAX_CREDENTIAL_LENGTH or len(secret) > MAX_CREDENTIAL_LENGTH:
        raise InvalidRequest("auth needs a key and a secret")
    return key, secret


def parse_listen(message: Mapping[str, Any]) -> list[str]:
    """The streams a ``listen`` message asks for (an empty list stops listening)."""
    data = message.get("data")
    streams = data.get("streams") if isinstance(data, Mapping) else None
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams) or len(streams) > 16:
        raise InvalidRequest('listen needs {"data": {"streams": [...]}}')
    return streams


# Client messages, for the venue side.


def auth_message(key_id: str, secret: str) -> dict[str, Any]:
    return {"action": "auth", "key": key_id, "secret": secret}


def listen_message(streams: list[str]) -> dict[str, Any]:
    return {"action": "listen", "data": {"streams": list(streams)}}


# ---------------------------------------------------------------------------------------
# Server messages, read by the venue side


def parse_server_message(raw: str | bytes) -> Mapping[str, Any]:
    try:
        message = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise InvalidRequest("stream message is not valid JSON") from None
    if not isinstance(message, Mapping) or not isinstance(message.get("stream"), str):
        raise InvalidRequest("stream message has no stream")
    return message


def is_authorized(message: Mapping[str, Any]) -> bool:
    data = message.get("data")
    return message.get("stream") == "authorization" and isinstance(data, Mapping) and data.get("status") == "authorized"


def listened_streams(message: Mapping[str, Any]) -> list[str] | None:
    """The streams a ``listening`` acknowledgement names, or None for another message."""
    data = message.get("data")
    if message.get("stream") != "listening" or not isinstance(data, Mapping):
        return None
    streams = data.get("streams")
    return [s for s in streams if isinstance(s, str)] if isinstance(streams, list) else []


def trade_update_from_wire(data: object) -> OrderUpdate | None:
    """The ``data`` of a ``trade_updates`` message; None for an event the model does not track
    (restated, calculated, ...). InvalidRequest when it cannot be read."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("trade update must be an object")
    event = _EVENTS_BY_NAME.get(data.get("event"))  # type: ignore[arg-type]
    if event is None:
        return None
    order = rest.order_from_wire(data.get("order"))
    at = rest.parse_time(data["timestamp"], "timestamp") if data.get("timestamp") else order.updated_at
    execution_id = data.get("execution_id")
    return OrderUpdate(
        event=event,
        order=order,
        at=at,
        qty=_number(data, "qty", MAX_QTY),
        price=_number(data, "price", MAX_PRICE),
        position_qty=_signed(data, "position_qty"),
        execution_id=execution_id if isinstance(execution_id, str) and execution_id else None,
    )


def _number(data: Mapping[str, Any], name: str, maximum: Decimal) -> Decimal | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    return parse_decimal(value, name, maximum=maximum, allow_zero=True)


def _signed(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    text = str(value).strip()
    negative = text.startswith("-")
    magnitude = parse_decimal(text[1:] if negative else text, name, maximum=MAX_QTY, allow_zero=True)
    return -magnitude if negative else magnitude
