"""Signed-request checks of the Binance futures dialect, over a real socket: nothing that fails
them reaches the backend, and each failure gets the code ccxt maps to the right exception."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.dialects.binance_futures import BinanceState, fapi_app, sapi_app
from gateway.model import OrderQuery
from gateway.paper_broker import SingleKeyAuthenticator
from gateway.venues.base import DirectBackend
from gateway.venues.paper import PaperVenue
from gateway.wire import binance as wire

KEY = "BINANCEKEY0000000001"
SECRET = "binance-secret-never-echoed-91c2"


class RecordingAuth(SingleKeyAuthenticator):
    def __init__(self):
        super().__init__(KEY, SECRET)
        self.failures: list[str] = []

    def record_failure(self, key_id, remote, reason):
        self.failures.append(reason)


class SpyBackend(DirectBackend):
    """Counts every backend call made for an authenticated caller."""

    def __init__(self, venue):
        super().__init__(venue)
        self.calls: list[str] = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in ("get_account", "list_positions", "submit_order", "cancel_order", "list_orders", "set_leverage"):
            self.calls.append(name)
        return attr


@pytest.fixture
async def server(serve_app):
    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    backend, auth = SpyBackend(venue), RecordingAuth()
    state = BinanceState(backend, auth)
    app = web.Application()
    app.add_subapp("/fapi", fapi_app(state))
    app.add_subapp("/sapi", sapi_app(state))
    url = await serve_app(app)
    async with aiohttp.ClientSession() as session:
        yield url, session, backend, auth, venue


def now_ms() -> int:
    return int(time.time() * 1000)


def sign(params: dict, secret: str = SECRET, **auth) -> str:
    query = urlencode({**params, **({"timestamp": now_ms()} | auth)})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


HEADERS = {"X-MBX-APIKEY": KEY}


async def call(session, method, url, *, query=None, body=None, headers=HEADERS):
    kwargs = {"headers": {**headers, **({"Content-Type": "application/x-www-form-urlencoded"} if body else {})}}
    if body is not None:
        kwargs["data"] = body
    # As ccxt sends it: the signed query string byte for byte, not re-encoded by the client.
    full = URL(url + (("?" + query) if query else ""), encoded=True)
    async with session.request(method, full, **kwargs) as resp:
        text = await resp.text()
        assert SECRET not in text
        return resp.status, await resp.json(content_type=None)


async def test_valid_signature_in_query_and_in_body(server):
    url, session, backend, auth, _ = server
    status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=sign({}))
    assert status == 200 and body["assets"][0]["asset"] == "USDT"
    order = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"})
    status, body = await call(session, "POST", f"{url}/fapi/v1/order", body=order)
    assert status == 200 and body["status"] == "FILLED"
    assert auth.failures == []


async def test_wrong_signature_is_refused_and_counted(server):
    url, session, backend, auth, venue = server
    order = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}, secret="wrong")
    status, body = await call(session, "POST", f"{url}/fapi/v1/order", body=order)
    assert (status, body["code"]) == (401, wire.BAD_SIGNATURE)
    assert backend.calls == [] and auth.failures == ["bad request signature"]
    tampered = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}).replace(
        "0.001", "0.002"
    )
    status, body = await call(session, "POST", f"{url}/fapi/v1/order", body=tampered)
    assert body["code"] == wire.BAD_SIGNATURE and backend.calls == []
    assert await venue.list_orders(OrderQuery(status="all")) == []


@pytest.mark.parametrize("query", ["timestamp=1", "", "signature=zz", "timestamp=1&signature=" + "0" * 64])
async def test_missing_or_malformed_signature(server, query):
    url, session, backend, _, _ = server
    status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=query)
    assert (status, body["code"]) == (401, wire.BAD_SIGNATURE) and backend.calls == []


async def test_expired_and_future_timestamps(server):
    url, session, backend, _, _ = server
    for stamp in (now_ms() - 10_000, now_ms() + 5_000):
        status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=sign({}, timestamp=stamp))
        assert (status, body["code"]) == (401, wire.BAD_SIGNATURE) and "recvWindow" in body["msg"]
    assert backend.calls == []
    # A wider window the bot asked for (and signed) is honoured, up to 60 s.
    status, _ = await call(
        session, "GET", f"{url}/fapi/v3/account", query=sign({}, timestamp=now_ms() - 10_000, recvWindow=20_000)
    )
    assert status == 200


async def test_missing_timestamp(server):
    url, session, backend, _, _ = server
    query = "recvWindow=5000"
    query += "&signature=" + hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=query)
    assert (status, body["code"]) == (400, wire.MANDATORY_PARAMETER) and "timestamp" in body["msg"]
    assert backend.calls == []


@pytest.mark.parametrize("window", ["60001", "0", "-5", "abc", "1e9"])
async def test_recv_window_is_capped(server, window):
    url, session, backend, _, _ = server
    status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=sign({"recvWindow": window}))
    assert (status, body["code"]) == (400, wire.BAD_PARAMETER) and backend.calls == []


async def test_recv_window_of_sixty_seconds_is_accepted(server):
    url, session, _, _, _ = server
    status, _ = await call(session, "GET", f"{url}/fapi/v3/account", query=sign({"recvWindow": "60000"}))
    assert status == 200


async def test_a_replayed_order_is_refused(server):
    url, session, backend, auth, venue = server
    order = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"})
    assert (await call(session, "POST", f"{url}/fapi/v1/order", body=order))[0] == 200
    status, body = await call(session, "POST", f"{url}/fapi/v1/order", body=order)
    assert (status, body["code"]) == (401, wire.BAD_SIGNATURE)
    assert backend.calls.count("submit_order") == 1 and auth.failures == ["replayed request signature"]
    assert (await venue.get_position("BTC/USDT")).qty == Decimal("0.001")


async def test_keys(server):
    url, session, backend, _, _ = server
    status, body = await call(session, "GET", f"{url}/fapi/v3/account", query=sign({}), headers={})
    assert (status, body["code"]) == (401, wire.BAD_API_KEY)
    status, body = await call(
        session, "GET", f"{url}/fapi/v3/account", query=sign({}), headers={"X-MBX-APIKEY": "other"}
    )
    assert (status, body["code"]) == (401, wire.REJECTED_API_KEY)
    assert backend.calls == []


async def test_ambiguous_requests(server):
    url, session, backend, _, _ = server
    signed = sign({"symbol": "BTCUSDT"})
    status, body = await call(session, "GET", f"{url}/fapi/v3/positionRisk", query=signed + "&symbol=ETHUSDT")
    assert body["code"] == wire.BAD_SIGNATURE  # the extra parameter was not signed
    dup = "symbol=BTCUSDT&symbol=ETHUSDT&timestamp=" + str(now_ms())
    dup += "&signature=" + hmac.new(SECRET.encode(), dup.encode(), hashlib.sha256).hexdigest()
    status, body = await call(session, "GET", f"{url}/fapi/v3/positionRisk", query=dup)
    assert (status, body["code"]) == (400, wire.TOO_MANY_PARAMETERS)
    both = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"})
    status, body = await call(session, "POST", f"{url}/fapi/v1/order?signature=" + "a" * 64, body=both)
    assert body["code"] == wire.BAD_SIGNATURE
    assert "submit_order" not in backend.calls


async def test_oversized_body(server):
    url, session, backend, _, _ = server
    status, body = await call(session, "POST", f"{url}/fapi/v1/order", body="a=" + "x" * 70_000)
    assert status == 413 and body["code"] == wire.TOO_MANY_PARAMETERS and backend.calls == []


async def test_public_endpoints_need_no_key(server):
    url, session, backend, _, _ = server
    for path in ("/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr?symbol=BTCUSDT"):
        status, _ = await call(session, "GET", url + path, headers={})
        assert status == 200, path
    assert backend.calls == []  # market data only; the account is never read
    status, body = await call(session, "GET", f"{url}/fapi/v1/ticker/price", headers={})
    assert status == 200 and isinstance(body, list)  # every listed symbol, as Binance answers


async def test_bad_input_codes_by_route(server):
    url, session, backend, _, _ = server
    for quantity in ("NaN", "-1", "1e308", "abc"):
        order = sign({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity})
        status, body = await call(session, "POST", f"{url}/fapi/v1/order", body=order)
        assert (status, body["code"]) == (400, wire.BAD_ORDER), quantity
    algo = sign(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "quantity": "0.001",
            "triggerPrice": "inf",
        }
    )
    assert (await call(session, "POST", f"{url}/fapi/v1/algoOrder", body=algo))[1]["code"] == wire.BAD_ORDER
    assert "submit_order" not in backend.calls
    status, body = await call(
        session, "POST", f"{url}/fapi/v1/leverage", body=sign({"symbol": "BTCUSDT", "leverage": "500"})
    )
    assert body["code"] == wire.BAD_LEVERAGE
    status, body = await call(
        session, "POST", f"{url}/fapi/v1/marginType", body=sign({"symbol": "BTCUSDT", "marginType": "X"})
    )
    assert body["code"] == wire.BAD_PARAMETER
    status, body = await call(session, "GET", f"{url}/fapi/v1/order", query=sign({"symbol": "NOPE!"}))
    assert body["code"] == wire.BAD_SYMBOL


async def test_unknown_paths_answer_in_binance_shape(server):
    url, session, _, _, _ = server
    status, body = await call(session, "GET", f"{url}/fapi/v1/nothingHere", headers={})
    assert status == 404 and body["code"] == wire.NOT_SUPPORTED
    status, body = await call(session, "PUT", f"{url}/fapi/v1/ping", headers={})
    assert status == 405 and body["code"] == wire.NOT_SUPPORTED
