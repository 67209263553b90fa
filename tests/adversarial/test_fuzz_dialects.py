"""Fuzzing both dialects of a running gateway (`gatewayctl serve` in front of a paper-broker
process, real sockets): Alpaca JSON order bodies and Binance signed forms. Every answer is below
500, every error is in the dialect's own shape, no secret is echoed, and afterwards nothing the
broker holds breaks a limit of the policy."""

from __future__ import annotations

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzz_support import EXAMPLES, FuzzTarget, assert_nothing_forwarded_breaks_a_limit, assert_well_formed, serve_for_fuzzing
from .strategies import alpaca_order_bodies, alpaca_raw_bodies, binance_orders, sign_form

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def target():
    yield from serve_for_fuzzing()


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def _json(body) -> bytes:
    # Non-finite floats and huge integers go out as a sloppy bot would write them.
    try:
        return orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):
        import json

        return json.dumps(body, allow_nan=True).encode()


def test_fuzzed_alpaca_orders(target: FuzzTarget, session: requests.Session):
    headers = {**target.alpaca_headers, "Content-Type": "application/json"}

    @FUZZ
    @given(body=st.one_of(alpaca_order_bodies().map(_json), alpaca_raw_bodies()),
           method=st.sampled_from(["POST /v2/orders", "POST /v2/orders", "PATCH /v2/orders/{id}"]))
    def one(body: bytes, method: str):
        verb, path = method.split(" ")
        path = path.replace("{id}", "00000000-0000-0000-0000-000000000000")
        response = session.request(verb, target.url + path, data=body, headers=headers, timeout=10)
        assert_well_formed(response, target, dialect="alpaca")

    one()
    assert_nothing_forwarded_breaks_a_limit(target)


def test_fuzzed_binance_signed_forms(target: FuzzTarget, session: requests.Session):
    headers = {"X-MBX-APIKEY": target.key_id, "Content-Type": "application/x-www-form-urlencoded"}

    @FUZZ
    @given(order=binance_orders(), corrupt=st.sampled_from([False] * 19 + [True]))
    def one(order: tuple[str, dict], corrupt: bool):
        path, params = order
        body = sign_form(params, target.secret, corrupt=corrupt)
        response = session.post(target.url + path, data=body.encode(), headers=headers, timeout=10)
        assert_well_formed(response, target, dialect="binance")
        if corrupt:
            assert response.status_code == 401

    one()
    assert_nothing_forwarded_breaks_a_limit(target)
