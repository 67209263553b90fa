"""The paper broker's request meter: the rate-limit flag, the window and Binance's weights."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.errors import RateLimited
from gateway.paper_traffic import RequestMeter, binance_weight, parse_rate_limit


@pytest.mark.parametrize(("text", "limit"), [("200/min", 200), ("200", 200), (" 5 / min ", 5)])
def test_rate_limit_flag(text, limit):
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize("text", ["0/min", "-1/min", "200/s", "abc", "", "1.5/min"])
def test_rate_limit_flag_refuses_anything_else(text):
    with pytest.raises(ValueError, match="200/min"):
        parse_rate_limit(text)


def test_window_slides_after_a_minute():
    now = [1000.0]
    meter = RequestMeter(limit=2, clock=lambda: now[0])
    request = make_mocked_request("GET", "/v2/account")
    meter.admit(request)
    meter.admit(request)
    now[0] += 20.0
    with pytest.raises(RateLimited) as refused:
        meter.admit(request)
    assert refused.value.retry_after_s == 40  # when the oldest request leaves the window
    now[0] += 40.0
    meter.admit(request)  # the first two left the window
    assert (meter.requests, meter.rate_limited, meter.used()) == (3, 1, 1)


@pytest.mark.parametrize(("path", "weight"), [
    ("/fapi/v1/openOrders", 40), ("/fapi/v1/openOrders?symbol=BTCUSDT", 1), ("/fapi/v2/account", 5),
    ("/fapi/v3/positionRisk", 5), ("/fapi/v1/order", 1),
])
def test_binance_weights(path, weight):
    assert binance_weight(make_mocked_request("GET", path)) == weight
