"""Findings of the first security review, each pinned by a test."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.bootstrap import init_home
from gateway.errors import UpstreamUnavailable
from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault
from gateway.server import Gateway, ServeOptions, StartupError
from gateway.venues.alpaca import AlpacaVenue

from .support import start_gateway


async def test_one_gateway_per_home(gateway_home):
    first = await start_gateway(gateway_home, venue="paper")
    try:
        second = Gateway(Home.at(gateway_home.home), ServeOptions(port=0))
        with pytest.raises(StartupError, match="already running"):
            await second.start()
    finally:
        await first.gateway.stop()
    again = await start_gateway(gateway_home, venue="paper")  # the lock is released on stop
    await again.gateway.stop()


def test_a_home_open_to_others_is_refused(gateway_home):
    Path(gateway_home.home).chmod(0o755)
    with pytest.raises(StartupError, match="chmod 700"):
        Gateway(Home.at(gateway_home.home), ServeOptions())


def test_a_trust_file_writable_by_others_is_refused(gateway_home):
    (Path(gateway_home.home) / "trust.json").chmod(0o666)
    with pytest.raises(StartupError, match="trust.json is writable by others"):
        Gateway(Home.at(gateway_home.home), ServeOptions())


def test_init_with_an_environment_master_key_writes_no_key_file(short_tmp, monkeypatch):
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("GATEWAY_MASTER_KEY", key)
    result = init_home(short_tmp / "home")
    home = Home.at(result.home)
    assert not home.master_key.exists()
    assert Vault.open(home).names()  # the environment key opens what init wrote


async def test_a_credential_limited_to_crypto_cannot_trade_stocks(paper_gateway):
    gw = paper_gateway
    home = Home.at(gw.init.home)
    issued = BotCredentials(home, Vault.open(home)).issue(label="crypto only", asset_classes=["crypto"])
    headers = {"APCA-API-KEY-ID": issued.key_id, "APCA-API-SECRET-KEY": issued.secret}
    async with aiohttp.ClientSession(headers=headers) as session:
        body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
        async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
            assert resp.status == 403 and "us_equity" in (await resp.json())["message"]
        body = {"symbol": "BTC/USD", "qty": 0.001, "side": "buy", "type": "market", "time_in_force": "gtc"}
        async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
            assert resp.status == 200


async def test_replacing_a_closed_order_is_refused_without_reaching_the_venue(paper_gateway):
    gw = paper_gateway
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
        async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
            filled = await resp.json()
        async with session.patch(f"{gw.url}/v2/orders/{filled['id']}", json={"qty": 2}) as resp:
            assert resp.status == 422 and "cannot be replaced" in (await resp.json())["message"]


async def test_the_alpaca_venue_never_follows_a_redirect_with_the_broker_key():
    seen_by_target: list[dict] = []

    async def target(request):
        seen_by_target.append(dict(request.headers))
        return web.json_response({})

    async def redirect(request):
        raise web.HTTPFound(f"http://127.0.0.1:{target_port}/elsewhere")

    target_app = web.Application()
    target_app.router.add_route("*", "/{tail:.*}", target)
    redirect_app = web.Application()
    redirect_app.router.add_route("*", "/{tail:.*}", redirect)
    runners = []
    ports = []
    for app in (target_app, redirect_app):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])
    target_port, redirect_port = ports
    venue = AlpacaVenue(lambda: ("PKREDIRECT", "redirect-secret"), base_url=f"http://127.0.0.1:{redirect_port}")
    await venue.start()
    try:
        with pytest.raises(UpstreamUnavailable):
            await venue.get_account()
    finally:
        await venue.close()
        for runner in runners:
            await runner.cleanup()
    assert seen_by_target == []


async def test_a_symbol_the_venue_knows_under_another_name_is_refused(paper_gateway, monkeypatch):
    """Alpaca accepts BTCUSD for BTC/USD. Counted under a second name, a position would get a
    second set of limits (and BTCUSD would pass as an equity), so the alias is refused."""
    gw = paper_gateway
    venue = gw.gateway.venue
    canonical = venue.get_asset

    async def alpaca_like(symbol):
        return await canonical("BTC/USD" if symbol == "BTCUSD" else symbol)

    monkeypatch.setattr(venue, "get_asset", alpaca_like)
    async with aiohttp.ClientSession(headers=gw.headers) as session:
        body = {"qty": 0.001, "side": "buy", "type": "market", "time_in_force": "gtc"}
        async with session.post(f"{gw.url}/v2/orders", json={**body, "symbol": "BTCUSD"}) as resp:
            error = await resp.json()
            assert resp.status == 403 and error["reject_codes"] == ["unknown_symbol"]
            assert "send BTC/USD" in error["message"]
        async with session.post(f"{gw.url}/v2/orders", json={**body, "symbol": "BTC/USD"}) as resp:
            assert resp.status == 200
