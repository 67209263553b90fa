"""The paper engine's futures mode (behind the Binance futures paper broker): shorts, leverage,
margin instead of Reg-T buying power, margin modes. Cash mode is unchanged (test_paper_engine)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.errors import InsufficientFunds, InvalidRequest, NotFound, OrderRejected
from gateway.model import AssetClass, OrderIntent, OrderType, Side, TimeInForce
from gateway.venues.paper import PaperVenue
from gateway.venues.paper_engine import DEFAULT_FUTURES_LEVERAGE, FUTURES_MARKS, PaperEngine

D = Decimal


def market(symbol: str, side: Side, qty: str) -> OrderIntent:
    return OrderIntent(symbol, AssetClass.CRYPTO, side, OrderType.MARKET, TimeInForce.GTC, qty=D(qty))


@pytest.fixture
def engine() -> PaperEngine:
    return PaperEngine(starting_equity=D(10000), seed_marks=True, futures=True)


def test_seed_marks_and_defaults(engine):
    assert engine.marks() == FUTURES_MARKS
    assert engine.get_leverage("BTC/USDT") == DEFAULT_FUTURES_LEVERAGE == 1
    assert engine.get_margin_mode("BTC/USDT") == "cross"
    account = engine.get_account()
    assert (account.equity, account.cash, account.buying_power, account.currency) == (D(10000), D(10000), D(10000), "USDT")


def test_crypto_can_be_shorted(engine):
    order = engine.submit_order(market("ETH/USDT", Side.SELL, "1"))
    assert order.filled_qty == D(1)
    assert engine.get_position("ETH/USDT").qty == D(-1)
    assert engine.get_asset("ETH/USDT").shortable
    assert not PaperEngine(seed_marks=True).get_asset("BTC/USD").shortable  # cash mode is unchanged


def test_margin_is_notional_over_leverage(engine):
    with pytest.raises(InsufficientFunds):
        engine.submit_order(market("BTC/USDT", Side.BUY, "0.2"))  # 12,000 at 1x on 10,000
    assert engine.set_leverage("BTC/USDT", 4) == 4
    engine.submit_order(market("BTC/USDT", Side.BUY, "0.2"))  # 3,000 of margin at 4x
    account = engine.get_account()
    assert account.initial_margin == D(3000) and account.buying_power == D(7000)
    assert account.cash == D(10000) and account.equity == D(10000)  # wallet, before unrealised P&L
    engine.set_price("BTC/USDT", D(61000))
    account = engine.get_account()
    assert account.equity == D(10200) and account.cash == D(10000)
    with pytest.raises(InsufficientFunds):  # 12,200 of margin at 1x would exceed equity
        engine.set_leverage("BTC/USDT", 1)
    assert engine.get_leverage("BTC/USDT") == 4


@pytest.mark.parametrize("leverage", [0, 126, True, 2.5, "3"])
def test_leverage_must_be_a_whole_number_in_range(engine, leverage):
    with pytest.raises(InvalidRequest):
        engine.set_leverage("BTC/USDT", leverage)


def test_settings_need_a_known_symbol_and_a_futures_account(engine):
    with pytest.raises(NotFound):
        engine.set_leverage("NOPE/USDT", 2)
    with pytest.raises(NotFound):
        engine.set_margin_mode("AAPL", "cross")
    cash = PaperEngine(seed_marks=True)
    with pytest.raises(OrderRejected):
        cash.set_leverage("BTC/USD", 2)


def test_margin_mode(engine):
    engine.set_margin_mode("BTC/USDT", "isolated")
    assert engine.get_margin_mode("BTC/USDT") == "isolated"
    with pytest.raises(InvalidRequest):
        engine.set_margin_mode("BTC/USDT", "portfolio")
    engine.submit_order(market("BTC/USDT", Side.BUY, "0.01"))
    engine.set_margin_mode("BTC/USDT", "isolated")  # unchanged: fine
    with pytest.raises(OrderRejected):
        engine.set_margin_mode("BTC/USDT", "cross")  # not with a position open


async def test_paper_venue_passes_futures_settings_through():
    venue = PaperVenue(starting_equity=D(1000), seed_marks=True, futures=True)
    assert await venue.set_leverage("ETH/USDT", 3) == 3 and await venue.get_leverage("ETH/USDT") == 3
    await venue.set_margin_mode("ETH/USDT", "isolated")
    assert await venue.get_margin_mode("ETH/USDT") == "isolated"
    markets = {m.asset.symbol: m for m in await venue.list_markets()}
    assert markets["BTC/USDT"].step_size == D("0.001") and markets["BTC/USDT"].max_leverage == 125
    cash = PaperVenue(seed_marks=True)
    assert await cash.get_leverage("BTC/USD") == 1 and await cash.get_margin_mode("BTC/USD") == "cross"
    with pytest.raises(OrderRejected):
        await cash.set_leverage("BTC/USD", 2)
