"""The dashboard over a real socket (HTTP level; tests/e2e drives it in a browser): login and
session cookie, nothing without it, CSRF on every POST, CSP, the Host check, the decision feed
from the audit log, lockdown and unlock through the operator code, fills attributed as P&L,
server-sent events, and the same data over the unix socket for `gatewayctl dashboard`."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from gateway.home import Home

from .support import RunningGateway, free_port, start_gateway, wait_for


@pytest.fixture
async def dash_gateway(gateway_home) -> RunningGateway:
    running = await start_gateway(gateway_home, venue="paper", operator_listen=("127.0.0.1", free_port()))
    try:
        yield running
    finally:
        await running.gateway.stop()


def token(gw: RunningGateway) -> str:
    return Home.at(gw.init.home).operator_token.read_text().strip()


async def logged_in(gw: RunningGateway) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    base = gw.gateway.operator_url
    async with session.post(f"{base}/dashboard/login", data={"token": token(gw)}, allow_redirects=False) as resp:
        assert resp.status == 303
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
    async with session.get(f"{base}/dashboard/api/session") as resp:
        csrf = (await resp.json())["csrf"]
    return session, csrf


def buy(gw: RunningGateway, symbol: str, qty: float):
    tc = TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)
    return tc.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))


async def test_without_a_session_nothing_about_the_account_is_served(dash_gateway):
    base = dash_gateway.gateway.operator_url
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/dashboard") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'name="token"' in page
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert dash_gateway.key_id not in page and "ACTIVE" not in page
        for path in ("overview", "decisions", "orders", "events", "charts/equity.svg", "session"):
            async with s.get(f"{base}/dashboard/api/{path}") as resp:
                assert resp.status == 401, path
                assert dash_gateway.key_id not in await resp.text()
        async with s.post(f"{base}/dashboard/api/lockdown", json={"reason": "x"}) as resp:
            assert resp.status == 401
        async with s.post(f"{base}/dashboard/login", data={"token": "wrong"}, allow_redirects=False) as resp:
            assert resp.status == 401 and "Set-Cookie" not in resp.headers
        # The operator API itself still needs the bearer token on TCP.
        async with s.get(f"{base}/status") as resp:
            assert resp.status == 401
    assert dash_gateway.gateway.control.state.value == "ACTIVE"


async def test_a_foreign_host_header_is_refused(dash_gateway):
    base = dash_gateway.gateway.operator_url
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/dashboard", headers={"Host": "evil.example:80"}) as resp:
            assert resp.status == 421
        async with s.post(f"{base}/dashboard/login", data={"token": token(dash_gateway)},
                          headers={"Origin": "http://evil.example"}, allow_redirects=False) as resp:
            assert resp.status == 403


async def test_post_without_the_csrf_token_is_refused(dash_gateway):
    session, csrf = await logged_in(dash_gateway)
    base = dash_gateway.gateway.operator_url
    async with session:
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            async with session.post(f"{base}/dashboard/api/lockdown", json={"reason": "forged"}, headers=headers) as resp:
                assert resp.status == 403
        assert dash_gateway.gateway.control.state.value == "ACTIVE"
        async with session.post(f"{base}/dashboard/api/lockdown", json={"reason": ""}, headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 400 and "reason" in (await resp.json())["error"]


async def test_decisions_lockdown_unlock_and_pnl(dash_gateway):
    gw = dash_gateway
    session, csrf = await logged_in(gw)
    base = gw.gateway.operator_url
    async with session:
        await asyncio.to_thread(buy, gw, "AAPL", 3)
        with pytest.raises(APIError):  # beyond max_position_pct
            await asyncio.to_thread(buy, gw, "AAPL", 10_000)

        async def page():
            async with session.get(f"{base}/dashboard/api/decisions", params={"limit": "10"}) as resp:
                return await resp.json()

        deadline = asyncio.get_running_loop().time() + 5
        while (feed := await page())["total"] < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        newest, older = feed["items"][0], feed["items"][1]
        assert (older["decision"], older["symbol"], older["bot"]) == ("allow", "AAPL", gw.key_id)
        assert newest["decision"] == "deny" and newest["codes"] and newest["message"]
        async with session.get(f"{base}/dashboard/api/decisions", params={"code": newest["codes"][0]}) as resp:
            assert [d["decision"] for d in (await resp.json())["items"]] == ["deny"]

        feed = gw.gateway.dashboard.feed
        await wait_for(lambda: feed.poll() >= 0 and any(f.symbol == "AAPL" for f in feed.fills))
        async with session.get(f"{base}/dashboard/api/overview") as resp:
            overview = await resp.json()
        assert overview["state"]["state"] == "ACTIVE"
        limits = {limit["name"]: limit for limit in overview["limits"]}
        assert set(limits) == set(gw.gateway.active_policy.policy.rails())  # every rail of the policy
        portfolio = gw.gateway.portfolio
        exposure = portfolio.committed / portfolio.equity * 100
        assert limits["account.max_exposure_pct"]["value"] == str(exposure.quantize(Decimal("0.0001")).normalize())
        assert limits["account.max_exposure_pct"]["limit"] == "20" and 0 < limits["account.max_exposure_pct"]["ratio"] < 1
        assert limits["asset_classes.us_equity.universe_size"]["value"] == "1"
        assert [s["symbol"] for s in limits["account.max_position_pct"]["symbols"]][0] == "AAPL"
        assert limits["circuit_breakers.daily_loss_pct"]["value"] == "0"
        assert limits["account.max_order_qty"]["kind"] == "per order"
        assert overview["pnl"]["by_bot"][gw.key_id]["open_qty"] == "3"
        bot = next(b for b in overview["bots"] if b["key_id"] == gw.key_id)
        assert (bot["orders_today"], bot["refusals_today"]) == (2, 1)
        assert gw.secret not in str(overview)

        async with session.post(f"{base}/dashboard/api/lockdown", json={"reason": "test lock", "cancel_open": True},
                                headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 200, await resp.text()
        assert gw.gateway.control.state.value == "LOCKED"
        with pytest.raises(APIError):
            await asyncio.to_thread(buy, gw, "MSFT", 1)
        async with session.post(f"{base}/dashboard/api/unlock", json={"reason": "done"}, headers={"X-CSRF-Token": csrf}) as resp:
            assert (await resp.json())["state"]["state"] == "ACTIVE"
        async with session.post(f"{base}/dashboard/api/verify", headers={"X-CSRF-Token": csrf}) as resp:
            assert (await resp.json())["ok"] is True


async def test_server_sent_events_announce_a_new_decision(dash_gateway):
    gw = dash_gateway
    session, _ = await logged_in(gw)
    async with session:
        async with session.get(f"{gw.gateway.operator_url}/dashboard/api/events") as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert b"event: change" in first and b'"ACTIVE"' in first
            order = asyncio.create_task(asyncio.to_thread(buy, gw, "MSFT", 1))
            nxt = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert b"event: change" in nxt
            await order


def test_the_session_expires():
    from gateway.admin.dashboard.session import Sessions

    clock = [0.0]
    sessions = Sessions(b"tok", ttl_s=10, clock=lambda: clock[0])
    s = sessions.login("tok")
    assert sessions.get(s.id) is s and sessions.login("nope") is None
    clock[0] = 10.5
    assert sessions.get(s.id) is None


async def test_gatewayctl_dashboard_serves_the_page_over_the_unix_socket(gateway_home):
    from gateway.admin.dashboard.local import serve_local

    gw = await start_gateway(gateway_home, venue="paper")
    stop = asyncio.Event()
    urls: list[str] = []
    task = asyncio.create_task(serve_local(Home.at(gateway_home.home), 0, announce=urls.append, stop=stop))
    try:
        await wait_for(lambda: bool(urls))
        url = urls[0]
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.get(f"{url}/../api/overview".replace("/dashboard/../", "/dashboard/")) as resp:
                assert resp.status == 401
            async with s.post(f"{url}/login", data={"token": token(gw)}, allow_redirects=False) as resp:
                assert resp.status == 303
            async with s.get(f"{url}/api/session") as resp:
                csrf = (await resp.json())["csrf"]
            async with s.get(f"{url}/api/overview") as resp:
                assert (await resp.json())["state"]["state"] == "ACTIVE"
            async with s.post(f"{url}/api/lockdown", json={"reason": "via socket"}, headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 200, await resp.text()
            assert gw.gateway.control.state.value == "LOCKED"
    finally:
        stop.set()
        await task
        await gw.gateway.stop()


async def test_gatewayctl_pnl_and_dashboard_print_from_the_running_gateway(dash_gateway, capsys):
    from gateway.cli import main

    gw = dash_gateway
    home = str(gw.init.home)
    await asyncio.to_thread(buy, gw, "AAPL", 2)
    feed = gw.gateway.dashboard.feed
    await wait_for(lambda: feed.poll() >= 0 and any(f.symbol == "AAPL" for f in feed.fills))
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["pnl", "--home", home, "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["by_bot"][gw.key_id]["open_qty"] == "2" and report["marks"] == "live"
    assert await asyncio.to_thread(main, ["pnl", "--home", home, "--by", "symbol"]) == 0
    text = capsys.readouterr().out
    assert "AAPL" in text and "marks: live" in text
    assert await asyncio.to_thread(main, ["pnl", "--home", home, "--since", "not-a-date"]) == 2
    assert "--since" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["pnl", "--home", home, "--since", "2999-01-01", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_bot"] == {}

    assert await asyncio.to_thread(main, ["dashboard", "--home", home]) == 0
    assert capsys.readouterr().out.strip() == f"{gw.gateway.operator_url}/dashboard"


def test_gatewayctl_dashboard_without_a_running_gateway_says_so(gateway_home, capsys):
    from gateway.cli import main

    assert main(["dashboard", "--home", str(gateway_home.home)]) == 1
    assert "no gateway is running" in capsys.readouterr().err
