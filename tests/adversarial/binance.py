"""Signed Binance requests written by hand, as an attacker (or a captured bot) would send them."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

import aiohttp
from yarl import URL

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ORDER = {"symbol": "BTCUSD", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


def now_ms() -> int:
    return int(time.time() * 1000)


def signed(params: dict, secret: str, **auth) -> str:
    """The form body ccxt would send: the parameters, a fresh timestamp, the HMAC signature."""
    query = urlencode({**params, **({"timestamp": now_ms()} | auth)})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


async def send(
    session: aiohttp.ClientSession, method: str, url: str, key_id: str, body: str | None = None, query: str | None = None
) -> tuple[int, dict]:
    full = URL(url + (f"?{query}" if query else ""), encoded=True)
    headers = {"X-MBX-APIKEY": key_id, **(FORM if body is not None else {})}
    async with session.request(method, full, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)
