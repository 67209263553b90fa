"""The paper engine's event stream (what the ledger consumes) and its optional Alpaca rules."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from gateway.errors import InsufficientFunds, InvalidRequest, OrderRejected
from gateway.model import (
    OrderClass,
    OrderEventType,
    OrderIntent,
    OrderReplace,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    classify_symbol,
)
from gateway.venues.paper_engine import PaperEngine


def intent(symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, tif=TimeInForce.DAY, **kw):
    if "qty" not in kw and "notional" not in kw:
        kw["qty"] = D(1)
    return OrderIntent(symbol=symbol, asset_class=classify_symbol(symbol), side=side, type=type, time_in_force=tif, **kw)


@pytest.fixture
def engine():
    engine = PaperEngine(starting_equity=D(100000))
    engine.set_prices({"AAPL": D(100), "BTC/USD": D(60000)})
    return engine


@pytest.fixture
def strict():
    engine = PaperEngine(starting_equity=D(100000), alpaca_rules=True)
    engine.set_prices({"AAPL": D(100), "BTC/USD": D(60000)})
    return engine


def record(engine):
    seen: list = []
    engine.add_listener(seen.append)
    return seen


def order_events(seen):
    return [(e.event, e.order.id) for e in seen if isinstance(e, OrderUpdate)]


# ---------------------------------------------------------------------------------------
# Events


def test_market_order_is_new_then_fill_with_execution_details_and_position(engine):
    seen = record(engine)
    order = engine.submit_order(intent(qty=D(3)))
    assert order_events(seen) == [(OrderEventType.NEW, order.id), (OrderEventType.FILL, order.id)]
    fill = seen[1]
    assert (fill.qty, fill.price, fill.position_qty) == (D(3), D(100), D(3))
    assert fill.execution_id and fill.order.status is OrderStatus.FILLED
    position = seen[2]
    assert isinstance(position, PositionUpdate)
    assert (position.symbol, position.qty, position.entry_price) == ("AAPL", D(3), D(100))


def test_fill_that_closes_a_position_reports_position_zero(engine):
    engine.submit_order(intent(qty=D(2)))
    seen = record(engine)
    engine.submit_order(intent(side=Side.SELL, qty=D(2)))
    fill = next(e for e in seen if isinstance(e, OrderUpdate) and e.event is OrderEventType.FILL)
    assert fill.position_qty == D(0)
    assert [e.qty for e in seen if isinstance(e, PositionUpdate)] == [D(0)]


def test_bracket_announces_legs_nested_and_releases_them_as_triggered(engine):
    seen = record(engine)
    parent = engine.submit_order(
        intent(
            type=OrderType.LIMIT,
            limit_price=D(99),
            tif=TimeInForce.GTC,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfit(D(120)),
            stop_loss=StopLoss(D(90)),
        )
    )
    assert order_events(seen) == [(OrderEventType.NEW, parent.id)]
    assert [leg.status for leg in seen[0].order.legs] == [OrderStatus.HELD, OrderStatus.HELD]
    seen.clear()
    engine.set_prices({"AAPL": D(98)})
    legs = {leg.id for leg in parent.legs}
    events = order_events(seen)
    assert events[0] == (OrderEventType.FILL, parent.id)
    assert {order_id for event, order_id in events[1:]} == legs
    assert {event for event, _ in events[1:]} == {OrderEventType.TRIGGERED}


def test_cancel_of_a_parent_cancels_each_leg_with_an_event(engine):
    parent = engine.submit_order(
        intent(
            type=OrderType.LIMIT, limit_price=D(90), tif=TimeInForce.GTC,
            order_class=OrderClass.OTO, stop_loss=StopLoss(D(80)),
        )
    )
    seen = record(engine)
    engine.cancel_order(parent.id)
    assert order_events(seen) == [(OrderEventType.CANCELED, parent.id), (OrderEventType.CANCELED, parent.legs[0].id)]


def test_replace_is_replaced_for_the_old_order_then_new_for_its_successor(engine):
    old = engine.submit_order(intent(type=OrderType.LIMIT, limit_price=D(90)))
    seen = record(engine)
    new = engine.replace_order(old.id, OrderReplace(qty=D(5)))
    assert order_events(seen) == [(OrderEventType.REPLACED, old.id), (OrderEventType.NEW, new.id)]
    assert seen[0].order.replaced_by == new.id and seen[1].order.replaces == old.id


def test_stop_limit_trigger_is_an_event_before_its_fill(engine):
    order = engine.submit_order(
        intent(side=Side.BUY, type=OrderType.STOP_LIMIT, stop_price=D(105), limit_price=D(104))
    )
    seen = record(engine)
    engine.set_prices({"AAPL": D(106)})  # stop hit, limit not reachable
    assert order_events(seen) == [(OrderEventType.TRIGGERED, order.id)]
    engine.set_prices({"AAPL": D(103)})
    assert order_events(seen)[-1] == (OrderEventType.FILL, order.id)


def test_unfilled_ioc_is_new_then_canceled(engine):
    seen = record(engine)
    order = engine.submit_order(intent(type=OrderType.LIMIT, limit_price=D(50), tif=TimeInForce.IOC))
    assert order_events(seen) == [(OrderEventType.NEW, order.id), (OrderEventType.CANCELED, order.id)]


def test_refused_order_emits_nothing(engine):
    seen = record(engine)
    with pytest.raises(InsufficientFunds):
        engine.submit_order(intent(qty=D(100000)))
    assert seen == []


# ---------------------------------------------------------------------------------------
# Alpaca rules (alpaca_rules=True); the default engine stays lenient


def protected_long(engine, qty="10"):
    """A filled OTO buy whose stop leg now holds the shares."""
    return engine.submit_order(
        intent(qty=D(qty), tif=TimeInForce.GTC, order_class=OrderClass.OTO, stop_loss=StopLoss(D(90)))
    )


def test_sell_of_shares_a_stop_holds_is_refused_like_alpaca(strict):
    protected_long(strict)
    with pytest.raises(InsufficientFunds) as refused:
        strict.submit_order(intent(side=Side.SELL, qty=D(10)))
    assert refused.value.message == "insufficient qty available for order (requested: 10, available: 0)"


def test_sell_of_the_unheld_rest_is_accepted(strict):
    protected_long(strict, qty="10")
    strict.submit_order(intent(qty=D(5)))  # now long 15, 10 held by the stop
    with pytest.raises(InsufficientFunds, match=r"requested: 6, available: 5"):
        strict.submit_order(intent(side=Side.SELL, qty=D(6)))
    assert strict.submit_order(intent(side=Side.SELL, qty=D(5))).status is OrderStatus.FILLED


def test_close_position_is_refused_while_a_stop_holds_the_shares(strict):
    protected_long(strict)
    with pytest.raises(InsufficientFunds, match="insufficient qty available"):
        strict.close_position("AAPL")


def test_replacing_the_holding_stop_itself_is_allowed_but_not_above_the_position(strict):
    parent = protected_long(strict)
    stop = strict.get_order(parent.id, nested=True).legs[0]
    smaller = strict.replace_order(stop.id, OrderReplace(qty=D(8)))
    with pytest.raises(InsufficientFunds, match=r"requested: 11, available: 10"):
        strict.replace_order(smaller.id, OrderReplace(qty=D(11)))


def test_one_order_cannot_go_from_long_to_short(strict):
    strict.submit_order(intent(qty=D(3)))
    with pytest.raises(InsufficientFunds, match=r"requested: 5, available: 3"):
        strict.submit_order(intent(side=Side.SELL, qty=D(5)))


def test_bracket_exits_hold_their_shares_once(strict):
    strict.submit_order(
        intent(
            qty=D(10), tif=TimeInForce.GTC, order_class=OrderClass.BRACKET,
            take_profit=TakeProfit(D(120)), stop_loss=StopLoss(D(90)),
        )
    )
    strict.submit_order(intent(qty=D(4)))
    assert strict.submit_order(intent(side=Side.SELL, qty=D(4))).status is OrderStatus.FILLED


def test_short_sale_from_flat_is_not_a_held_qty_question(strict):
    assert strict.submit_order(intent(side=Side.SELL, qty=D(2))).status is OrderStatus.FILLED


def test_lenient_engine_lets_a_second_sell_through(engine):
    protected_long(engine)
    assert engine.submit_order(intent(side=Side.SELL, qty=D(10))).status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(order_class=OrderClass.OTO, stop_loss=StopLoss(D(50000)), tif=TimeInForce.GTC), "must be simple"),
        (dict(type=OrderType.STOP, stop_price=D(70000), tif=TimeInForce.GTC), "market, limit or stop_limit"),
        (dict(tif=TimeInForce.DAY), "gtc or ioc"),
    ],
    ids=["oto", "stop", "day"],
)
def test_crypto_orders_are_simple_market_limit_or_stop_limit_gtc_or_ioc(strict, kw, message):
    kw.setdefault("tif", TimeInForce.GTC)
    tif = kw.pop("tif")
    with pytest.raises(InvalidRequest, match=message):
        strict.submit_order(intent("BTC/USD", qty=D("0.1"), tif=tif, **kw))


def test_crypto_stop_limit_gtc_is_accepted(strict):
    order = strict.submit_order(
        intent("BTC/USD", type=OrderType.STOP_LIMIT, tif=TimeInForce.GTC, qty=D("0.1"),
               stop_price=D(61000), limit_price=D(61500))
    )
    assert order.status is OrderStatus.NEW


def test_crypto_sell_held_by_an_open_sell_is_refused(strict):
    strict.submit_order(intent("BTC/USD", qty=D(1), tif=TimeInForce.GTC))
    strict.submit_order(
        intent("BTC/USD", side=Side.SELL, type=OrderType.LIMIT, limit_price=D(70000), qty=D("0.6"), tif=TimeInForce.GTC)
    )
    with pytest.raises(OrderRejected, match=r"insufficient balance for BTC/USD \(requested: 0.5, available: 0.4\)"):
        strict.submit_order(intent("BTC/USD", side=Side.SELL, qty=D("0.5"), tif=TimeInForce.GTC))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(notional=D(500), order_class=OrderClass.OTO, stop_loss=StopLoss(D(90)), tif=TimeInForce.DAY),
         "notional is only"),  # the shape check of every engine
        (dict(notional=D(500), tif=TimeInForce.GTC), "notional orders must be day orders"),
        (dict(qty=D("1.5"), order_class=OrderClass.OTO, stop_loss=StopLoss(D(90)), tif=TimeInForce.DAY),
         "fractional orders must be simple"),
        (dict(qty=D("1.5"), type=OrderType.STOP, stop_price=D(110), tif=TimeInForce.DAY),
         "fractional orders must be market or limit"),
        (dict(qty=D("1.5"), tif=TimeInForce.GTC), "fractional orders must be day orders"),
    ],
    ids=["notional-oto", "notional-gtc", "fractional-oto", "fractional-stop", "fractional-gtc"],
)
def test_notional_and_fractional_equity_orders_are_simple_day_orders(strict, kw, message):
    tif = kw.pop("tif")
    with pytest.raises(InvalidRequest, match=message):
        strict.submit_order(intent(tif=tif, **kw))


def test_fractional_day_limit_is_accepted(strict):
    order = strict.submit_order(intent(type=OrderType.LIMIT, limit_price=D(90), qty=D("0.5")))
    assert order.status is OrderStatus.NEW
