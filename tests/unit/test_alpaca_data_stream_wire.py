"""Alpaca's market data stream messages: what the gateway sends is what it reads back (the
Alpaca venue reads the paper broker's), in JSON and msgpack; malformed client messages."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import msgpack
import orjson
import pytest

from gateway.errors import InvalidRequest
from gateway.market import Bar, Quote, Trade
from gateway.model import AssetClass
from gateway.ports import MarketTick
from gateway.wire import alpaca_data_stream as wire

T = datetime(2026, 12, 1, 14, 30, 5, 123456, tzinfo=timezone.utc)
TICKS = [
    MarketTick("trades", "AAPL", Trade(t=T, price=Decimal("190.25"), size=Decimal("12"), id=7, taker_side=None)),
    MarketTick("quotes", "AAPL", Quote(t=T, bid=Decimal("190.2"), bid_size=Decimal("3"), ask=Decimal("190.3"), ask_size=Decimal("4"))),
    MarketTick("bars", "AAPL", Bar(t=T, open=Decimal("1"), high=Decimal("2"), low=Decimal("0.5"), close=Decimal("1.5"),
                                   volume=Decimal("100"), trade_count=3, vwap=Decimal("1.25"))),
    MarketTick("updatedBars", "AAPL", Bar(t=T, open=Decimal("1"), high=Decimal("2"), low=Decimal("0.5"), close=Decimal("1.5"),
                                          volume=Decimal("100"), trade_count=3, vwap=Decimal("1.25"))),
    MarketTick("dailyBars", "AAPL", Bar(t=T, open=Decimal("1"), high=Decimal("2"), low=Decimal("0.5"), close=Decimal("1.5"),
                                        volume=Decimal("100"), trade_count=3, vwap=Decimal("1.25"))),
]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("tick", TICKS, ids=lambda t: t.channel)
def test_a_tick_reads_back_as_itself(tick, packed):
    frame = wire.encode([wire.tick_to_wire(tick, AssetClass.US_EQUITY)], packed)
    assert isinstance(frame, bytes if packed else str)
    (message,) = wire.decode(frame)
    assert wire.parse_tick(message) == tick


def test_crypto_trades_carry_the_taker_side_and_msgpack_times_are_timestamps():
    tick = MarketTick("trades", "BTC/USD", Trade(t=T, price=Decimal("60000.5"), size=Decimal("0.01"), id=1, taker_side="sell"))
    (message,) = msgpack.unpackb(wire.encode([wire.tick_to_wire(tick, AssetClass.CRYPTO)], True))
    assert message["tks"] == "S" and isinstance(message["t"], msgpack.Timestamp)
    assert wire.parse_tick(message) == tick


def test_alpacas_nanosecond_timestamps_are_read():
    message = {"T": "t", "S": "AAPL", "i": 1, "p": 190.5, "s": 3, "t": "2026-12-01T14:30:05.123456789Z"}
    assert wire.parse_tick(message).item.t == T


def test_control_messages_are_not_ticks():
    assert wire.parse_tick({"T": "subscription", "trades": ["AAPL"]}) is None
    assert wire.parse_tick({"T": "s", "S": "AAPL"}) is None  # a trading status: not carried


@pytest.mark.parametrize("frame", ["{", "[]", '"auth"', '{"key": "k"}', '{"action": 5}', b"\xc1"])
def test_malformed_client_messages_are_invalid_syntax(frame):
    with pytest.raises(InvalidRequest):
        wire.parse_action(frame)


def test_a_msgpack_client_message_is_read():
    assert wire.parse_action(msgpack.packb({"action": "auth", "key": "k", "secret": "s"}))["key"] == "k"


def test_channels_and_symbols():
    assert wire.parse_channels({"action": "subscribe", "trades": ["aapl"], "corrections": ["AAPL"]},
                               AssetClass.US_EQUITY) == {"trades": {"AAPL"}}
    assert wire.parse_channels({"action": "subscribe", "quotes": ["BTC/USD"]}, AssetClass.CRYPTO) == {"quotes": {"BTC/USD"}}
    with pytest.raises(ValueError):
        wire.parse_channels({"action": "subscribe", "lulds": ["AAPL"]}, AssetClass.US_EQUITY)
    with pytest.raises(ValueError):
        wire.parse_channels({"action": "subscribe", "bars": ["SPY250117C00500000"]}, AssetClass.US_OPTION)
    for bad in (["A B"], [""], ["X" * 65], [5], "AAPL"):
        with pytest.raises(InvalidRequest):
            wire.parse_channels({"action": "subscribe", "trades": bad}, AssetClass.US_EQUITY)


def test_error_messages_are_alpacas():
    assert orjson.loads(wire.encode([wire.error(wire.AUTH_FAILED)], False)) == [{"T": "error", "code": 402, "msg": "auth failed"}]
    assert wire.error(wire.CONNECTION_LIMIT) == {"T": "error", "code": 406, "msg": "connection limit exceeded"}
