"""Binance order features bots use, through the gateway (--venue ccxt) in front of the futures
paper broker process, with unmodified clients: ccxt ``binanceusdm`` and binance-futures-connector.

- ``batchOrders``: each order judged, the batch decided in one step, per-order results as
  Binance returns them (order objects mixed with ``{"code", "msg"}``); an order that breaks a
  limit is refused alone and never reaches the broker.
- ``PUT /fapi/v1/order`` (amend): judged as a replace; an amend that breaks a limit is refused.
- postOnly / GTX: a post-only order that would take is expired, never filled.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest
from binance.um_futures import UMFutures

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault

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
        return placed["clientOrderId"]

    placed_id = await asyncio.to_thread(run)
    upstream = await broker.orders()
    assert placed_id in {o.get("clientOrderId") for o in upstream}
    assert not any(Decimal(o.get("origQty") or "0") == 1 for o in upstream)
