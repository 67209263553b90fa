"""The embedded paper broker: one focused test per behaviour."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from gateway.errors import InsufficientFunds, InvalidRequest, NotFound, OrderRejected
from gateway.model import (
    AssetClass,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    classify_symbol,
)
from gateway.venues.paper_engine import DEFAULT_MARKS, PaperEngine

OPTION = "AAPL250117C00190000"


class FakeClock:
    def __init__(self):
        self.now = datetime(2025, 1, 6, 15, 0, tzinfo=timezone.utc)  # a Monday

    def __call__(self):
        return self.now

    def advance(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def engine(clock):
    return PaperEngine(now=clock)


def intent(symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, tif=TimeInForce.DAY, **kw):
    if "qty" not in kw and "notional" not in kw:
        kw["qty"] = D(1)
    return OrderIntent(
        symbol=symbol,
        asset_class=classify_symbol(symbol),
        side=side,
        type=type,
        time_in_force=tif,
        **kw,
    )


def buy(engine, symbol="AAPL", qty="1", **kw):
    return engine.submit_order(intent(symbol, Side.BUY, qty=D(qty), **kw))


def sell(engine, symbol="AAPL", qty="1", **kw):
    return engine.submit_order(intent(symbol, Side.SELL, qty=D(qty), **kw))


def limit(engine, side, price, symbol="AAPL", qty="1", **kw):
    return engine.submit_order(intent(symbol, side, OrderType.LIMIT, qty=D(qty), limit_price=D(price), **kw))


def status(engine, order):
    return engine.get_order(order.id).status


# ---------------------------------------------------------------------------------------
# Account basics and marks


def test_new_account_is_all_cash_with_2x_buying_power(engine):
    account = engine.get_account()
    assert account.equity == account.cash == account.last_equity == D(100000)
    assert account.buying_power == D(200000)
    assert account.long_market_value == account.short_market_value == 0
    assert engine.list_positions() == []


def test_starting_equity_is_configurable():
    assert PaperEngine(starting_equity=D(2500)).get_account().equity == D(2500)


def test_account_id_is_a_stable_uuid(engine):
    first = engine.get_account().id
    uuid.UUID(first)
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    assert engine.get_account().id == first


def test_marks_are_empty_unless_seeded():
    assert PaperEngine().marks() == {}
    seeded = PaperEngine(seed_marks=True)
    assert seeded.marks() == DEFAULT_MARKS
    assert {"AAPL", "MSFT", "SPY", "BTC/USD", "ETH/USD"} <= set(DEFAULT_MARKS)


@pytest.mark.parametrize("bad", [D(0), D(-1), D("NaN"), D("Infinity"), float("nan"), True])
def test_set_prices_rejects_bad_prices(engine, bad):
    with pytest.raises(InvalidRequest):
        engine.set_prices({"AAPL": bad})
    assert engine.marks() == {}


def test_set_prices_is_all_or_nothing(engine):
    with pytest.raises(InvalidRequest):
        engine.set_prices({"AAPL": D(100), "not a symbol": D(1)})
    assert engine.marks() == {}


# ---------------------------------------------------------------------------------------
# Market and notional orders


def test_market_buy_fills_at_mark_and_moves_cash(engine):
    engine.set_prices({"AAPL": D(150)})
    order = buy(engine, qty="10")
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == D(10) and order.filled_avg_price == D(150)
    assert order.filled_at is not None
    position = engine.get_position("AAPL")
    assert position.qty == D(10) and position.avg_entry_price == D(150)
    assert engine.get_account().cash == D(100000) - D(1500)


def test_market_order_without_mark_is_rejected_and_not_recorded(engine):
    with pytest.raises(OrderRejected, match="no price for AAPL"):
        buy(engine)
    assert engine.list_orders(OrderQuery(status="all")) == []


def test_notional_order_buys_fractional_qty(engine):
    engine.set_prices({"AAPL": D(3)})
    order = engine.submit_order(intent(notional=D(10)))
    assert order.status is OrderStatus.FILLED
    assert order.qty is None and order.notional == D(10)
    assert order.filled_qty == D("3.333333333")  # 9 dp, rounded down
    assert engine.get_position("AAPL").qty == D("3.333333333")
    assert engine.get_account().cash == D(100000) - D("9.999999999")


def test_notional_is_only_for_market_orders(engine):
    with pytest.raises(InvalidRequest, match="notional"):
        engine.submit_order(intent(type=OrderType.LIMIT, notional=D(10), limit_price=D(1)))


@pytest.mark.parametrize("amounts", [dict(qty=D(1), notional=D(1)), dict(qty=None)])
def test_exactly_one_of_qty_and_notional(engine, amounts):
    engine.set_prices({"AAPL": D(1)})
    with pytest.raises(InvalidRequest, match="exactly one"):
        engine.submit_order(intent(**amounts))


@pytest.mark.parametrize("qty", [D(0), D(-1), D("NaN"), D("1e10")])
def test_bad_quantities_are_invalid(engine, qty):
    engine.set_prices({"AAPL": D(1)})
    with pytest.raises(InvalidRequest):
        engine.submit_order(intent(qty=qty))


def test_unknown_symbol_is_invalid(engine):
    with pytest.raises(InvalidRequest, match="unknown symbol"):
        engine.submit_order(intent(symbol="aapl"))


def test_prices_that_do_not_belong_to_the_type_are_invalid(engine):
    engine.set_prices({"AAPL": D(1)})
    with pytest.raises(InvalidRequest, match="limit_price"):
        engine.submit_order(intent(limit_price=D(1)))
    with pytest.raises(InvalidRequest, match="limit_price is required"):
        engine.submit_order(intent(type=OrderType.LIMIT))
    with pytest.raises(InvalidRequest, match="stop_price is required"):
        engine.submit_order(intent(type=OrderType.STOP))


# ---------------------------------------------------------------------------------------
# Limit, stop, stop-limit, trailing stop


def test_marketable_limit_buy_fills_at_the_mark(engine):
    engine.set_prices({"AAPL": D(100)})
    order = limit(engine, Side.BUY, "105")
    assert order.status is OrderStatus.FILLED and order.filled_avg_price == D(100)


def test_resting_limit_buy_fills_at_its_limit_when_price_falls_through(engine):
    engine.set_prices({"AAPL": D(100)})
    order = limit(engine, Side.BUY, "95")
    assert order.status is OrderStatus.NEW
    engine.set_prices({"AAPL": D("96")})
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D("90")})
    filled = engine.get_order(order.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_avg_price == D(95)


def test_resting_limit_sell_fills_when_mark_reaches_limit(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="2")
    order = limit(engine, Side.SELL, "110", qty="2")
    assert order.status is OrderStatus.NEW
    engine.set_prices({"AAPL": D(110)})
    assert engine.get_order(order.id).filled_avg_price == D(110)
    with pytest.raises(NotFound):
        engine.get_position("AAPL")


def test_limit_order_without_a_mark_rests(engine):
    order = limit(engine, Side.BUY, "50")
    assert order.status is OrderStatus.NEW
    engine.set_prices({"AAPL": D(49)})
    assert status(engine, order) is OrderStatus.FILLED


def test_stop_buy_triggers_at_or_above_stop_and_fills_at_mark(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(intent(type=OrderType.STOP, stop_price=D(105)))
    engine.set_prices({"AAPL": D(104)})
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(107)})
    filled = engine.get_order(order.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_avg_price == D(107)


def test_stop_sell_triggers_at_or_below_stop(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    order = engine.submit_order(intent(side=Side.SELL, type=OrderType.STOP, stop_price=D(95)))
    engine.set_prices({"AAPL": D(96)})
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(94)})
    assert engine.get_order(order.id).filled_avg_price == D(94)


def test_stop_limit_becomes_a_limit_once_triggered(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(intent(type=OrderType.STOP_LIMIT, stop_price=D(105), limit_price=D(106)))
    engine.set_prices({"AAPL": D(110)})  # gaps through the stop and past the limit
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(104)})  # below the stop now, but the order is a live limit
    filled = engine.get_order(order.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_avg_price == D(106)


def test_stop_limit_marketable_at_trigger_fills_at_mark(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(intent(type=OrderType.STOP_LIMIT, stop_price=D(105), limit_price=D(106)))
    engine.set_prices({"AAPL": D("105.5")})
    assert engine.get_order(order.id).filled_avg_price == D("105.5")


def test_trailing_stop_sell_follows_the_high_water_mark(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    order = engine.submit_order(intent(side=Side.SELL, type=OrderType.TRAILING_STOP, trail_price=D(5)))
    assert order.hwm == D(100) and order.stop_price == D(95)
    engine.set_prices({"AAPL": D(120)})
    moved = engine.get_order(order.id)
    assert moved.hwm == D(120) and moved.stop_price == D(115)
    engine.set_prices({"AAPL": D(116)})
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(114)})
    filled = engine.get_order(order.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_avg_price == D(114)


def test_trailing_stop_percent(engine):
    engine.set_prices({"AAPL": D(200)})
    buy(engine)
    order = engine.submit_order(intent(side=Side.SELL, type=OrderType.TRAILING_STOP, trail_percent=D(10)))
    assert order.stop_price == D(180)
    engine.set_prices({"AAPL": D(181)})
    assert status(engine, order) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(180)})
    assert status(engine, order) is OrderStatus.FILLED


def test_trailing_stop_buy_follows_the_low_water_mark(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(intent(type=OrderType.TRAILING_STOP, trail_price=D(2)))
    engine.set_prices({"AAPL": D(90)})
    moved = engine.get_order(order.id)
    assert moved.hwm == D(90) and moved.stop_price == D(92)
    engine.set_prices({"AAPL": D(92)})
    assert engine.get_order(order.id).filled_avg_price == D(92)


def test_trailing_stop_needs_exactly_one_trail(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest, match="exactly one"):
        engine.submit_order(intent(type=OrderType.TRAILING_STOP, trail_price=D(1), trail_percent=D(1)))
    with pytest.raises(InvalidRequest, match="below 100"):
        engine.submit_order(intent(type=OrderType.TRAILING_STOP, trail_percent=D(100)))


def test_a_price_move_only_matches_that_symbols_orders(engine):
    engine.set_prices({"AAPL": D(100), "MSFT": D(100)})
    trail = engine.submit_order(intent("MSFT", type=OrderType.TRAILING_STOP, trail_price=D(5)))
    engine.set_prices({"AAPL": D(50)})
    assert engine.get_order(trail.id).hwm == D(100)


# ---------------------------------------------------------------------------------------
# Time in force


def test_ioc_limit_that_cannot_fill_is_canceled(engine):
    engine.set_prices({"AAPL": D(100)})
    order = limit(engine, Side.BUY, "90", tif=TimeInForce.IOC)
    assert order.status is OrderStatus.CANCELED and order.filled_qty == 0
    assert engine.list_orders(OrderQuery(status="open")) == []


def test_fok_limit_that_cannot_fill_is_canceled(engine):
    engine.set_prices({"AAPL": D(100)})
    assert limit(engine, Side.BUY, "90", tif=TimeInForce.FOK).status is OrderStatus.CANCELED
    assert limit(engine, Side.BUY, "101", tif=TimeInForce.FOK).status is OrderStatus.FILLED


def test_gtc_limit_rests(engine):
    engine.set_prices({"AAPL": D(100)})
    assert limit(engine, Side.BUY, "90", tif=TimeInForce.GTC).status is OrderStatus.NEW


def test_ioc_is_not_allowed_for_stops(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest, match="ioc"):
        engine.submit_order(intent(type=OrderType.STOP, stop_price=D(110), tif=TimeInForce.IOC))


# ---------------------------------------------------------------------------------------
# Brackets, OCO, OTO


def bracket(engine, entry_limit=None, tp="110", sl="90", sl_limit=None, side=Side.BUY, qty="1"):
    kind = OrderType.LIMIT if entry_limit else OrderType.MARKET
    return engine.submit_order(
        intent(
            side=side,
            type=kind,
            qty=D(qty),
            limit_price=D(entry_limit) if entry_limit else None,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfit(D(tp)),
            stop_loss=StopLoss(D(sl), D(sl_limit) if sl_limit else None),
        )
    )


def test_bracket_legs_are_held_until_the_entry_fills(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="99")
    assert order.status is OrderStatus.NEW
    tp, sl = order.legs
    assert (tp.type, tp.limit_price, tp.side) == (OrderType.LIMIT, D(110), Side.SELL)
    assert (sl.type, sl.stop_price, sl.side) == (OrderType.STOP, D(90), Side.SELL)
    assert tp.status is sl.status is OrderStatus.HELD
    engine.set_prices({"AAPL": D(115)})  # would fill the take-profit leg if it were live
    legs = engine.get_order(order.id, nested=True).legs
    assert [leg.status for leg in legs] == [OrderStatus.HELD, OrderStatus.HELD]
    engine.set_prices({"AAPL": D(98)})  # entry fills at its limit; the legs go live
    legs = engine.get_order(order.id, nested=True).legs
    assert engine.get_order(order.id).filled_avg_price == D(99)
    assert [leg.status for leg in legs] == [OrderStatus.NEW, OrderStatus.NEW]
    assert engine.get_position("AAPL").qty == D(1)


def test_bracket_legs_that_are_marketable_on_release_fill_at_once(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="99")
    engine.set_prices({"AAPL": D(85)})  # entry fills at 99, then the stop leg is already through
    tp, sl = engine.get_order(order.id, nested=True).legs
    assert sl.status is OrderStatus.FILLED and sl.filled_avg_price == D(85)
    assert tp.status is OrderStatus.CANCELED
    assert engine.realized_pl("AAPL") == D(-14)


def test_bracket_take_profit_fill_cancels_the_stop(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine)
    assert [leg.status for leg in order.legs] == [OrderStatus.NEW, OrderStatus.NEW]
    engine.set_prices({"AAPL": D(111)})
    tp, sl = engine.get_order(order.id, nested=True).legs
    assert tp.status is OrderStatus.FILLED and tp.filled_avg_price == D(110)
    assert sl.status is OrderStatus.CANCELED
    assert engine.realized_pl("AAPL") == D(10)
    assert engine.list_positions() == []


def test_bracket_stop_loss_fill_cancels_the_take_profit(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine)
    engine.set_prices({"AAPL": D(89)})
    tp, sl = engine.get_order(order.id, nested=True).legs
    assert sl.status is OrderStatus.FILLED and sl.filled_avg_price == D(89)
    assert tp.status is OrderStatus.CANCELED
    assert engine.realized_pl() == D(-11)


def test_bracket_stop_loss_can_be_a_stop_limit(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, sl="90", sl_limit="89")
    assert order.legs[1].type is OrderType.STOP_LIMIT and order.legs[1].limit_price == D(89)


def test_sell_bracket_has_exits_the_other_way_round(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, side=Side.SELL, tp="90", sl="110")
    assert [leg.side for leg in order.legs] == [Side.BUY, Side.BUY]
    assert engine.get_position("AAPL").qty == D(-1)


@pytest.mark.parametrize(
    "kw",
    [
        dict(take_profit=TakeProfit(D(110))),  # no stop_loss
        dict(take_profit=TakeProfit(D(90)), stop_loss=StopLoss(D(110))),  # inverted for a buy
        dict(take_profit=TakeProfit(D(110)), stop_loss=StopLoss(D(101))),  # stop above entry
    ],
)
def test_invalid_brackets_are_refused(engine, kw):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest):
        engine.submit_order(intent(order_class=OrderClass.BRACKET, **kw))
    assert engine.list_orders(OrderQuery(status="all")) == []


def test_bracket_must_be_day_or_gtc(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest, match="day or gtc"):
        engine.submit_order(
            intent(
                tif=TimeInForce.IOC,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfit(D(110)),
                stop_loss=StopLoss(D(90)),
            )
        )


def test_take_profit_on_a_simple_order_is_invalid(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest):
        engine.submit_order(intent(take_profit=TakeProfit(D(110))))


def test_canceling_a_bracket_entry_cancels_its_held_legs(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="95")
    engine.cancel_order(order.id)
    nested = engine.get_order(order.id, nested=True)
    assert nested.status is OrderStatus.CANCELED
    assert [leg.status for leg in nested.legs] == [OrderStatus.CANCELED] * 2


def test_canceling_one_bracket_exit_cancels_the_other(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine)
    engine.cancel_order(order.legs[0].id)
    assert status(engine, order.legs[1]) is OrderStatus.CANCELED


def oco(engine, tp="110", sl="90", sl_limit=None, side=Side.SELL):
    return engine.submit_order(
        intent(
            side=side,
            type=OrderType.LIMIT,
            order_class=OrderClass.OCO,
            take_profit=TakeProfit(D(tp)),
            stop_loss=StopLoss(D(sl), D(sl_limit) if sl_limit else None),
        )
    )


def test_oco_is_a_limit_with_a_live_stop_leg(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    order = oco(engine)
    assert order.type is OrderType.LIMIT and order.limit_price == D(110)
    assert order.order_class is OrderClass.OCO and order.status is OrderStatus.NEW
    (stop,) = order.legs
    assert stop.type is OrderType.STOP and stop.status is OrderStatus.NEW and stop.side is Side.SELL


def test_oco_stop_fill_cancels_the_limit(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    order = oco(engine)
    engine.set_prices({"AAPL": D(88)})
    assert status(engine, order.legs[0]) is OrderStatus.FILLED
    assert status(engine, order) is OrderStatus.CANCELED
    assert engine.list_positions() == []


def test_oco_limit_fill_cancels_the_stop(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    order = oco(engine)
    engine.set_prices({"AAPL": D(112)})
    assert engine.get_order(order.id).filled_avg_price == D(110)
    assert status(engine, order.legs[0]) is OrderStatus.CANCELED


def test_oco_validation(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest, match="exit prices"):
        oco(engine, tp="90", sl="110")  # a sell OCO takes profit above the stop
    with pytest.raises(InvalidRequest, match="type limit"):
        engine.submit_order(
            intent(order_class=OrderClass.OCO, take_profit=TakeProfit(D(90)), stop_loss=StopLoss(D(110)))
        )


def test_oto_releases_its_single_leg_when_the_entry_fills(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(
        intent(type=OrderType.LIMIT, limit_price=D(98), order_class=OrderClass.OTO, stop_loss=StopLoss(D(90)))
    )
    (leg,) = order.legs
    assert leg.status is OrderStatus.HELD and leg.type is OrderType.STOP
    engine.set_prices({"AAPL": D(97)})
    assert status(engine, leg) is OrderStatus.NEW
    engine.set_prices({"AAPL": D(89)})
    assert status(engine, leg) is OrderStatus.FILLED
    assert engine.list_positions() == []


def test_oto_needs_exactly_one_exit(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest, match="exactly one"):
        engine.submit_order(
            intent(order_class=OrderClass.OTO, take_profit=TakeProfit(D(110)), stop_loss=StopLoss(D(90)))
        )


# ---------------------------------------------------------------------------------------
# Positions and P&L


def test_adding_averages_the_entry_price(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="1")
    engine.set_prices({"AAPL": D(130)})
    buy(engine, qty="2")
    assert engine.get_position("AAPL").avg_entry_price == D(120)


def test_reducing_keeps_the_entry_price_and_realises_pnl(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="10")
    engine.set_prices({"AAPL": D(105)})
    sell(engine, qty="4")
    position = engine.get_position("AAPL")
    assert position.qty == D(6) and position.avg_entry_price == D(100)
    assert engine.realized_pl("AAPL") == D(20)
    assert position.unrealized_pl == D(30)


def test_flipping_through_zero_resets_the_entry_price(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="2")
    engine.set_prices({"AAPL": D(90)})
    sell(engine, qty="5")
    position = engine.get_position("AAPL")
    assert position.qty == D(-3) and position.avg_entry_price == D(90)
    assert engine.realized_pl("AAPL") == D(-20)


def test_a_position_at_zero_disappears(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="3")
    sell(engine, qty="3")
    assert engine.list_positions() == []
    with pytest.raises(NotFound):
        engine.get_position("AAPL")


def test_equity_short_is_allowed_and_counts_negative(engine):
    engine.set_prices({"AAPL": D(100)})
    sell(engine, qty="10")
    engine.set_prices({"AAPL": D(110)})
    account = engine.get_account()
    assert engine.get_position("AAPL").side == "short"
    assert account.short_market_value == D(-1100)
    assert account.cash == D(101000)
    assert account.equity == D(99900)


def test_options_use_the_contract_multiplier_and_may_be_shorted(engine):
    engine.set_prices({OPTION: D("2.5")})
    sell(engine, OPTION, qty="2")
    assert engine.get_account().cash == D(100500)
    engine.set_prices({OPTION: D(3)})
    buy(engine, OPTION, qty="2")
    assert engine.realized_pl(OPTION) == D(-100)


def test_option_qty_must_be_whole_contracts(engine):
    engine.set_prices({OPTION: D(1)})
    with pytest.raises(InvalidRequest, match="whole number"):
        buy(engine, OPTION, qty="1.5")


def test_crypto_cannot_be_shorted(engine):
    engine.set_prices({"BTC/USD": D(50000)})
    buy(engine, "BTC/USD", qty="0.5")
    with pytest.raises(OrderRejected, match="insufficient balance for BTC/USD"):
        sell(engine, "BTC/USD", qty="0.6")
    assert sell(engine, "BTC/USD", qty="0.5").status is OrderStatus.FILLED
    with pytest.raises(OrderRejected, match="insufficient balance"):
        sell(engine, "BTC/USD", qty="0.1")


def test_resting_crypto_sell_that_would_oversell_is_canceled(engine):
    engine.set_prices({"ETH/USD": D(1000)})
    buy(engine, "ETH/USD", qty="1")
    resting = limit(engine, Side.SELL, "1200", symbol="ETH/USD", qty="1")
    sell(engine, "ETH/USD", qty="1")  # the holding is gone before the limit triggers
    engine.set_prices({"ETH/USD": D(1300)})
    assert status(engine, resting) is OrderStatus.CANCELED
    assert engine.list_positions() == []


# ---------------------------------------------------------------------------------------
# Buying power and the day


def test_buying_power_subtracts_positions_and_open_orders(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="100")  # 10,000 long
    limit(engine, Side.BUY, "50", qty="10")  # reserves 500
    assert engine.get_account().buying_power == 2 * D(100000) - D(10000) - D(500)


def test_order_beyond_buying_power_is_refused_and_not_recorded(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InsufficientFunds, match="insufficient buying power"):
        buy(engine, qty="2001")
    assert engine.list_orders(OrderQuery(status="all")) == []
    assert buy(engine, qty="2000").status is OrderStatus.FILLED
    assert engine.get_account().buying_power == 0


def test_closing_needs_no_buying_power(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="2000")
    with pytest.raises(InsufficientFunds):
        buy(engine, qty="1")
    assert sell(engine, qty="2000").status is OrderStatus.FILLED


def test_reduce_only_order_may_not_open(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(OrderRejected, match="reduce_only"):
        engine.submit_order(intent(reduce_only=True))


def test_roll_day_sets_last_equity(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="10")
    engine.set_prices({"AAPL": D(90)})
    assert engine.get_account().last_equity == D(100000)
    engine.roll_day()
    account = engine.get_account()
    assert account.last_equity == account.equity == D(99900)
    assert engine.get_position("AAPL").lastday_price == D(90)


# ---------------------------------------------------------------------------------------
# Client order ids


def test_default_client_order_id_is_a_uuid(engine):
    engine.set_prices({"AAPL": D(100)})
    uuid.UUID(buy(engine).client_order_id)


def test_duplicate_client_order_id_is_rejected_without_a_second_order(engine):
    engine.set_prices({"AAPL": D(100)})
    first = buy(engine, client_order_id="bot-1")
    with pytest.raises(OrderRejected, match="client_order_id must be unique"):
        buy(engine, client_order_id="bot-1")
    assert [o.id for o in engine.list_orders(OrderQuery(status="all"))] == [first.id]
    assert engine.get_position("AAPL").qty == D(1)


def test_overlong_client_order_id_is_invalid(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(InvalidRequest):
        buy(engine, client_order_id="x" * 129)


def test_get_order_by_client_id(engine):
    engine.set_prices({"AAPL": D(100)})
    order = buy(engine, client_order_id="abc")
    assert engine.get_order_by_client_id("abc").id == order.id
    with pytest.raises(NotFound):
        engine.get_order_by_client_id("nope")


# ---------------------------------------------------------------------------------------
# Replace


def test_replace_creates_a_new_order_and_marks_the_old_replaced(engine):
    engine.set_prices({"AAPL": D(100)})
    old = limit(engine, Side.BUY, "90", qty="2")
    new = engine.replace_order(old.id, OrderReplace(limit_price=D(95)))
    assert new.id != old.id and new.replaces == old.id
    assert (new.limit_price, new.qty, new.status) == (D(95), D(2), OrderStatus.NEW)
    replaced = engine.get_order(old.id)
    assert replaced.status is OrderStatus.REPLACED and replaced.replaced_by == new.id
    engine.set_prices({"AAPL": D(94)})
    assert engine.get_order(new.id).filled_avg_price == D(95)
    assert engine.get_position("AAPL").qty == D(2)


def test_replace_to_a_marketable_price_fills_at_once(engine):
    engine.set_prices({"AAPL": D(100)})
    old = limit(engine, Side.BUY, "90")
    assert engine.replace_order(old.id, OrderReplace(limit_price=D(101))).status is OrderStatus.FILLED


def test_replace_rechecks_buying_power(engine):
    engine.set_prices({"AAPL": D(100)})
    old = limit(engine, Side.BUY, "90", qty="10")
    with pytest.raises(InsufficientFunds):
        engine.replace_order(old.id, OrderReplace(qty=D(3000)))
    assert status(engine, old) is OrderStatus.NEW


def test_replace_errors(engine):
    engine.set_prices({"AAPL": D(100)})
    filled = buy(engine)
    with pytest.raises(OrderRejected):
        engine.replace_order(filled.id, OrderReplace(qty=D(2)))
    with pytest.raises(NotFound):
        engine.replace_order("missing", OrderReplace(qty=D(2)))
    resting = limit(engine, Side.BUY, "90")
    with pytest.raises(InvalidRequest, match="stop_price"):
        engine.replace_order(resting.id, OrderReplace(stop_price=D(80)))
    with pytest.raises(InvalidRequest, match="nothing"):
        engine.replace_order(resting.id, OrderReplace())


def test_replacing_a_held_bracket_leg_keeps_it_in_the_group(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="99")
    stop_leg = order.legs[1]
    new_leg = engine.replace_order(stop_leg.id, OrderReplace(stop_price=D(92)))
    assert new_leg.status is OrderStatus.HELD
    legs = engine.get_order(order.id, nested=True).legs
    assert [leg.id for leg in legs] == [order.legs[0].id, new_leg.id]
    engine.set_prices({"AAPL": D(98)})  # entry fills, legs go live
    engine.set_prices({"AAPL": D(91)})
    assert engine.get_order(new_leg.id).filled_avg_price == D(91)
    assert status(engine, order.legs[0]) is OrderStatus.CANCELED


def test_replacing_a_bracket_entry_resizes_its_held_legs(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="95", qty="2")
    new = engine.replace_order(order.id, OrderReplace(qty=D(5)))
    assert [leg.qty for leg in new.legs] == [D(5), D(5)]
    assert engine.get_order(order.id, nested=True).legs == []  # the legs moved to the new entry
    engine.set_prices({"AAPL": D(94)})
    assert [leg.status for leg in engine.get_order(new.id, nested=True).legs] == [OrderStatus.NEW] * 2


def test_replacing_a_trailing_stop_changes_the_trail(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine)
    old = engine.submit_order(intent(side=Side.SELL, type=OrderType.TRAILING_STOP, trail_price=D(5)))
    new = engine.replace_order(old.id, OrderReplace(trail=D(2)))
    assert new.trail_price == D(2) and new.stop_price == D(98)


# ---------------------------------------------------------------------------------------
# Cancel


def test_cancel_open_order_then_again(engine):
    engine.set_prices({"AAPL": D(100)})
    order = limit(engine, Side.BUY, "90")
    engine.cancel_order(order.id)
    canceled = engine.get_order(order.id)
    assert canceled.status is OrderStatus.CANCELED and canceled.canceled_at is not None
    with pytest.raises(OrderRejected, match="not cancelable"):
        engine.cancel_order(order.id)
    engine.set_prices({"AAPL": D(80)})
    assert engine.list_positions() == []


def test_cancel_filled_or_unknown(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(OrderRejected, match="not cancelable"):
        engine.cancel_order(buy(engine).id)
    with pytest.raises(NotFound):
        engine.cancel_order(str(uuid.uuid4()))


def test_cancel_all_orders(engine):
    engine.set_prices({"AAPL": D(100)})
    a = limit(engine, Side.BUY, "90")
    b = limit(engine, Side.BUY, "80")
    buy(engine)
    results = engine.cancel_all_orders()
    assert {(r.id, r.status) for r in results} == {(a.id, 200), (b.id, 200)}
    assert engine.list_orders(OrderQuery(status="open")) == []


# ---------------------------------------------------------------------------------------
# Closing positions


def test_close_whole_position(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="5")
    order = engine.close_position("AAPL")
    assert (order.side, order.qty, order.status) == (Side.SELL, D(5), OrderStatus.FILLED)
    assert engine.list_positions() == []


def test_close_short_position_buys(engine):
    engine.set_prices({"AAPL": D(100)})
    sell(engine, qty="5")
    assert engine.close_position("AAPL").side is Side.BUY
    assert engine.list_positions() == []


def test_close_position_by_qty_and_percentage(engine):
    engine.set_prices({"AAPL": D(100)})
    buy(engine, qty="10")
    engine.close_position("AAPL", qty=D(4))
    assert engine.get_position("AAPL").qty == D(6)
    engine.close_position("AAPL", percentage=D(50))
    assert engine.get_position("AAPL").qty == D(3)


def test_close_option_percentage_rounds_down_to_whole_contracts(engine):
    engine.set_prices({OPTION: D(2)})
    buy(engine, OPTION, qty="3")
    assert engine.close_position(OPTION, percentage=D(50)).qty == D(1)
    with pytest.raises(InvalidRequest, match="rounds to zero"):
        engine.close_position(OPTION, percentage=D(10))


def test_close_position_errors(engine):
    engine.set_prices({"AAPL": D(100)})
    with pytest.raises(NotFound):
        engine.close_position("AAPL")
    buy(engine, qty="2")
    with pytest.raises(OrderRejected, match="insufficient qty"):
        engine.close_position("AAPL", qty=D(3))
    with pytest.raises(InvalidRequest):
        engine.close_position("AAPL", qty=D(1), percentage=D(50))
    assert engine.get_position("AAPL").qty == D(2)


def test_close_all_positions_can_cancel_orders_first(engine):
    engine.set_prices({"AAPL": D(100), "MSFT": D(200)})
    buy(engine, "AAPL")
    sell(engine, "MSFT", qty="2")
    resting = limit(engine, Side.BUY, "50")
    results = engine.close_all_positions(cancel_orders=True)
    assert [(r.id, r.status) for r in results] == [("AAPL", 200), ("MSFT", 200)]
    assert results[1].order.side is Side.BUY and results[1].order.qty == D(2)
    assert engine.list_positions() == []
    assert status(engine, resting) is OrderStatus.CANCELED


# ---------------------------------------------------------------------------------------
# Listing orders


def test_list_orders_by_status(engine, clock):
    engine.set_prices({"AAPL": D(100)})
    filled = buy(engine)
    resting = limit(engine, Side.BUY, "90")
    ids = lambda s: [o.id for o in engine.list_orders(OrderQuery(status=s))]  # noqa: E731
    assert ids("open") == [resting.id]
    assert ids("closed") == [filled.id]
    assert set(ids("all")) == {filled.id, resting.id}
    with pytest.raises(InvalidRequest):
        engine.list_orders(OrderQuery(status="bogus"))


def test_list_orders_direction_limit_and_time_window(engine, clock):
    engine.set_prices({"AAPL": D(100)})
    orders = []
    for _ in range(4):
        orders.append(limit(engine, Side.BUY, "90"))
        clock.advance(10)
    ids = [o.id for o in orders]
    assert [o.id for o in engine.list_orders(OrderQuery(direction="desc"))] == ids[::-1]
    assert [o.id for o in engine.list_orders(OrderQuery(direction="asc", limit=2))] == ids[:2]
    window = OrderQuery(after=orders[0].submitted_at, until=orders[3].submitted_at, direction="asc")
    assert [o.id for o in engine.list_orders(window)] == ids[1:3]


def test_list_orders_by_symbol_and_side(engine):
    engine.set_prices({"AAPL": D(100), "MSFT": D(100)})
    a = limit(engine, Side.BUY, "90")
    m = limit(engine, Side.BUY, "90", symbol="MSFT")
    s = limit(engine, Side.SELL, "110", symbol="MSFT")
    assert [o.id for o in engine.list_orders(OrderQuery(symbols=("AAPL",)))] == [a.id]
    assert {o.id for o in engine.list_orders(OrderQuery(symbols=("MSFT",)))} == {m.id, s.id}
    assert [o.id for o in engine.list_orders(OrderQuery(side=Side.SELL))] == [s.id]


def test_list_orders_nested_and_flat(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="95")
    nested = engine.list_orders(OrderQuery(nested=True))
    assert [o.id for o in nested] == [order.id]
    assert [leg.id for leg in nested[0].legs] == [leg.id for leg in order.legs]
    flat = engine.list_orders(OrderQuery(nested=False, direction="asc"))
    assert [o.id for o in flat] == [order.id, *(leg.id for leg in order.legs)]
    assert all(o.legs == [] for o in flat)


def test_nested_group_is_open_while_a_leg_is(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine)  # entry filled, legs live
    assert [o.id for o in engine.list_orders(OrderQuery(status="open", nested=True))] == [order.id]


def test_get_order_nested_flag(engine):
    engine.set_prices({"AAPL": D(100)})
    order = bracket(engine, entry_limit="95")
    assert engine.get_order(order.id).legs == []
    assert len(engine.get_order(order.id, nested=True).legs) == 2
    with pytest.raises(NotFound):
        engine.get_order("missing")


# ---------------------------------------------------------------------------------------
# Prices, assets, clock


def test_latest_price(engine):
    with pytest.raises(NotFound):
        engine.latest_price("AAPL", AssetClass.US_EQUITY)
    engine.set_prices({"AAPL": D("123.45")})
    assert engine.latest_price("AAPL", AssetClass.US_EQUITY) == D("123.45")


def test_get_asset(engine):
    engine.set_prices({"AAPL": D(1), "BTC/USD": D(1), OPTION: D(1)})
    aapl = engine.get_asset("AAPL")
    assert (aapl.asset_class, aapl.exchange, aapl.fractionable, aapl.shortable) == (
        AssetClass.US_EQUITY,
        "NASDAQ",
        True,
        True,
    )
    assert aapl.id == engine.get_asset("AAPL").id and aapl.name
    btc = engine.get_asset("BTC/USD")
    assert (btc.exchange, btc.fractionable, btc.shortable) == ("CRYPTO", True, False)
    option = engine.get_asset(OPTION)
    assert (option.asset_class, option.exchange, option.fractionable) == (AssetClass.US_OPTION, "OPRA", False)
    with pytest.raises(NotFound):
        engine.get_asset("MSFT")  # well formed, but no mark
    with pytest.raises(NotFound):
        engine.get_asset("bad symbol")


def test_clock_is_always_open(engine, clock):
    c = engine.get_clock()
    assert c.is_open is True and c.timestamp == clock.now
    assert c.next_open > clock.now and c.next_close > clock.now
    assert c.next_open.tzinfo is not None and c.next_close.utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------------------
# Listeners and copies


def _orders_seen(seen):
    """(order id, status) of each order event a listener got (position events left out)."""
    return [(e.order.id, e.order.status) for e in seen if isinstance(e, OrderUpdate)]


def test_listener_sees_creation_fill_and_cancel(engine):
    seen = []
    engine.add_listener(seen.append)
    engine.set_prices({"AAPL": D(100)})
    filled = buy(engine)
    resting = limit(engine, Side.BUY, "90")
    engine.cancel_order(resting.id)
    orders = _orders_seen(seen)
    assert (filled.id, OrderStatus.FILLED) in orders
    assert (resting.id, OrderStatus.NEW) in orders
    assert orders[-1] == (resting.id, OrderStatus.CANCELED)


def test_listener_is_told_when_a_price_move_triggers_a_fill(engine):
    engine.set_prices({"AAPL": D(100)})
    order = engine.submit_order(intent(type=OrderType.STOP, stop_price=D(105)))
    seen = []
    engine.add_listener(seen.append)
    engine.set_prices({"AAPL": D(106)})
    assert _orders_seen(seen) == [(order.id, OrderStatus.FILLED)]
    # delivered after the book is consistent: the position exists when the listener runs
    assert engine.get_position("AAPL").qty == D(1)


def test_listener_may_read_the_engine_and_its_errors_do_not_break_it(engine):
    engine.set_prices({"AAPL": D(100)})
    positions = []

    def reader(event):
        if isinstance(event, OrderUpdate):
            positions.append(len(engine.list_positions()))
        raise RuntimeError("listener bug")

    engine.add_listener(reader)
    order = buy(engine)
    assert order.status is OrderStatus.FILLED
    assert positions[-1] == 1
    engine.remove_listener(reader)
    buy(engine)
    assert len(positions) == 2  # NEW and FILLED of the first order only


def test_listener_sees_a_replace(engine):
    engine.set_prices({"AAPL": D(100)})
    old = limit(engine, Side.BUY, "90")
    seen = []
    engine.add_listener(seen.append)
    new = engine.replace_order(old.id, OrderReplace(limit_price=D(91)))
    assert _orders_seen(seen) == [(old.id, OrderStatus.REPLACED), (new.id, OrderStatus.NEW)]


def test_returned_orders_are_copies(engine):
    engine.set_prices({"AAPL": D(100)})
    order = limit(engine, Side.BUY, "90")
    order.limit_price = D(1000)
    order.status = OrderStatus.FILLED
    stored = engine.get_order(order.id)
    assert stored.limit_price == D(90) and stored.status is OrderStatus.NEW
