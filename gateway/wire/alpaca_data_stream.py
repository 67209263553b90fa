"""Alpaca's market data stream messages, both directions (JSON or msgpack).

Every frame is a list of messages. Control messages are ``{"T": "success", "msg": ...}``,
``{"T": "error", "code": N, "msg": ...}`` and ``{"T": "subscription", <channel>: [symbols]}``;
data messages are ``{"T": "t"|"q"|"b"|"u"|"d", "S": symbol, ...}`` with Alpaca's short keys.
Prices and sizes are JSON numbers on this wire (Alpaca's format, which alpaca-py reads as
floats): Decimal is converted here, at the edge, and back to Decimal when parsing. Timestamps
are RFC 3339 strings in JSON and msgpack Timestamps in msgpack (alpaca-py calls
``.to_datetime()`` on them).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgpack
import orjson

from ..errors import InvalidRequest
from ..market import Bar, Quote, Trade
from ..model import AssetClass
from ..ports import STREAM_CHANNELS, MarketTick

# Alpaca's error codes and messages, exactly as it sends them.
INVALID_SYNTAX = (400, "invalid syntax")
NOT_AUTHENTICATED = (401, "not authenticated")
AUTH_FAILED = (402, "auth failed")
ALREADY_AUTHENTICATED = (403, "already authenticated")
AUTH_TIMEOUT = (404, "auth timeout")
SYMBOL_LIMIT = (405, "symbol limit exceeded")
CONNECTION_LIMIT = (406, "connection limit exceeded")
SLOW_CLIENT = (407, "slow client")
INSUFFICIENT_SUBSCRIPTION = (409, "insufficient subscription")
INVALID_ACTION = (410, "invalid subscribe action for this feed")
INTERNAL_ERROR = (500, "internal error")

_TYPE_OF_CHANNEL = {"trades": "t", "quotes": "q", "bars": "b", "updatedBars": "u", "dailyBars": "d"}
_CHANNEL_OF_TYPE = {v: k for k, v in _TYPE_OF_CHANNEL.items()}
MAX_SYMBOL_LENGTH = 64
_FRACTION = re.compile(r"\.(\d+)")

# The channels each kind of feed lists in its subscription message (Alpaca lists them all,
# empty or not). Channels we do not carry are refused with INVALID_ACTION when asked for.
LISTED_CHANNELS = {
    AssetClass.US_EQUITY: STREAM_CHANNELS,
    AssetClass.CRYPTO: STREAM_CHANNELS,
    AssetClass.US_OPTION: ("trades", "quotes"),
}
# Channels a client may name but that carry nothing here (alpaca-py sends every channel it has
# handlers for; these it only has when the bot registered them). Asking for them is refused.
UNCARRIED = frozenset({"statuses", "lulds", "orderbooks", "news", "imbalances"})
# Trade corrections and cancels follow the trades subscription on stock feeds, as at Alpaca.
FOLLOWERS = frozenset({"corrections", "cancelErrors"})


def success(msg: str) -> dict:
    return {"T": "success", "msg": msg}


def error(code_msg: tuple[int, str]) -> dict:
    code, msg = code_msg
    return {"T": "error", "code": code, "msg": msg}


def subscription(asset_class: AssetClass, subs: dict[str, set[str]]) -> dict:
    message: dict[str, Any] = {"T": "subscription"}
    for channel in LISTED_CHANNELS[asset_class]:
        message[channel] = sorted(subs.get(channel, ()))
    if asset_class is AssetClass.US_EQUITY:
        for follower in ("corrections", "cancelErrors"):
            message[follower] = sorted(subs.get("trades", ()))
    return message


# -- encoding ---------------------------------------------------------------------------------


def encode(messages: list[dict], msgpack_wanted: bool) -> bytes | str:
    if msgpack_wanted:
        return msgpack.packb(messages, datetime=True, default=_msgpack_default)
    # RFC 3339 with a Z, as Alpaca writes its times.
    return orjson.dumps(messages, default=_json_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def _msgpack_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _time(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def tick_to_wire(tick: MarketTick, asset_class: AssetClass) -> dict:
    """One data message in Alpaca's format for that feed."""
    item, kind = tick.item, _TYPE_OF_CHANNEL[tick.channel]
    head = {"T": kind, "S": tick.symbol}
    if isinstance(item, Trade):
        body: dict[str, Any] = {"i": item.id, "p": item.price, "s": item.size, "t": _time(item.t)}
        if asset_class is AssetClass.CRYPTO:
            body["tks"] = "B" if item.taker_side == "buy" else "S"
        else:
            body.update({"x": "V", "c": ["@"], "z": "C"} if asset_class is AssetClass.US_EQUITY else {"x": "N", "c": "I"})
    elif isinstance(item, Quote):
        body = {"bp": item.bid, "bs": item.bid_size, "ap": item.ask, "as": item.ask_size, "t": _time(item.t)}
        if asset_class is AssetClass.US_EQUITY:
            body.update({"bx": "V", "ax": "V", "c": ["R"], "z": "C"})
        elif asset_class is AssetClass.US_OPTION:
            body.update({"bx": "N", "ax": "N", "c": "A"})
    else:
        body = {"o": item.open, "h": item.high, "l": item.low, "c": item.close, "v": item.volume,
                "t": _time(item.t), "n": item.trade_count, "vw": item.vwap if item.vwap is not None else item.close}
    return head | body


