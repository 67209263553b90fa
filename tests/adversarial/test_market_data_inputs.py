"""Garbage into every market-data and start-up endpoint of both dialects: never a 5xx, always the
dialect's own error shape, never a secret. Deterministic (seeded), a few hundred requests."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import aiohttp

from gateway.bootstrap import init_home
from gateway.market_data import AddressLimiter, MarketReads

from ..integration.support import mechanics_policy, start_gateway

ALPACA_PATHS = [
    "/v2/stocks/bars", "/v2/stocks/trades", "/v2/stocks/quotes", "/v2/stocks/trades/latest", "/v2/stocks/quotes/latest",
    "/v2/stocks/bars/latest", "/v2/stocks/snapshots", "/v2/stocks/AAPL/bars", "/v2/stocks/AAPL/trades/latest",
    "/v2/stocks/AAPL/snapshot", "/v1beta3/crypto/us/bars", "/v1beta3/crypto/us/trades", "/v1beta3/crypto/us/quotes",
    "/v1beta3/crypto/us/latest/trades", "/v1beta3/crypto/us/latest/orderbooks", "/v1beta3/crypto/us/snapshots",
    "/v1beta1/options/bars", "/v1beta1/options/trades/latest", "/v1beta1/options/snapshots",
    "/v1beta1/options/snapshots/AAPL", "/v2/assets", "/v2/assets/BTCUSD", "/v2/calendar", "/v2/account/configurations",
    "/v2/account/activities", "/v2/account/portfolio/history", "/v2/watchlists", "/v2/options/contracts",
    "/v2/corporate_actions/announcements",
]
BINANCE_PATHS = [
    "/fapi/v1/klines", "/fapi/v1/continuousKlines", "/fapi/v1/markPriceKlines", "/fapi/v1/depth", "/fapi/v1/trades",
    "/fapi/v1/aggTrades", "/fapi/v1/ticker/24hr", "/fapi/v1/ticker/price", "/fapi/v2/ticker/price",
    "/fapi/v1/ticker/bookTicker", "/fapi/v1/premiumIndex", "/fapi/v1/fundingRate", "/fapi/v1/openInterest",
    "/api/v3/exchangeInfo", "/dapi/v1/exchangeInfo",
]
NAMES = ["symbols", "symbol", "timeframe", "interval", "start", "end", "startTime", "endTime", "limit", "page_token",
         "sort", "pair", "contractType", "fromId", "asset_class", "status", "ca_types", "since", "until", "feed"]
VALUES = ["", "AAPL", "BTC/USD", "BTCUSD", "ZZZZ", "-1", "0", "99999999999999999999", "1e308", "NaN", "1Min", "7x",
          "1m", "2024-01-01", "1970-01-01T00:00:00Z", "9999-12-31", "💥", "A" * 300, "%00", "../../etc", "true",
          "BTC/USD,ETH/USD," * 30, "desc", "PERPETUAL", "0:99999"]


def garbage(rng: random.Random) -> str:
    pairs = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 4))]
    return "&".join(f"{quote(n)}={quote(v, safe='')}" for n, v in pairs)


async def test_garbage_never_gets_a_5xx():
    root = Path(tempfile.mkdtemp(prefix="gw", dir="/tmp"))  # short: the operator socket path is limited
    gw = await start_gateway(init_home(root / "home", policy_text=mechanics_policy()), venue="paper")
    pipeline = gw.gateway.pipeline  # room for every request from this one address
    pipeline.market_reads = MarketReads(pipeline.venue, limiter=AddressLimiter(per_min=100_000, burst=100_000))
    rng = random.Random(12)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as http:
            for i in range(600):
                alpaca = i % 2 == 0
                path = rng.choice(ALPACA_PATHS if alpaca else BINANCE_PATHS)
                async with http.get(f"{gw.url}{path}?{garbage(rng)}") as response:
                    text = await response.text()
                    assert response.status < 500, (path, response.status, text)
                    assert gw.secret not in text
                    if response.status >= 400:
                        body = await response.json(content_type=None)
                        if alpaca:
                            assert set(body) >= {"code", "message"}, (path, body)
                        else:
                            assert isinstance(body["code"], int) and body["code"] < 0 and "msg" in body, (path, body)
    finally:
        await gw.gateway.stop()
        shutil.rmtree(root, ignore_errors=True)
