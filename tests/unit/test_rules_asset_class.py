"""Per-asset-class rules: allocation, leverage, stop loss (reject and attach), universe size,
and the option rules (near expiry, long only)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from gateway.model import AssetClass, OrderClass, OrderType, StopLoss, TimeInForce
from gateway.risk.engine import RiskEngine

from .test_rules_support import (
    NOW,
    book,
    codes,
    decide,
    default,
    order,
    position,
    relaxed,
)


def stop(mode: str, distance) -> dict:
    return {"stop_loss": {"mode": mode, "max_distance_pct": distance}}


# --- asset_class_allocation ------------------------------------------------------------------------


def test_allocation_refuses_over_the_class_cap_and_ignores_other_classes():
    pol = relaxed(classes={"crypto": {"allocation_pct": 3}})
    engine = RiskEngine(book([position("BTC/USD", "0.03", "60000")]))  # 1,800 = 1.8% crypto
    decision = decide(engine, order("ETH/USD", qty="0.5"), pol, price="3000")[0]  # +1,500 = 3.3%
    assert decision.codes == ("asset_class_allocation",)
    assert "crypto would be 3.30% of equity, limit 3%" in decision.violations[0].message
    assert decide(engine, order("AAPL", qty="15"), pol)[0].allowed  # equities are not crypto


def test_allocation_allows_up_to_the_cap():
    pol = relaxed(classes={"crypto": {"allocation_pct": 3}})
    engine = RiskEngine(book([position("BTC/USD", "0.03", "60000")]))
    assert decide(engine, order("ETH/USD", qty="0.4"), pol, price="3000")[0].allowed  # exactly 3%


def test_allocation_clamps():
    pol = relaxed(classes={"crypto": {"allocation_pct": {"limit": 3, "on_violation": "clamp"}}})
    engine = RiskEngine(book([position("BTC/USD", "0.03", "60000")]))
    decision, final, _ = decide(engine, order("ETH/USD", qty="0.5"), pol, price="3000")
    assert decision.allowed and final.qty == D("0.4")


# --- asset_class_leverage --------------------------------------------------------------------------


def test_class_leverage_refuses_a_leverage_setting_above_the_class_cap():
    pol = relaxed(classes={"crypto": {"leverage": 1}})
    portfolio = book()
    portfolio.set_leverage("BTC/USDT", AssetClass.CRYPTO, D(3))
    decision = decide(RiskEngine(portfolio), order("BTC/USDT", qty="0.01"), pol, price="60000")[0]
    assert decision.codes == ("asset_class_leverage",)
    assert "set to 3x leverage, crypto limit 1x" in decision.violations[0].message


def test_class_leverage_refuses_gross_notional_over_the_cap():
    pol = relaxed({"max_position_pct": 2}, classes={"us_equity": {"leverage": "0.03"}})
    engine = RiskEngine(book([position("A", "20"), position("BTC/USD", "1", "1000")]))  # 2% equity, crypto apart
    assert decide(engine, order("B", qty="10"), pol)[0].allowed  # 3% gross equities
    decision = decide(engine, order("C", qty="1"), pol)[0]
    assert decision.codes == ("asset_class_leverage",) and decision.violations[0].value == D("0.031")


def test_class_leverage_clamps_the_gross_part():
    pol = relaxed(classes={"us_equity": {"leverage": {"limit": "0.03", "on_violation": "clamp"}}})
    engine = RiskEngine(book([position("A", "20")]))
    decision, final, _ = decide(engine, order("B", qty="15"), pol)
    assert decision.allowed and final.qty == D(10)


# --- stop_loss: reject -----------------------------------------------------------------------------


def test_reject_mode_refuses_an_entry_without_a_stop():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    decision = decide(RiskEngine(book()), order(qty="1"), pol)[0]
    assert decision.codes == ("stop_loss_required",)
    assert "needs a protective stop" in decision.violations[0].message


def test_reject_mode_refuses_a_stop_on_the_wrong_side():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    engine = RiskEngine(book())
    decision = decide(engine, order(qty="1", stop_loss="101"), pol)[0]
    assert decision.codes == ("stop_loss_required",) and "below the entry" in decision.violations[0].message
    # a short entry's stop goes above
    assert codes(decide(engine, order(side="sell", qty="1", stop_loss="99"), pol)) == ("stop_loss_required",)


def test_reject_mode_refuses_a_stop_too_far():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    decision = decide(RiskEngine(book()), order(qty="1", stop_loss="91.99"), pol)[0]
    assert decision.codes == ("stop_loss_too_far",)
    assert decision.violations[0].value == D("8.01") and "limit 8%" in decision.violations[0].message


def test_reject_mode_allows_a_protective_stop_within_the_distance():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="1", stop_loss="92"), pol)[0].allowed
    assert decide(engine, order("B", qty="1", stop_loss="95", take_profit="110"), pol)[0].allowed
    assert decide(engine, order("C", side="sell", qty="1", stop_loss="108"), pol)[0].allowed


def test_reject_mode_measures_from_the_limit_price():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    # buy limit 90 with reference 100: a stop at 85 is 5.6% below the entry, fine
    intent = order(qty="1", type=OrderType.LIMIT, limit_price="90", stop_loss="85")
    assert decide(RiskEngine(book()), intent, pol)[0].allowed


def test_a_stop_on_a_simple_order_is_not_a_protective_leg():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    intent = order(qty="1", stop_loss="95", order_class=OrderClass.SIMPLE)
    assert codes(decide(RiskEngine(book()), intent, pol)) == ("stop_loss_required",)


def test_exits_never_need_a_stop():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    engine = RiskEngine(book([position("AAPL", "10")]))
    assert decide(engine, order(side="sell", qty="10"), pol)[0].allowed


def test_stop_loss_is_per_class():
    pol = relaxed(classes={"crypto": stop("reject", 10)})
    engine = RiskEngine(book())
    assert decide(engine, order("AAPL", qty="1"), pol)[0].allowed
    assert codes(decide(engine, order("BTC/USD", qty="0.01"), pol, price="60000")) == ("stop_loss_required",)


# --- stop_loss: attach -----------------------------------------------------------------------------


def test_attach_mode_returns_a_protected_oto_intent_and_says_so():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    decision, final, reservation = decide(RiskEngine(book()), order(qty="10"), pol, price="190")
    assert decision.allowed and reservation is not None
    assert final.order_class is OrderClass.OTO and final.stop_loss == StopLoss(D("174.80"))
    assert final.qty == D(10) and final.symbol == "AAPL"
    assert decision.notes == ("stop_loss: attached a protective stop at 174.8 (8% from entry 190); order_class oto",)


def test_attach_mode_turns_a_take_profit_oto_into_a_bracket():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    _, final, _ = decide(RiskEngine(book()), order(qty="1", take_profit="120"), pol)
    assert final.order_class is OrderClass.BRACKET and final.stop_loss.stop_price == D(92)
    assert final.take_profit.limit_price == D(120)


def test_attach_mode_stops_above_a_short_entry_and_rounds_toward_the_entry():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    _, final, _ = decide(RiskEngine(book()), order(side="sell", qty="1"), pol, price="33.33")
    assert final.stop_loss.stop_price == D("35.99")  # 35.9964 rounded down, toward the entry


def test_attach_mode_measures_from_the_limit_price():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    intent = order(qty="1", type=OrderType.LIMIT, limit_price="90", tif=TimeInForce.GTC)
    _, final, _ = decide(RiskEngine(book()), intent, pol)
    assert final.stop_loss.stop_price == D("82.80") and final.limit_price == D(90)


def test_attach_mode_moves_a_stop_that_is_too_far():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    decision, final, _ = decide(RiskEngine(book()), order(qty="1", stop_loss="80"), pol)
    assert decision.allowed and final.stop_loss.stop_price == D(92) and final.order_class is OrderClass.OTO
    assert "stop 80 moved to 92" in decision.notes[0]


def test_attach_mode_leaves_a_good_stop_alone():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    intent = order(qty="1", stop_loss="95")
    decision, final, _ = decide(RiskEngine(book()), intent, pol)
    assert decision.allowed and final is intent and decision.notes == ()


def test_attach_mode_converts_a_notional_stock_order_to_whole_shares():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    decision, final, reservation = decide(RiskEngine(book()), order("MSFT", qty=None, notional="900"), pol, price="420")
    assert decision.allowed and final.notional is None and final.qty == D("2")  # legs need whole shares
    assert final.order_class is OrderClass.OTO and final.stop_loss.stop_price == D("386.40")
    assert reservation.qty == final.qty
    assert "notional 900 converted to qty 2" in decision.notes[0]


def test_attach_mode_refuses_a_notional_stock_order_under_one_share():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    decision, _, _ = decide(RiskEngine(book()), order("MSFT", qty=None, notional="300"), pol, price="420")
    assert decision.codes == ("stop_loss_required",)


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"type": OrderType.TRAILING_STOP, "trail_percent": D(5)}, "trailing_stop"),
        ({"tif": TimeInForce.IOC}, "time_in_force ioc"),
        ({"extended_hours": True, "type": OrderType.LIMIT, "limit_price": "100"}, "extended-hours"),
    ],
)
def test_attach_mode_refuses_orders_that_cannot_carry_a_stop(kw, why):
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    decision = decide(RiskEngine(book()), order(qty="1", **kw), pol)[0]
    assert decision.codes == ("stop_loss_required",) and why in decision.violations[0].message


def test_attach_mode_refuses_a_wrong_side_stop_rather_than_guess():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    assert codes(decide(RiskEngine(book()), order(qty="1", stop_loss="105"), pol)) == ("stop_loss_required",)


def test_attach_mode_does_not_touch_exits():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    intent = order(side="sell", qty="5")
    decision, final, _ = decide(RiskEngine(book([position("AAPL", "10")])), intent, pol)
    assert decision.allowed and final is intent and decision.notes == ()


def test_attach_mode_lets_a_replace_keep_its_venue_legs_and_notes_it():
    pol = relaxed(classes={"us_equity": stop("attach", 8)})
    intent = order(qty="1", type=OrderType.LIMIT, limit_price="99")
    decision, final, _ = decide(RiskEngine(book()), intent, pol, action="replace")
    assert decision.allowed and final is intent
    assert "a replace cannot add a stop" in decision.notes[0]


def test_reject_mode_holds_a_replace_to_the_same_standard():
    pol = relaxed(classes={"us_equity": stop("reject", 8)})
    intent = order(qty="1", type=OrderType.LIMIT, limit_price="99")
    assert codes(decide(RiskEngine(book()), intent, pol, action="replace")) == ("stop_loss_required",)


def test_attach_and_clamp_together_keep_the_stop():
    pol = relaxed({"max_position_pct": {"limit": 2, "on_violation": "clamp"}}, classes={"us_equity": stop("attach", 8)})
    decision, final, _ = decide(RiskEngine(book()), order(qty="30"), pol)
    assert decision.allowed and final.qty == D(20) and final.stop_loss.stop_price == D(92)
    assert decision.notes[0].startswith("max_position_pct: quantity clamped") and decision.notes[1].startswith("stop_loss:")


def test_the_default_policy_attaches_stops_to_every_asset_class():
    engine = RiskEngine(book())
    pol = default()
    for symbol, price, distance in (("AAPL", "100", "92"), ("BTC/USD", "60000", "54000"), ("AAPL271217C00190000", "4", "3")):
        decision, final, _ = decide(engine, order(symbol, qty="1" if "/" not in symbol else "0.01"), pol, price=price)
        assert decision.allowed, decision.codes
        assert final.stop_loss.stop_price == D(distance)


# --- universe_size -----------------------------------------------------------------------------------


def test_universe_refuses_a_symbol_beyond_the_class_size():
    pol = relaxed(classes={"crypto": {"universe_size": 2}})
    engine = RiskEngine(book([position("BTC/USD", "0.01", "60000"), position("ETH/USD", "0.1", "3000")]))
    decision = decide(engine, order("SOL/USD", qty="1"), pol)[0]
    assert decision.codes == ("universe_size",) and "crypto symbol 3, limit 2" in decision.violations[0].message


def test_universe_allows_known_symbols_and_other_classes():
    pol = relaxed(classes={"crypto": {"universe_size": 2}})
    engine = RiskEngine(book([position("BTC/USD", "0.01", "60000"), position("ETH/USD", "0.1", "3000")]))
    assert decide(engine, order("ETH/USD", qty="0.1"), pol, price="3000")[0].allowed
    assert decide(engine, order("AAPL", qty="1"), pol)[0].allowed


def test_universe_counts_pending_orders_and_forgets_released_ones():
    pol = relaxed(classes={"crypto": {"universe_size": 1}})
    engine = RiskEngine(book())
    _, _, reservation = decide(engine, order("BTC/USD", qty="0.01"), pol, price="60000")
    assert codes(decide(engine, order("ETH/USD", qty="0.1"), pol, price="3000")) == ("universe_size",)
    engine.portfolio.uncount(reservation)
    assert decide(engine, order("ETH/USD", qty="0.1"), pol, price="3000")[0].allowed


# --- options -------------------------------------------------------------------------------------


def occ(days: int, cp: str = "C") -> str:
    expiry = (NOW + timedelta(days=days)).date()
    return f"AAPL{expiry:%y%m%d}{cp}00190000"


def test_no_purchase_within_the_expiry_window():
    pol = relaxed(classes={"us_option": {"no_buy_within_days": 5}})
    engine = RiskEngine(book())
    decision = decide(engine, order(occ(5), qty="1"), pol, price="2")[0]
    assert decision.codes == ("option_near_expiry",)
    assert "in 5 day(s)" in decision.violations[0].message
    assert codes(decide(engine, order(occ(0, "P"), qty="1"), pol, price="2")) == ("option_near_expiry",)


def test_purchase_allowed_outside_the_expiry_window():
    pol = relaxed(classes={"us_option": {"no_buy_within_days": 5}})
    assert decide(RiskEngine(book()), order(occ(6), qty="1"), pol, price="2")[0].allowed


def test_near_expiry_long_can_still_be_sold():
    pol = relaxed(classes={"us_option": {"no_buy_within_days": 5}})
    symbol = occ(1)
    engine = RiskEngine(book([position(symbol, "2", "2")]))
    assert decide(engine, order(symbol, side="sell", qty="2"), pol, price="2")[0].allowed


def test_an_unreadable_option_symbol_is_refused():
    pol = relaxed(classes={"us_option": {"no_buy_within_days": 5}})
    intent = order("AAPL991399C00190000", qty="1", asset_class=AssetClass.US_OPTION)  # month 13
    assert codes(decide(RiskEngine(book()), intent, pol, price="2")) == ("option_near_expiry",)


def test_naked_option_sell_is_refused():
    pol = relaxed(classes={"us_option": {"long_only": True}})
    decision = decide(RiskEngine(book()), order(occ(30), side="sell", qty="1"), pol, price="2")[0]
    assert decision.codes == ("naked_option",) and "long calls and puts only" in decision.violations[0].message


def test_selling_more_than_the_long_is_refused():
    pol = relaxed(classes={"us_option": {"long_only": True}})
    symbol = occ(30)
    engine = RiskEngine(book([position(symbol, "2", "2")]))
    assert codes(decide(engine, order(symbol, side="sell", qty="3"), pol, price="2")) == ("naked_option",)


def test_selling_to_close_a_long_and_buying_are_allowed():
    pol = relaxed(classes={"us_option": {"long_only": True}})
    symbol = occ(30)
    engine = RiskEngine(book([position(symbol, "2", "2")]))
    assert decide(engine, order(symbol, side="sell", qty="2"), pol, price="2")[0].allowed
    assert decide(engine, order(occ(30, "P"), qty="1"), pol, price="2")[0].allowed


def test_long_only_off_allows_writing_options():
    pol = relaxed(classes={"us_option": {"long_only": False}})
    assert decide(RiskEngine(book()), order(occ(30), side="sell", qty="1"), pol, price="2")[0].allowed