# -- decoding ---------------------------------------------------------------------------------


def decode(data: bytes | str) -> object:
    """A client's (or upstream's) frame: msgpack when binary and not JSON, else JSON."""
    if isinstance(data, str):
        return orjson.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return msgpack.unpackb(data, timestamp=3)  # timestamps as datetimes


def parse_action(data: bytes | str) -> dict:
    """A client's message as a dict with an ``action``; InvalidRequest when it is not one."""
    try:
        message = decode(data)
    except (ValueError, msgpack.UnpackException, msgpack.ExtraData):
        raise InvalidRequest("invalid syntax") from None
    if isinstance(message, list) and len(message) == 1:
        message = message[0]
    if not isinstance(message, dict) or not isinstance(message.get("action"), str):
        raise InvalidRequest("invalid syntax")
    return message


def parse_channels(message: dict, asset_class: AssetClass) -> dict[str, set[str]]:
    """The channels and symbols of a subscribe/unsubscribe message. InvalidRequest("invalid
    syntax") for a malformed one; ValueError for a channel this feed does not carry."""
    channels: dict[str, set[str]] = {}
    for key, value in message.items():
        if key == "action" or key in FOLLOWERS:
            continue
        if key in UNCARRIED or (key in _TYPE_OF_CHANNEL and key not in LISTED_CHANNELS[asset_class]):
            raise ValueError(key)
        if key not in _TYPE_OF_CHANNEL:
            raise InvalidRequest("invalid syntax")
        if not isinstance(value, list) or not all(_is_symbol(s) for s in value):
            raise InvalidRequest("invalid syntax")
        channels[key] = {s if asset_class is not AssetClass.US_EQUITY else s.upper() for s in value}
    return channels


def _is_symbol(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_SYMBOL_LENGTH and value.isprintable() and " " not in value


def parse_tick(message: dict) -> MarketTick | None:
    """An upstream data message as a MarketTick; None for control messages and kinds not carried."""
    channel = _CHANNEL_OF_TYPE.get(message.get("T"))  # type: ignore[arg-type]
    symbol = message.get("S")
    if channel is None or not isinstance(symbol, str):
        return None
    t = _parse_time(message["t"])
    if channel == "trades":
        side = {"B": "buy", "S": "sell"}.get(message.get("tks", ""))
        item: Trade | Quote | Bar = Trade(t=t, price=_dec(message["p"]), size=_dec(message["s"]),
                                          id=int(message.get("i") or 0), taker_side=side)
    elif channel == "quotes":
        item = Quote(t=t, bid=_dec(message["bp"]), bid_size=_dec(message["bs"]), ask=_dec(message["ap"]),
                     ask_size=_dec(message["as"]))
    else:
        item = Bar(t=t, open=_dec(message["o"]), high=_dec(message["h"]), low=_dec(message["l"]),
                   close=_dec(message["c"]), volume=_dec(message["v"]), trade_count=int(message.get("n") or 0),
                   vwap=_dec(message["vw"]) if message.get("vw") is not None else None)
    return MarketTick(channel, symbol, item)


def _dec(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("not a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime()
    if isinstance(value, str):
        # Alpaca writes nanoseconds; datetime keeps microseconds.
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.replace("Z", "+00:00"), count=1)
        return _time(datetime.fromisoformat(text))
    raise ValueError("not a timestamp")
