"""Hypothesis strategies for what a buggy or hostile bot sends: Alpaca JSON order bodies and
Binance signed forms. Each example is a valid order (so it reaches the risk rules and, within
the limits, the broker) with up to two mutations: a field dropped, set to a nasty number, set to
a value of the wrong type, or an unknown field added."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

# Numbers as bots send them, and as attackers do.
NASTY = st.sampled_from(
    [0, -1, -0.0, 1e308, -1e308, 1e-30, float("nan"), float("inf"), float("-inf"), 2**63, 2**200, "1e308", "NaN",
     "Infinity", "-1", "0x10", "1_000", " 5", "", "१", None, True, [], {}, "0.00000000001", 10**6, 99999.999999]
)
JUNK = st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.just([1]), st.just({"a": 1}))


def _mutations(fields: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    """Up to two (field, "drop" | "set", value) changes (build once, at import)."""
    return st.lists(st.tuples(st.sampled_from([*fields, "extra_field"]), st.sampled_from(["drop", "set"]), values), max_size=2)


def _apply(body: dict, mutations: list[tuple[str, str, Any]]) -> dict:
    body = dict(body)
    for name, how, value in mutations:
        if how == "drop":
            body.pop(name, None)
        else:
            body[name] = value
    return body


# --- Alpaca ---------------------------------------------------------------------------------

_STOCKS = {"AAPL": 190, "MSFT": 420, "SPY": 500, "TSLA": 250}
_CRYPTO = {"BTC/USD": 60000, "ETH/USD": 3000}
_QTY = st.decimals(min_value="0.001", max_value=15, places=3).map(float)
# Strategies are built once: building one inside a composite costs more than drawing from it.
_BOOL = st.booleans()
_BUY_SELL = st.sampled_from(["buy", "sell"])
_ALPACA_KIND = st.sampled_from(["market", "limit", "stop", "notional"])
_DAY_GTC = st.sampled_from(["day", "gtc"])
_NEAR = st.floats(0.9, 1.1)
_FAR = st.floats(0.8, 1.2)
_NOTIONAL = st.integers(1, 3000)
_ALPACA_ID = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40)
_STOCK_SYMBOL = st.sampled_from(sorted(_STOCKS))
_CRYPTO_SYMBOL = st.sampled_from(sorted(_CRYPTO))


@st.composite
def _alpaca_valid(draw) -> dict[str, Any]:
    crypto = draw(_BOOL)
    symbol = draw(_CRYPTO_SYMBOL if crypto else _STOCK_SYMBOL)
    mark = (_CRYPTO if crypto else _STOCKS)[symbol]
    side = draw(_BUY_SELL)
    kind = draw(_ALPACA_KIND)
    tif = "gtc" if crypto else draw(_DAY_GTC)
    qty = draw(_QTY) / (mark / 100 if crypto else 1)  # crypto: a few hundred dollars at most
    body: dict[str, Any] = {"symbol": symbol, "side": side, "type": "market", "time_in_force": tif, "qty": round(qty, 6)}
    if kind == "limit":
        body.update(type="limit", limit_price=round(mark * draw(_NEAR), 2))
    elif kind == "stop" and not crypto:
        body.update(type="stop", stop_price=round(mark * draw(_FAR), 2))
    elif kind == "notional":
        del body["qty"]
        body.update(notional=draw(_NOTIONAL), time_in_force="gtc" if crypto else "day")
    if draw(_BOOL):
        body["client_order_id"] = draw(_ALPACA_ID)
    return body


_ALPACA_FIELDS = ["symbol", "side", "type", "time_in_force", "qty", "notional", "limit_price", "stop_price",
                  "trail_percent", "order_class", "take_profit", "stop_loss", "extended_hours", "client_order_id"]


_ALPACA_VALUES = st.one_of(NASTY, JUNK, st.sampled_from(["bracket", "oco", "trailing_stop", "opg", "AAPL250117C00190000",
                                                         "BTCUSD", {"limit_price": 1e308}, {"stop_price": -1}]))


_ALPACA_MUTATIONS = _mutations(_ALPACA_FIELDS, _ALPACA_VALUES)


def alpaca_order_bodies() -> st.SearchStrategy:
    return st.builds(_apply, _alpaca_valid(), _ALPACA_MUTATIONS)


def alpaca_raw_bodies() -> st.SearchStrategy:
    """Bodies that are not an order object at all."""
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"null", b"[]", b"1", b'"x"', b"{", b'{"symbol": "AAPL", "symbol": "MSFT"}',
                         b'{"qty": 1e999}', b"[" * 5000, b'{"qty": NaN}']),
    )


# --- Binance --------------------------------------------------------------------------------

_BINANCE = {"BTCUSD": 60000, "ETHUSD": 3000}
_BINANCE_SYMBOL = st.sampled_from(sorted(_BINANCE))
_BTC_QTY = st.decimals(min_value="0.001", max_value="0.03", places=3)
_BUY_SELL_UPPER = st.sampled_from(["BUY", "SELL"])
_BINANCE_KIND = st.sampled_from(["market", "limit", "algo"])
_BINANCE_ID = st.text(alphabet="abcdefABC0123456789-_", min_size=1, max_size=36)
TEXT_NUMBER = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-0.01", "1e308", "0", "", "0x1", "1,5", "１", " 1", "1e-9", "99999999999"]),
    st.text(max_size=10),
)


@st.composite
def _binance_valid(draw) -> tuple[str, dict[str, str]]:
    symbol = draw(_BINANCE_SYMBOL)
    mark = _BINANCE[symbol]
    quantity = f"{draw(_BTC_QTY) * 60000 / mark:.3f}"
    side = draw(_BUY_SELL_UPPER)
    kind = draw(_BINANCE_KIND)
    if kind == "algo":
        stop = f"{mark * draw(_FAR):.2f}"
        params = {"algoType": "CONDITIONAL", "symbol": symbol, "side": side, "type": "STOP_MARKET",
                  "quantity": quantity, "triggerPrice": stop}
        return "/fapi/v1/algoOrder", params
    params = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": quantity}
    if kind == "limit":
        params.update(type="LIMIT", price=f"{mark * draw(_NEAR):.2f}", timeInForce="GTC")
    if draw(_BOOL):
        params["newClientOrderId"] = draw(_BINANCE_ID)
    return "/fapi/v1/order", params


_BINANCE_FIELDS = ["symbol", "side", "type", "quantity", "price", "timeInForce", "reduceOnly", "closePosition",
                   "positionSide", "stopPrice", "triggerPrice", "algoType", "newClientOrderId", "recvWindow", "workingType"]


_BINANCE_VALUES = st.one_of(TEXT_NUMBER, st.sampled_from(["true", "false", "LONG", "SHORT", "GTX", "STOP_MARKET", "BTCUSDT",
                                                           "TAKE_PROFIT_MARKET", "60001", "0", "MARK_PRICE"]))


_BINANCE_MUTATIONS = _mutations(_BINANCE_FIELDS, _BINANCE_VALUES)


@st.composite
def binance_orders(draw) -> tuple[str, dict[str, str]]:
    """(path, form parameters)."""
    path, params = draw(_binance_valid())
    mutated = _apply(params, draw(_BINANCE_MUTATIONS))
    return path, {name: str(value) for name, value in mutated.items()}


def sign_form(params: dict, secret: str, *, corrupt: bool = False) -> str:
    """The form body ccxt would send (timestamp and signature appended); ``corrupt`` breaks the signature."""
    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    if corrupt:
        signature = signature[::-1]
    return f"{query}&signature={signature}"
