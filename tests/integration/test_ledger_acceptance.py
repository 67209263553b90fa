"""The book the rules judge is the ledger of what the gateway forwarded: each way the old polled
picture could be fooled, driven by alpaca-py over real sockets, on the embedded venue and on
--venue alpaca in front of a standalone paper-broker process."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
)

from gateway.audit.verify import iter_records
from gateway.ledger import Phase
from gateway.venues.paper_engine import DEFAULT_MARKS

from .faulty_proxy import AFTER, BEFORE, GARBLE, PASS, REFUSE, FaultyProxy
from .support import RunningGateway, configure, start_gateway, store_broker_key, wait_for


def client(gw: RunningGateway) -> TradingClient:
    return TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


def records(gw: RunningGateway, type_: str) -> list[dict]:
    return [r.data for r in iter_records(Path(gw.init.home) / "audit" / "audit.log") if r.type == type_]


async def refused(fn, *args) -> APIError:
    with pytest.raises(APIError) as info:
        await call(fn, *args)
    return info.value


@pytest.fixture(params=["paper", "alpaca"])
async def gateway(request, gateway_home):
    if request.param == "paper":
        running = await start_gateway(gateway_home, venue="paper")
    else:
        broker = request.getfixturevalue("paper_broker_process")
        await broker.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
        store_broker_key(gateway_home)
        running = await start_gateway(gateway_home, venue="alpaca", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def proxied_gateway(gateway_home, paper_broker_process, serve_app):
    """--venue alpaca through a proxy that loses answers on purpose."""
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    proxy = FaultyProxy(paper_broker_process.url)
    url = await serve_app(proxy.app())
    store_broker_key(gateway_home)
    running = await start_gateway(gateway_home, venue="alpaca", upstream_url=url)
    try:
        yield running, proxy, paper_broker_process
    finally:
        await running.gateway.stop()


AAPL_1_9_PCT = 10  # 10 x $190 = 1.9% of $100,000


# --- an exit leg replaced upward --------------------------------------------------------

async def test_an_exit_leg_replaced_upward_is_judged_as_an_entry(gateway):
    tc = client(gateway)
    order = await call(tc.submit_order, MarketOrderRequest(
        symbol="AAPL", qty=AAPL_1_9_PCT, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
        order_class=OrderClass.OTO, stop_loss=StopLossRequest(stop_price=180)))
    ledger = gateway.gateway.pipeline.ledger
    await wait_for(lambda: gateway.gateway.portfolio.position("AAPL") == AAPL_1_9_PCT)
    leg = str(order.legs[0].id)
    # 20 sells against a position of 10: 10 close it, 10 open a short of 1.9%: judged as an
    # entry, and allowed by the policy. (Alpaca itself then refuses it: the parent's shares are
    # held by the leg; the lenient embedded venue takes it.)
    try:
        leg = str((await call(tc.replace_order_by_id, leg, ReplaceOrderRequest(qty=20))).id)
    except APIError as broker_refusal:
        assert "insufficient qty" in str(broker_refusal)
    decision = records(gateway, "replace.decision")[-1]
    assert decision["decision"] == "allow" and decision["role"] == "entry"
    # 30 would open a short of 3.8%: refused like any entry, before the broker sees it.
    error = await refused(tc.replace_order_by_id, leg, ReplaceOrderRequest(qty=30))
    assert error.status_code == 403 and "max_position_pct" in str(error)
    assert ledger.find(leg).is_open


# --- more than 500 orders ---------------------------------------------------------------

async def test_caps_hold_past_five_hundred_resting_orders(gateway_home, paper_broker_process):
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async def post(body):
                async with session.post(f"{gw.url}/v2/orders", json=body) as resp:
                    return resp.status, await resp.json()

            status, _ = await post({"symbol": "AAPL", "qty": AAPL_1_9_PCT, "side": "buy", "type": "limit",
                                    "limit_price": 150, "time_in_force": "gtc"})
            assert status == 200
            small = {"symbol": "ETH/USD", "qty": "0.0001", "side": "buy", "type": "limit", "limit_price": 100,
                     "time_in_force": "gtc"}
            for start in range(0, 600, 20):
                results = await asyncio.gather(*(post(small) for _ in range(20)))
                assert all(s == 200 for s, _ in results), results[:2]
            assert await gw.gateway.pipeline.reconcile()  # pages through all 601: nothing forgotten
            status, body = await post({"symbol": "AAPL", "qty": AAPL_1_9_PCT, "side": "buy", "type": "limit",
                                       "limit_price": 150, "time_in_force": "gtc"})
            assert status == 403 and "max_position_pct" in body["message"]
        # To the cent, against the broker's own lists: every open order valued like a new one.
        expected = Decimal(0)
        for o in await paper_broker_process.open_orders():
            mark = DEFAULT_MARKS[o["symbol"]]
            remaining = Decimal(o["qty"]) - Decimal(o["filled_qty"])
            expected += remaining * max(mark, Decimal(o["limit_price"] or 0))
        assert gw.gateway.portfolio.committed == expected
        assert len(gw.gateway.pipeline.ledger.open_orders()) == 601
    finally:
        await gw.gateway.stop()


# --- uncertain answers ------------------------------------------------------------------

async def test_an_order_lost_before_the_broker_is_held_until_proven_absent_then_released(proxied_gateway):
    gw, proxy, broker = proxied_gateway
    tc = client(gw)
    proxy.fail("POST", "/v2/orders", BEFORE)
    error = await refused(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=AAPL_1_9_PCT, side=OrderSide.BUY,
                                                             time_in_force=TimeInForce.DAY))
    assert error.status_code == 502  # uncertain, never 503 or 504
    # Until the gateway knows, the order counts: a second 1.9% does not fit beside it.
    second = await refused(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=AAPL_1_9_PCT, side=OrderSide.BUY,
                                                              time_in_force=TimeInForce.DAY))
    assert "max_position_pct" in str(second)
    ledger = gw.gateway.pipeline.ledger
    await wait_for(lambda: not ledger.uncertain_orders(), timeout=15)
    assert records(gw, "order.resolved")[-1]["outcome"] == "absent"
    placed = await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=AAPL_1_9_PCT, side=OrderSide.BUY,
                                                           time_in_force=TimeInForce.DAY))
    assert placed.client_order_id and len(await broker.orders()) == 1


@pytest.mark.parametrize("mode", [AFTER, GARBLE])
async def test_an_order_whose_answer_was_lost_is_counted_once_and_a_retry_is_the_same_order(proxied_gateway, mode):
    gw, proxy, broker = proxied_gateway
    tc = client(gw)
    proxy.fail("POST", "/v2/orders", mode)
    request = LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, limit_price=150,
                                time_in_force=TimeInForce.GTC, client_order_id="bot-retry-1")
    first = await call(tc.submit_order, request)  # resolved by client id: the order exists
    again = await call(tc.submit_order, request)  # the bot retries the same order
    assert str(first.id) == str(again.id)
    assert [o["client_order_id"] for o in await broker.orders()] == ["bot-retry-1"]
    assert gw.gateway.portfolio.book("AAPL").pending_buy_qty == 5
    assert gw.gateway.pipeline.ledger.get("bot-retry-1").phase is Phase.LIVE


async def test_a_reused_client_id_for_another_order_is_refused(gateway):
    tc = client(gateway)
    first = await call(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, limit_price=150,
                                                          time_in_force=TimeInForce.GTC, client_order_id="mine-1"))
    error = await refused(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                                              limit_price=150, time_in_force=TimeInForce.GTC,
                                                              client_order_id="mine-1"))
    assert error.status_code == 422 and "client_order_id must be unique" in str(error)
    same = await call(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, limit_price=150,
                                                         time_in_force=TimeInForce.GTC, client_order_id="mine-1"))
    assert str(same.id) == str(first.id)
    assert gateway.gateway.portfolio.book("AAPL").pending_buy_qty == 1


# --- every order at the broker maps to a decision ---------------------------------------

async def test_replaces_and_closes_carry_client_ids_named_in_their_decisions(gateway_home, paper_broker_process):
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    store_broker_key(gateway_home)
    gw = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        tc = client(gw)
        resting = await call(tc.submit_order, LimitOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                                                limit_price=150, time_in_force=TimeInForce.GTC))
        await call(tc.replace_order_by_id, str(resting.id), ReplaceOrderRequest(qty=3))
        await call(tc.submit_order, MarketOrderRequest(symbol="MSFT", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
        await wait_for(lambda: gw.gateway.portfolio.position("MSFT") == 2)
        await call(tc.close_position, "MSFT", ClosePositionRequest(qty="1"))
        decided = {r["client_order_id"] for kind in ("order.decision", "replace.decision", "close.decision")
                   for r in records(gw, kind) if r["decision"] == "allow"}
        at_broker = [o["client_order_id"] for o in await paper_broker_process.orders()]
        assert len(at_broker) == 4 and set(at_broker) <= decided
    finally:
        await gw.gateway.stop()


# --- a bot manages its own exits --------------------------------------------------------

@pytest.fixture(params=["paper", "alpaca"])
async def protected_gateway(request, default_policy_home):
    """The shipped default policy: crypto entries get a gateway stop."""
    if request.param == "paper":
        running = await start_gateway(default_policy_home, venue="paper")
        broker = None
    else:
        broker = request.getfixturevalue("paper_broker_process")
        await broker.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
        store_broker_key(default_policy_home)
        running = await start_gateway(default_policy_home, venue="alpaca", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


def open_orders(gw: RunningGateway) -> list:
    return gw.gateway.pipeline.ledger.open_orders()


async def test_a_bot_can_close_a_protected_position_and_nothing_is_left(protected_gateway):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.03", side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.GTC))  # $1,800: 1.8%
    await wait_for(lambda: gw.gateway.portfolio.position("BTC/USD") == Decimal("0.03"))
    await wait_for(lambda: [o.role.value for o in open_orders(gw)] == ["protective"])
    # A reduce-only exit of the whole position is an exit, not new exposure.
    await call(tc.close_position, "BTC/USD")
    await wait_for(lambda: gw.gateway.portfolio.position("BTC/USD") == 0)
    await gw.gateway.pipeline.protective.settle()
    await wait_for(lambda: open_orders(gw) == [])
    listed = await call(tc.get_orders, GetOrdersRequest(status="open"))
    assert listed == []
    assert records(gw, "close.decision")[-1]["role"] == "exit"


async def test_a_partial_close_leaves_a_stop_for_exactly_the_rest(protected_gateway):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.03", side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.GTC))
    await wait_for(lambda: [o.role.value for o in open_orders(gw)] == ["protective"])
    await call(tc.close_position, "BTC/USD", ClosePositionRequest(qty="0.01"))
    await wait_for(lambda: gw.gateway.portfolio.position("BTC/USD") == Decimal("0.02"))

    def stop_covers_the_rest():
        stops = [o for o in open_orders(gw) if o.role.value == "protective" and o.phase is Phase.LIVE]
        return sum((o.remaining for o in stops), Decimal(0)) == Decimal("0.02")

    await wait_for(stop_covers_the_rest)
    listed = await call(tc.get_orders, GetOrdersRequest(status="open", nested=True))
    sells = sum(Decimal(str(leg.qty)) - Decimal(str(leg.filled_qty))
                for o in listed for leg in [o, *(o.legs or [])] if leg.side == OrderSide.SELL and leg.status.value
                in ("new", "accepted", "held", "partially_filled"))
    assert sells == Decimal("0.02")


async def test_a_take_profit_on_a_protected_position_is_an_exit(protected_gateway):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.03", side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.GTC))
    await wait_for(lambda: [o.role.value for o in open_orders(gw)] == ["protective"])
    tp = await call(tc.submit_order, LimitOrderRequest(symbol="BTC/USD", qty="0.03", side=OrderSide.SELL,
                                                       limit_price=70000, time_in_force=TimeInForce.GTC))
    assert tp.status.value in ("new", "accepted")
    assert records(gw, "order.decision")[-1]["role"] == "exit"


# --- the account's request budget -------------------------------------------------------

async def test_an_order_costs_the_account_one_request_once_the_ledger_is_current(proxied_gateway):
    gw, proxy, _ = proxied_gateway
    ledger = gw.gateway.pipeline.ledger
    await wait_for(lambda: ledger.stream_live and ledger.reconciled_since_connect, timeout=10)
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    before = proxy.total()
    for n in range(6):
        side = OrderSide.SELL if n % 2 == 0 else OrderSide.BUY
        await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side=side, time_in_force=TimeInForce.DAY))
    # Six orders, six requests: fills come on the stream and are the freshest marks; no
    # snapshot, no price lookup, no order lookup of the gateway's own.
    assert proxy.total() - before == 6, proxy.log[before:]
    assert proxy.total("POST", "/v2/orders") >= 7


async def test_a_bot_retrying_an_unknown_symbol_costs_one_lookup(proxied_gateway):
    gw, proxy, _ = proxied_gateway
    tc = client(gw)
    for _ in range(5):
        error = await refused(tc.submit_order, MarketOrderRequest(symbol="ZZZZ", qty=1, side=OrderSide.BUY,
                                                                  time_in_force=TimeInForce.DAY))
        assert "unknown_symbol" in str(error)
    assert proxy.total("GET", "/v2/assets/ZZZZ") == 1


async def test_two_concurrent_orders_with_one_client_id_place_one_order(gateway):
    async with aiohttp.ClientSession(headers=gateway.headers) as session:
        async def post(qty):
            body = {"symbol": "AAPL", "qty": qty, "side": "buy", "type": "limit", "limit_price": 150,
                    "time_in_force": "gtc", "client_order_id": "twice"}
            async with session.post(f"{gateway.url}/v2/orders", json=body) as resp:
                return resp.status, await resp.json()

        results = await asyncio.gather(post(1), post(2))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 422], results
    assert gateway.gateway.portfolio.book("AAPL").pending_buy_qty in (1, 2)
    assert len([o for o in gateway.gateway.pipeline.ledger.open_orders() if o.client_order_id == "twice"]) == 1


# --- an unmodified bot's ordinary orders under the default policy ------------------------

async def broker_open_orders(gw: RunningGateway) -> list[tuple[str, Decimal]]:
    """(side, unfilled qty) of every open order the venue holds, legs included."""
    listed = await gw.gateway.venue.list_open_orders()
    out = []
    for order in listed:
        for one in [order, *order.legs]:
            if one.status.is_open:
                out.append((one.side.value, (one.qty or Decimal(0)) - one.filled_qty))
    return out


@pytest.mark.parametrize("request_kw, position", [
    ({"qty": 5}, Decimal(5)),  # a simple market order
    ({"notional": 500}, Decimal(2)),  # $500 of AAPL at $190: whole shares, to carry the stop
])
async def test_an_ordinary_stock_order_is_protected_and_leaves_nothing_behind(protected_gateway, request_kw, position):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                                   **request_kw))
    await wait_for(lambda: gw.gateway.portfolio.position("AAPL") == position)
    await gw.gateway.pipeline.protective.settle()
    assert await broker_open_orders(gw) == [("sell", position)]  # a stop for exactly the position
    await call(tc.close_position, "AAPL")
    await wait_for(lambda: gw.gateway.portfolio.position("AAPL") == 0)
    await gw.gateway.pipeline.protective.settle()
    await wait_for(lambda: open_orders(gw) == [])
    assert await broker_open_orders(gw) == []


async def test_a_crypto_order_is_protected_at_the_broker_for_exactly_the_position(protected_gateway):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.02", side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.GTC))
    await gw.gateway.pipeline.protective.settle()
    assert await broker_open_orders(gw) == [("sell", Decimal("0.02"))]


async def test_a_position_that_cannot_be_protected_is_recorded_alerted_and_takes_no_entries(
    default_policy_home, paper_broker_process, serve_app
):
    alerts: list[dict] = []

    async def hook(request):
        alerts.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    hook_url = await serve_app(app) + "/hook"
    configure(default_policy_home.home, webhook_url=hook_url)
    await paper_broker_process.set_prices({symbol: str(price) for symbol, price in DEFAULT_MARKS.items()})
    proxy = FaultyProxy(paper_broker_process.url)
    url = await serve_app(proxy.app())
    store_broker_key(default_policy_home)
    gw = await start_gateway(default_policy_home, venue="alpaca", upstream_url=url)
    try:
        tc = client(gw)
        proxy.fail("POST", "/v2/orders", PASS, REFUSE, REFUSE, REFUSE)  # the entry, then every stop
        await call(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.01", side=OrderSide.BUY,
                                                       time_in_force=TimeInForce.GTC))
        await gw.gateway.pipeline.protective.settle()
        assert records(gw, "protective.failed")[-1]["symbol"] == "BTC/USD"
        await wait_for(lambda: any(a.get("alert") == "position_unprotected" for a in alerts))
        error = await refused(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty="0.01", side=OrderSide.BUY,
                                                                  time_in_force=TimeInForce.GTC))
        assert "position_unprotected" in str(error)
        await call(tc.close_position, "BTC/USD")  # exits still pass
        await wait_for(lambda: gw.gateway.portfolio.position("BTC/USD") == 0)
    finally:
        await gw.gateway.stop()


async def test_an_option_position_has_its_stop_emulated_from_the_price_feed(default_policy_home, paper_broker_process):
    """Alpaca takes no stop orders for options: the gateway watches the price and closes the
    position when it crosses the stop (25% from the entry under the default policy)."""
    from datetime import date, timedelta

    contract = f"AAPL{date.today() + timedelta(days=40):%y%m%d}C00190000"
    await paper_broker_process.set_prices({**{s: str(p) for s, p in DEFAULT_MARKS.items()}, contract: "4"})
    store_broker_key(default_policy_home)
    gw = await start_gateway(default_policy_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        gw.gateway.pipeline.protective.emulate_poll_s = 0.1
        order = await call(client(gw).submit_order, MarketOrderRequest(symbol=contract, qty=1, side=OrderSide.BUY,
                                                                       time_in_force=TimeInForce.DAY))
        assert "emulates the stop from the price feed" in records(gw, "order.decision")[-1]["notes"][-1]
        assert order.legs in (None, [])  # nothing rests at the broker for it
        await wait_for(lambda: gw.gateway.portfolio.position(contract) == 1)
        await wait_for(lambda: contract in gw.gateway.pipeline.protective.emulated)
        await paper_broker_process.set_prices({contract: "3.5"})  # above the stop at 3: nothing happens
        await asyncio.sleep(0.5)
        assert gw.gateway.portfolio.position(contract) == 1
        await paper_broker_process.set_prices({contract: "2.9"})  # through the stop
        await wait_for(lambda: gw.gateway.portfolio.position(contract) == 0, timeout=10)
        trigger = records(gw, "protective.triggered")[-1]
        assert trigger["symbol"] == contract and Decimal(str(trigger["stop_price"])) == 3
    finally:
        await gw.gateway.stop()


async def test_a_cancelled_gateway_stop_is_placed_again(protected_gateway):
    gw = protected_gateway
    tc = client(gw)
    await call(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    await wait_for(lambda: [o.role.value for o in open_orders(gw)] == ["protective"])
    stop = open_orders(gw)[0]
    await call(tc.cancel_order_by_id, stop.venue_id)  # the bot removes the gateway's stop

    def protected_again():
        live = [o for o in open_orders(gw) if o.role.value == "protective" and o.venue_id not in (None, stop.venue_id)]
        return sum((o.remaining for o in live), Decimal(0)) == 3

    await wait_for(protected_again)
    await gw.gateway.pipeline.protective.settle()
    assert await broker_open_orders(gw) == [("sell", Decimal(3))]
