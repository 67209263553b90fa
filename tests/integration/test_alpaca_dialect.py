"""The Alpaca dialect over a scripted Backend: authentication, the caller it builds, and how every
gateway error is rendered (status, Alpaca code, reject codes; never 504, never a secret)."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from gateway.dialects.alpaca import mount_alpaca
from gateway.errors import (
    Forbidden,
    InsufficientFunds,
    NotFound,
    OrderRejected,
    RateLimited,
    RiskRejected,
    TradingHalted,
    Unauthorized,
    UpstreamUnavailable,
    UpstreamUncertain,
)
from gateway.model import Caller, Decision, Violation
from gateway.venues.base import Authenticator, Backend

KEY, SECRET = "PKBOT", "bot-secret-3e1f"
ORDER = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}


class OneKey(Authenticator):
    def authenticate(self, key_id, secret, dialect, remote):
        if (key_id, secret) != (KEY, SECRET):
            raise Unauthorized("invalid credentials")
        return Caller(key_id=key_id, dialect=dialect, remote=remote)

    def hmac_secret(self, key_id, dialect, remote):
        raise Unauthorized("invalid credentials")


class Scripted(Backend):
    """Records every call; raises whatever ``self.error`` is set to."""

    def __init__(self):
        self.calls: list[tuple[str, Caller]] = []
        self.error: BaseException | None = None

    def _hit(self, name, caller):
        self.calls.append((name, caller))
        if self.error is not None:
            raise self.error
        raise NotFound("nothing here")

    async def get_account(self, caller):
        self._hit("get_account", caller)

    async def submit_order(self, caller, intent):
        self._hit("submit_order", caller)

    async def list_positions(self, caller):
        self._hit("list_positions", caller)

    async def get_position(self, caller, symbol):
        self._hit("get_position", caller)

    async def close_position(self, caller, symbol, qty=None, percentage=None):
        self._hit("close_position", caller)

    async def close_all_positions(self, caller, cancel_orders=False):
        self._hit("close_all_positions", caller)

    async def replace_order(self, caller, order_id, change):
        self._hit("replace_order", caller)

    async def cancel_order(self, caller, order_id):
        self._hit("cancel_order", caller)

    async def cancel_all_orders(self, caller):
        self._hit("cancel_all_orders", caller)

    async def get_order(self, caller, order_id, nested=False):
        self._hit("get_order", caller)

    async def get_order_by_client_id(self, caller, client_order_id):
        self._hit("get_order_by_client_id", caller)

    async def list_orders(self, caller, query):
        self._hit("list_orders", caller)

    async def latest_price(self, caller, symbol, asset_class):
        self._hit("latest_price", caller)

    async def get_clock(self, caller):
        self._hit("get_clock", caller)

    async def get_asset(self, caller, symbol):
        self._hit("get_asset", caller)


@pytest.fixture
async def server(serve_app):
    backend = Scripted()
    app = web.Application()
    mount_alpaca(app, backend, OneKey(), max_body_bytes=1024)
    url = await serve_app(app)

    async def request(method, path, *, json=None, data=None, headers=None, auth=True):
        hdrs = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET} if auth else {}
        hdrs.update(headers or {})
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, url + path, json=json, data=data, headers=hdrs) as response,
        ):
            return response.status, await response.json(content_type=None)

    return backend, request


async def test_unauthenticated_requests_never_reach_the_backend(server):
    backend, request = server
    cases = [
        {},
        {"APCA-API-KEY-ID": KEY},
        {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": "wrong"},
        {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": "x" * 300},
        {"Authorization": "Bearer some-token"},
    ]
    for headers in cases:
        status, body = await request("POST", "/v2/orders", json=ORDER, headers=headers, auth=False)
        assert (status, body["code"]) == (401, 40110000)
        assert "wrong" not in body["message"]
    status, _ = await request("GET", "/v2/no-such-route", auth=False)
    assert status == 401
    assert backend.calls == []


async def test_caller_carries_key_remote_and_confidence(server):
    backend, request = server
    await request("GET", "/v2/account", headers={"X-Signal-Confidence": "0.75"})
    await request("GET", "/v2/clock")
    (_, with_confidence), (_, without) = backend.calls
    assert with_confidence == Caller(KEY, "alpaca", "127.0.0.1", Decimal("0.75"))
    assert without.confidence is None


@pytest.mark.parametrize("value", ["1.5", "-0.1", "NaN", "high", "inf"])
async def test_bad_confidence_is_422(server, value):
    backend, request = server
    status, body = await request("GET", "/v2/account", headers={"X-Signal-Confidence": value})
    assert status == 422 and "X-Signal-Confidence" in body["message"]
    assert backend.calls == []


RISK = RiskRejected(Decision(False, (Violation("max_position_pct", "position 5% exceeds limit 2%"),
                                     Violation("max_order_notional", "order $9000 exceeds $5000")), policy_version=7))


@pytest.mark.parametrize("error, status, code, extra", [
    (RISK, 403, 40310000, {"reject_codes": ["max_position_pct", "max_order_notional"]}),
    (TradingHalted("trading is LOCKED: maintenance", "locked"), 403, 40310000, {"reject_codes": ["locked"]}),
    (InsufficientFunds("insufficient buying power"), 403, 40310000, {}),
    (Forbidden("read-only key"), 403, 40310000, {}),
    (OrderRejected("broker: qty must be whole"), 422, 42210000, {}),
    (NotFound("order not found"), 404, 40410000, {}),
    (RateLimited("slow down"), 429, 42910000, {}),
    (UpstreamUnavailable("cannot reach the broker"), 503, 50310000, {}),
    (UpstreamUncertain("may or may not have been placed"), 502, 50210000, {}),
])
async def test_gateway_errors_render_as_alpaca_json(server, error, status, code, extra):
    backend, request = server
    backend.error = error
    got_status, body = await request("POST", "/v2/orders", json=ORDER)
    assert got_status == status and body["code"] == code and body["message"] == error.message
    for key, value in extra.items():
        assert body[key] == value
    assert "policy v7" in body["message"] or error is not RISK


async def test_unexpected_exception_is_a_generic_500(server):
    backend, request = server
    backend.error = RuntimeError(f"connection string with {SECRET}")
    status, body = await request("GET", "/v2/account")
    assert (status, body) == (500, {"code": 50010000, "message": "internal error"})
    backend.error = TimeoutError()
    status, _ = await request("POST", "/v2/orders", json=ORDER)
    assert status == 500  # never 504: alpaca-py would re-POST the order


async def test_every_route_reaches_its_backend_method(server):
    backend, request = server
    oid = "7a1c0e9e-2b7d-4f4e-9d1c-0f3b2a1e4d5c"
    routes = [
        ("GET", "/v2/account", None, "get_account"),
        ("GET", "/v2/positions", None, "list_positions"),
        ("DELETE", "/v2/positions?cancel_orders=True", None, "close_all_positions"),
        ("GET", "/v2/positions/BTC/USD", None, "get_position"),
        ("DELETE", "/v2/positions/AAPL?percentage=50", None, "close_position"),
        ("POST", "/v2/orders", ORDER, "submit_order"),
        ("GET", "/v2/orders?status=all&symbols=AAPL,BTC/USD", None, "list_orders"),
        ("DELETE", "/v2/orders", None, "cancel_all_orders"),
        ("GET", "/v2/orders:by_client_order_id?client_order_id=abc", None, "get_order_by_client_id"),
        ("GET", f"/v2/orders/{oid}?nested=true", None, "get_order"),
        ("PATCH", f"/v2/orders/{oid}", {"qty": 2}, "replace_order"),
        ("DELETE", f"/v2/orders/{oid}", None, "cancel_order"),
        ("GET", "/v2/clock", None, "get_clock"),
        ("GET", "/v2/assets/BTC/USD", None, "get_asset"),
    ]
    for method, path, body, name in routes:
        backend.calls.clear()
        status, answer = await request(method, path, json=body)
        assert status == 404 and answer["code"] == 40410000, (method, path, answer)
        assert [call for call, _ in backend.calls] == [name], (method, path)


async def test_bad_requests_are_refused_before_the_backend(server):
    backend, request = server
    cases = [
        ("GET", "/v2/orders?symbol=AAPL", None, "symbol"),
        ("GET", "/v2/orders?limit=5&limit=6", None, "repeated"),
        ("GET", "/v2/orders:by_client_order_id", None, "client_order_id"),
        ("DELETE", "/v2/positions/AAPL?qty=1&percentage=5", None, "mutually exclusive"),
        ("DELETE", "/v2/positions?cancel_orders=perhaps", None, "cancel_orders"),
        ("GET", "/v2/positions/..%2Faccount", None, "symbol"),
        ("PATCH", "/v2/orders/abc", {}, "at least one"),
        ("POST", "/v2/orders", ORDER | {"qty": "-1"}, "qty"),
    ]
    for method, path, body, words in cases:
        status, answer = await request(method, path, json=body)
        assert status == 422 and words in answer["message"], (path, answer)
    status, answer = await request("POST", "/v2/orders", data=b"{" + b" " * 2000 + b"}")
    assert status == 413 and answer["code"] == 41310000
    assert backend.calls == []
