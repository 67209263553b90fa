"""The rules on a running gateway, over real sockets, with real clients."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import aiohttp
import pytest
import yaml
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest, StopLossRequest, TakeProfitRequest

from gateway.bootstrap import default_policy_text, init_home
from gateway.model import TradingState

from .support import RunningGateway, configure, start_gateway, store_broker_key

ORDER = {"side": "buy", "type": "market", "time_in_force": "day"}


async def post(session: aiohttp.ClientSession, gw: RunningGateway, **body) -> tuple[int, dict]:
    async with session.post(f"{gw.url}/v2/orders", json={**ORDER, **body}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("run", range(20))
async def test_200_concurrent_orders_worth_five_times_the_cap_stay_under_it(gateway_home, run):
    # 160 refusals in one burst would (rightly) suspend the bot; this test is about the cap.
    configure(gateway_home.home, rejection_burst="off")
    gw = await start_gateway(gateway_home, venue="paper")
    symbols = [f"C{i:03d}" for i in range(200)]
    gw.gateway.venue.engine.set_prices({s: Decimal(100) for s in symbols})
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            # 200 x 500 = 100,000: five times the 20% exposure cap of a 100,000 account.
            results = await asyncio.gather(*(post(session, gw, symbol=s, qty=5) for s in symbols))
    finally:
        await gw.gateway.stop()
    accepted = [body for status, body in results if status == 200]
    assert {status for status, _ in results} <= {200, 403}
    assert sum(Decimal(o["qty"]) * 100 for o in accepted) <= Decimal("20000")
    assert len(accepted) == 40
    assert all("max_exposure_pct" in body["reject_codes"] for status, body in results if status == 403)


async def test_a_five_percent_daily_loss_moves_the_gateway_to_reduce_only(gateway_home, paper_broker_process):
    # 9 x 2% = 18% of equity: under the 20% exposure cap with room for one order, because a
    # snapshot racing a fill may count that order twice for a moment (conservative; the book's
    # rewrite owns that), and this test is about the loss breaker, not the exposure cap.
    symbols = [f"D{i}" for i in range(9)]
    await paper_broker_process.set_prices({s: "100" for s in symbols})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            for s in symbols:
                status, body = await post(session, gw, symbol=s, qty=20)
                assert status == 200, body
            await paper_broker_process.set_prices({s: "70" for s in symbols})  # -30% on 18% = -5.4%
            await gw.gateway.pipeline.reconcile()
            assert gw.gateway.control.state is TradingState.REDUCE_ONLY
            assert "daily_loss" in gw.gateway.control.current.reason
            status, body = await post(session, gw, symbol="D0", qty=1)
            assert status == 403 and body["reject_codes"] == ["reduce_only"]
            status, body = await post(session, gw, symbol="D0", qty=20, side="sell")
            assert status == 200, body  # closing passes
            # An operator's unlock is not undone by the next snapshot of the same loss.
            gw.gateway.control.set(TradingState.ACTIVE, "reviewed the loss", "operator")
            await gw.gateway.pipeline.reconcile()
            assert gw.gateway.control.state is TradingState.ACTIVE
    finally:
        await gw.gateway.stop()
    log = (gateway_home.home / "audit" / "audit.log").read_bytes()
    assert b'"control.breaker"' in log and b"daily_loss_limit" in log


def client(gw: RunningGateway) -> TradingClient:
    return TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)


async def test_in_reject_mode_stock_entries_need_a_stop_and_a_bracket_8_percent_away_passes(short_tmp):
    doc = yaml.safe_load(default_policy_text())
    doc["asset_classes"]["us_equity"]["stop_loss"] = {"mode": "reject", "max_distance_pct": 8}
    init = init_home(short_tmp / "reject", policy_text=yaml.safe_dump(doc, sort_keys=False))
    gw = await start_gateway(init, venue="paper")
    tc = client(gw)
    try:
        with pytest.raises(APIError) as raised:
            await asyncio.to_thread(tc.submit_order, MarketOrderRequest(
                symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
        assert raised.value.status_code == 403 and "stop_loss_required" in str(raised.value)
        bracket = await asyncio.to_thread(tc.submit_order, MarketOrderRequest(
            symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=210), stop_loss=StopLossRequest(stop_price=174.8)))  # 190 - 8%
        assert bracket.order_class == OrderClass.BRACKET
        with pytest.raises(APIError) as raised:
            await asyncio.to_thread(tc.submit_order, MarketOrderRequest(
                symbol="MSFT", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, order_class=OrderClass.OTO,
                stop_loss=StopLossRequest(stop_price=300)))  # 420 - 28.6%: too far
        assert "stop_loss_too_far" in str(raised.value)
    finally:
        await gw.gateway.stop()


async def test_under_the_default_policy_the_same_entry_becomes_protected(default_policy_home):
    gw = await start_gateway(default_policy_home, venue="paper")
    try:
        order = await asyncio.to_thread(client(gw).submit_order, MarketOrderRequest(
            symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
        assert order.order_class == OrderClass.OTO
        assert [(leg.side, leg.stop_price) for leg in order.legs] == [(OrderSide.SELL, "174.8")]
    finally:
        await gw.gateway.stop()


def occ(days: int, kind: str = "C") -> str:
    expiry = date.today() + timedelta(days=days)
    return f"AAPL{expiry:%y%m%d}{kind}00190000"


async def test_option_rules_on_the_running_gateway(default_policy_home):
    gw = await start_gateway(default_policy_home, venue="paper")
    near, far = occ(3), occ(60)
    gw.gateway.venue.engine.set_prices({near: Decimal("2"), far: Decimal("5")})
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            status, body = await post(session, gw, symbol=near, qty=1)
            assert status == 403 and "option_near_expiry" in body["reject_codes"]
            status, body = await post(session, gw, symbol=far, qty=1, side="sell")
            assert status == 403 and "naked_option" in body["reject_codes"]
            status, body = await post(session, gw, symbol=far, qty=1)
            assert status == 200, body  # a long call, protected by the attached stop
    finally:
        await gw.gateway.stop()
