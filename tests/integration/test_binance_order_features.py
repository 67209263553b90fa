"""Binance order features bots use, through the gateway (--venue ccxt) in front of the futures
paper broker process, with unmodified clients: ccxt ``binanceusdm`` and binance-futures-connector.

- ``batchOrders``: each order judged, the batch decided in one step, per-order results as
  Binance returns them (order objects mixed with ``{"code", "msg"}``); an order that breaks a
  limit is refused alone and never reaches the broker.
- ``PUT /fapi/v1/order`` (amend): judged as a replace; an amend that breaks a limit is refused.
- postOnly / GTX: a post-only order that would take is expired, never filled.
- TAKE_PROFIT(_MARKET), closePosition stops and trailing activatePrice: exits judged as exits,
  forwarded to the broker's algoOrder endpoint, triggered by the paper broker like Binance.
- Every order-placing route is behind the replay guard.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import ccxt.async_support as ccxt
import pytest
from binance.um_futures import UMFutures

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault

from tests.adversarial.binance import send, signed

from .support import start_gateway
from .test_binance_paper_broker import BTC, binance_client, broker_process

WIRE = "BTCUSDT"
LIMIT_CODES = ("max_position_pct", "asset_class_allocation", "max_exposure_pct", "max_order_notional")


@pytest.fixture
def broker():
    with broker_process() as running:
        yield running


@pytest.fixture
async def gateway(gateway_home, broker):
    BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", broker.key, broker.secret)
    running = await start_gateway(gateway_home, venue="ccxt", upstream_url=broker.url)
    try:
        yield running
    finally:
        await running.gateway.stop()


@pytest.fixture
async def bot(gateway):
    exchange = binance_client(gateway.url, gateway.key_id, gateway.secret)
    try:
        await exchange.load_markets()
        await exchange.set_leverage(1, BTC)
        yield exchange
    finally:
        await exchange.close()


async def _broker_client_ids(broker) -> set[str]:
    return {o.get("clientOrderId") or o.get("clientAlgoId") for o in await broker.orders()}


async def test_ccxt_create_orders_is_judged_per_order(bot, broker):
    orders = [
        {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.01, "price": 50000, "params": {"clientOrderId": "b-ok-1"}},
        # 0.5 BTC at 50,000 is 25,000 notional on 100,000 equity: beyond the mechanics policy.
        {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.5, "price": 50000, "params": {"clientOrderId": "b-big"}},
        {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.011, "price": 51000, "params": {"clientOrderId": "b-ok-2"}},
    ]
    results = await bot.create_orders(orders)
    # ccxt sorts a batch's answer by time (a refused entry has none) and keeps a refused entry as
    # an order whose info is Binance's {"code", "msg"}.
    placed = {r["clientOrderId"]: r for r in results if r.get("clientOrderId")}
    (refused,) = [r for r in results if "code" in r["info"]]
    assert placed["b-ok-1"]["status"] == "open" and placed["b-ok-2"]["status"] == "open"
    assert refused["info"]["code"] == -2010
    assert any(code in refused["info"]["msg"] for code in LIMIT_CODES), refused["info"]
    ids = await _broker_client_ids(broker)
    assert {"b-ok-1", "b-ok-2"} <= ids and "b-big" not in ids


async def test_a_batch_takes_its_room_at_once(bot, broker):
    """Each order fits alone; together they pass the per-symbol cap, so the later ones are
    refused: the batch is judged with the earlier orders already counted."""
    orders = [
        {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.025, "price": 50000, "params": {"clientOrderId": f"room-{i}"}}
        for i in range(5)
    ]
    results = await bot.create_orders(orders)
    accepted = sorted(r["clientOrderId"] for r in results if r.get("status") == "open")
    refused = [r for r in results if "code" in r["info"]]
    assert accepted and refused and len(accepted) + len(refused) == 5
    assert accepted == [f"room-{i}" for i in range(len(accepted))]  # the first ones fit, the rest do not
    assert all(r["info"]["code"] == -2010 and "max_position_pct" in r["info"]["msg"] for r in refused)
    ids = await _broker_client_ids(broker)
    assert set(accepted) <= ids
    assert all(f"room-{i}" not in ids for i in range(len(accepted), 5))


async def test_ccxt_edit_order_is_judged_as_a_replace(bot, broker):
    resting = await bot.create_order(BTC, "limit", "buy", 0.01, 50000)
    edited = await bot.edit_order(resting["id"], BTC, "limit", "buy", 0.012, 50500)
    assert edited["status"] == "open" and edited["amount"] == 0.012 and edited["price"] == 50500
    open_now = await bot.fetch_open_orders(BTC)
    assert [(o["amount"], o["price"]) for o in open_now] == [(0.012, 50500)]
    with pytest.raises(ccxt.InvalidOrder) as info:
        await bot.edit_order(edited["id"], BTC, "limit", "buy", 0.5, 50500)
    assert any(code in str(info.value) for code in LIMIT_CODES)
    assert [(o["amount"], o["price"]) for o in await bot.fetch_open_orders(BTC)] == [(0.012, 50500)]


async def test_post_only_that_would_take_is_expired(bot, broker):
    maker = await bot.create_order(BTC, "limit", "buy", 0.01, 55000, {"postOnly": True})
    assert maker["status"] == "open" and maker["postOnly"] is True
    taker = await bot.create_order(BTC, "limit", "buy", 0.01, 61000, {"postOnly": True})
    assert taker["status"] == "expired" and taker["filled"] == 0
    assert await bot.fetch_positions() == []


async def test_binance_futures_connector_batch_and_modify(gateway, broker):
    client = UMFutures(key=gateway.key_id, secret=gateway.secret, base_url=gateway.url)

    def run():
        client.change_leverage(symbol=WIRE, leverage=1)
        results = client.new_batch_order(
            [
                {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000", "timeInForce": "GTC"},
                {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "50000", "timeInForce": "GTC"},
                {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "abc", "timeInForce": "GTC"},
                {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "49000", "timeInForce": "GTX"},
            ]
        )
        placed, too_big, malformed, post_only = results
        assert placed["status"] == "NEW" and Decimal(placed["origQty"]) == Decimal("0.01")
        assert too_big["code"] == -2010 and any(code in too_big["msg"] for code in LIMIT_CODES)
        assert malformed["code"] == -1014 and "price" in malformed["msg"]
        assert post_only["status"] == "NEW" and post_only["timeInForce"] == "GTX"
        amended = client.modify_order(
            symbol=WIRE, side="BUY", quantity="0.02", price="50100", orderId=placed["orderId"]
        )
        assert Decimal(amended["origQty"]) == Decimal("0.02") and Decimal(amended["price"]) == Decimal("50100")
        maker = client.new_order(symbol=WIRE, side="SELL", type="LIMIT", quantity="0.01", price="61000", timeInForce="GTX")
        assert maker["status"] == "NEW" and maker["timeInForce"] == "GTX"
        taker = client.new_order(symbol=WIRE, side="SELL", type="LIMIT", quantity="0.01", price="59000", timeInForce="GTX")
        assert taker["status"] == "EXPIRED" and Decimal(taker["executedQty"]) == 0
        return placed["clientOrderId"]

    placed_id = await asyncio.to_thread(run)
    upstream = await broker.orders()
    assert placed_id in {o.get("clientOrderId") for o in upstream}
    assert not any(Decimal(o.get("origQty") or "0") == 1 for o in upstream)


async def _until(predicate, timeout: float = 10.0):
    """Poll an async predicate until it holds (the gateway learns fills from the broker's stream)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _position(bot) -> float:
    return sum(p["contracts"] * (1 if p["side"] == "long" else -1) for p in await bot.fetch_positions([BTC]))


async def test_take_profit_market_is_an_exit_and_fires_on_a_rise(bot, broker):
    await bot.create_order(BTC, "market", "buy", 0.01)
    # Within the exit capacity: an exit without reduceOnly too.
    tp = await bot.create_order(BTC, "market", "sell", 0.01, None, {"takeProfitPrice": 62000})
    assert tp["status"] == "open" and tp["info"]["orderType"] == "TAKE_PROFIT_MARKET"
    assert tp["triggerPrice"] == 62000
    # Beyond the capacity it opens a short of 0.49: an entry, judged, refused by the limits.
    with pytest.raises(ccxt.InvalidOrder) as info:
        await bot.create_order(BTC, "market", "sell", 0.5, None, {"takeProfitPrice": 62000})
    assert any(code in str(info.value) for code in LIMIT_CODES)
    await broker.set_prices({"BTCUSDT": "59000"})  # a fall: a take-profit sell does not fire
    assert (await bot.fetch_order(tp["id"], BTC, {"trigger": True}))["status"] == "open"
    await broker.set_prices({"BTCUSDT": "62500"})
    await _until(lambda: _flat(bot))
    assert (await bot.fetch_order(tp["id"], BTC, {"trigger": True}))["status"] == "closed"


async def _flat(bot) -> bool:
    return await _position(bot) == 0


async def test_take_profit_limit(bot, broker):
    await bot.create_order(BTC, "market", "buy", 0.01)
    tp = await bot.create_order(BTC, "limit", "sell", 0.01, 61900, {"takeProfitPrice": 62000, "reduceOnly": True})
    assert tp["status"] == "open" and tp["info"]["orderType"] == "TAKE_PROFIT" and tp["price"] == 61900
    await broker.set_prices({"BTCUSDT": "62100"})
    await _until(lambda: _flat(bot))


async def test_close_position_stop_covers_the_whole_position(bot, broker):
    with pytest.raises(ccxt.InvalidOrder) as info:  # flat: nothing to close
        await bot.create_order(BTC, "market", "sell", None, None, {"triggerPrice": 58000, "closePosition": True})
    assert "-2010" in str(info.value) and "closePosition" in str(info.value)
    await bot.create_order(BTC, "market", "buy", 0.01)
    await bot.create_order(BTC, "market", "buy", 0.005)
    stop = await bot.create_order(BTC, "market", "sell", None, None, {"triggerPrice": 58000, "closePosition": True})
    assert stop["status"] == "open" and stop["info"]["closePosition"] is True
    assert stop["amount"] == 0.015  # judged for what it closes: the whole position
    # A buy closePosition on a long would add to it: refused.
    with pytest.raises(ccxt.InvalidOrder):
        await bot.create_order(BTC, "market", "buy", None, None, {"triggerPrice": 65000, "closePosition": True})
    await broker.set_prices({"BTCUSDT": "57500"})
    await _until(lambda: _flat(bot))
    upstream = [o for o in await broker.orders() if o.get("clientAlgoId") == stop["clientOrderId"]]
    assert upstream and upstream[0]["closePosition"] is True


async def test_trailing_stop_waits_for_its_activation_price(bot, broker):
    await bot.create_order(BTC, "market", "buy", 0.01)
    trail = await bot.create_order(
        BTC, "market", "sell", 0.01, None, {"trailingPercent": 1, "activationPrice": 62000, "reduceOnly": True}
    )
    assert trail["status"] == "open" and trail["info"]["activatePrice"] == "62000"
    await broker.set_prices({"BTCUSDT": "59000"})  # 1.7% down, but not yet active: no fill
    assert (await bot.fetch_order(trail["id"], BTC, {"trigger": True}))["status"] == "open"
    assert await _position(bot) == 0.01
    await broker.set_prices({"BTCUSDT": "62000"})  # active: trails from 62,000 (stop 61,380)
    await broker.set_prices({"BTCUSDT": "61300"})
    await _until(lambda: _flat(bot))


def test_the_paper_broker_serves_take_profit_and_close_position_to_the_connector(broker):
    client = UMFutures(key=broker.key, secret=broker.secret, base_url=broker.url)
    client.new_order(symbol=WIRE, side="BUY", type="MARKET", quantity="0.02")
    tp = client.sign_request(
        "POST",
        "/fapi/v1/algoOrder",
        {"algoType": "CONDITIONAL", "symbol": WIRE, "side": "SELL", "type": "TAKE_PROFIT_MARKET",
         "triggerPrice": "63000", "closePosition": "true"},
    )
    assert tp["orderType"] == "TAKE_PROFIT_MARKET" and tp["closePosition"] is True and tp["algoStatus"] == "NEW"
    assert Decimal(tp["quantity"]) == Decimal("0.02")
    placed, malformed = client.new_batch_order(
        [
            {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000", "timeInForce": "GTX"},
            {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "-1", "price": "50000", "timeInForce": "GTC"},
        ]
    )
    assert placed["status"] == "NEW" and placed["timeInForce"] == "GTX" and malformed["code"] == -1014
    amended = client.modify_order(symbol=WIRE, side="BUY", quantity="0.03", price="50500", orderId=placed["orderId"])
    assert Decimal(amended["origQty"]) == Decimal("0.03") and amended["status"] == "NEW"
    # The plain order endpoint answers for conditional types the way Binance now does: refused.
    try:
        client.new_order(symbol=WIRE, side="SELL", type="TAKE_PROFIT_MARKET", stopPrice="63000", quantity="0.02")
    except Exception as exc:  # noqa: BLE001 - binance.error.ClientError
        assert getattr(exc, "status_code", None) == 400
    else:
        raise AssertionError("a conditional order was accepted on /fapi/v1/order")


@pytest.fixture
async def protected_bot(default_policy_home, broker):
    """The shipped default policy: every crypto entry gets a gateway-owned protective stop."""
    BrokerKeys(Vault.open(Home.at(default_policy_home.home))).set("ccxt", broker.key, broker.secret)
    running = await start_gateway(default_policy_home, venue="ccxt", upstream_url=broker.url)
    exchange = binance_client(running.url, running.key_id, running.secret)
    try:
        await exchange.load_markets()
        await exchange.set_leverage(1, BTC)
        yield exchange
    finally:
        await exchange.close()
        await running.gateway.stop()


async def test_under_the_default_policy_a_bots_own_exits_pass_as_exits(protected_bot, broker):
    bot = protected_bot
    entry = await bot.create_order(BTC, "market", "buy", 0.01)
    assert "attached a protective stop" in entry["info"].get("gatewayNote", "")
    # A closePosition stop covers the whole position: an exit, never asked for a stop of its own.
    stop = await bot.create_order(BTC, "market", "sell", None, None, {"triggerPrice": 57000, "closePosition": True})
    assert stop["status"] == "open" and "gatewayNote" not in stop["info"]
    await bot.cancel_order(stop["id"], BTC, {"trigger": True})
    tp = await bot.create_order(BTC, "market", "sell", 0.01, None, {"takeProfitPrice": 62000, "reduceOnly": True})
    assert tp["status"] == "open" and "gatewayNote" not in tp["info"]
    await broker.set_prices({"BTCUSDT": "62500"})
    await _until(lambda: _flat(bot))
    # Flat: the gateway's own stop is cancelled, nothing is left at the broker.
    await _until(lambda: _no_open_orders(broker))


async def _no_open_orders(broker) -> bool:
    return not [o for o in await broker.orders() if (o.get("status") or o.get("algoStatus")) == "NEW"]


async def test_a_replayed_batch_or_amend_is_refused_and_not_forwarded(gateway, broker):
    order = {"symbol": WIRE, "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000", "timeInForce": "GTC"}
    async with aiohttp.ClientSession() as session:
        await send(session, "POST", f"{gateway.url}/fapi/v1/leverage", gateway.key_id, signed({"symbol": WIRE, "leverage": 1}, gateway.secret))
        batch = signed({"batchOrders": json.dumps([order, {**order, "price": "50001"}])}, gateway.secret, recvWindow=60_000)
        status, first = await send(session, "POST", f"{gateway.url}/fapi/v1/batchOrders", gateway.key_id, batch)
        assert status == 200 and [o["status"] for o in first] == ["NEW", "NEW"]
        status, again = await send(session, "POST", f"{gateway.url}/fapi/v1/batchOrders", gateway.key_id, batch)
        assert (status, again["code"]) == (401, -1022)
        amend = signed(
            {"symbol": WIRE, "side": "BUY", "quantity": "0.02", "price": "50100", "orderId": first[0]["orderId"]},
            gateway.secret,
            recvWindow=60_000,
        )
        status, amended = await send(session, "PUT", f"{gateway.url}/fapi/v1/order", gateway.key_id, amend)
        assert status == 200 and amended["origQty"] == "0.02"
        status, again = await send(session, "PUT", f"{gateway.url}/fapi/v1/order", gateway.key_id, amend)
        assert (status, again["code"]) == (401, -1022)
        status, duplicate = await send(
            session,
            "POST",
            f"{gateway.url}/fapi/v1/batchOrders",
            gateway.key_id,
            signed({"batchOrders": json.dumps([{**order, "quantity": "0.002", "newClientOrderId": "same"}] * 2)}, gateway.secret),
        )
        assert status == 200, duplicate  # a client id twice in one batch: the second is refused
        assert duplicate[0]["clientOrderId"] == "same" and duplicate[1]["code"] == -2010
    upstream = await broker.orders()
    assert sum(1 for o in upstream if o.get("clientOrderId") == "same") == 1
    assert len(upstream) == 4  # two from the batch, the amended one, the duplicate's first
