"""Account-level rules: one test per denial path, the allow path, and clamping where supported.
Each test turns on only the rule it is about (``relaxed``)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from gateway.model import Caller, OrderType, TradingState
from gateway.risk.engine import RiskEngine

from .test_rules_support import BOT, book, codes, decide, order, position, relaxed

# --- min_cash_buffer_pct -------------------------------------------------------------------------


def test_cash_buffer_allows_down_to_the_limit_and_refuses_below():
    pol = relaxed({"min_cash_buffer_pct": 30})
    engine = RiskEngine(book(cash="32000"))  # equity 100,000
    assert decide(engine, order(qty="20"), pol)[0].allowed  # 30,000 left = 30%
    decision = decide(engine, order("MSFT", qty="1"), pol)[0]  # 29,900 left
    assert decision.codes == ("min_cash_buffer_pct",)
    v = decision.violations[0]
    assert v.limit == D(30) and v.value == D("29.9") and "29.90%" in v.message


def test_cash_buffer_counts_every_pending_buy():
    pol = relaxed({"min_cash_buffer_pct": 30})
    engine = RiskEngine(book(cash="33000"))
    for symbol in ("A", "B"):
        assert decide(engine, order(symbol, qty="15"), pol)[0].allowed  # 3,000 pending in all
    assert codes(decide(engine, order("C", qty="1"), pol)) == ("min_cash_buffer_pct",)


def test_cash_buffer_ignores_sells():
    pol = relaxed({"min_cash_buffer_pct": 30})
    engine = RiskEngine(book(cash="1000"))
    assert decide(engine, order(side="sell", qty="10"), pol)[0].allowed  # a short entry spends no cash


def test_cash_buffer_clamps():
    pol = relaxed({"min_cash_buffer_pct": {"limit": 30, "on_violation": "clamp"}})
    engine = RiskEngine(book(cash="31000"))
    decision, final, reservation = decide(engine, order(qty="15"), pol)
    assert decision.allowed and final.qty == D(10) and decision.clamped_qty == D(10)
    assert reservation.qty == D(10)


# --- max_open_positions ---------------------------------------------------------------------------


def test_open_positions_refuses_a_new_symbol_over_the_limit():
    pol = relaxed({"max_open_positions": 2})
    engine = RiskEngine(book([position("A", "1"), position("B", "1")]))
    decision = decide(engine, order("C", qty="1"), pol)[0]
    assert decision.codes == ("max_open_positions",)
    assert decision.violations[0].value == D(3) and "limit 2" in decision.violations[0].message


def test_open_positions_allows_adding_to_a_held_symbol():
    pol = relaxed({"max_open_positions": 2})
    engine = RiskEngine(book([position("A", "1"), position("B", "1")]))
    assert decide(engine, order("A", qty="1"), pol)[0].allowed


def test_open_positions_counts_pending_entries():
    pol = relaxed({"max_open_positions": 2})
    engine = RiskEngine(book([position("A", "1")]))
    assert decide(engine, order("B", qty="1"), pol)[0].allowed  # pending, not filled
    assert codes(decide(engine, order("C", qty="1"), pol)) == ("max_open_positions",)


def test_open_positions_never_blocks_an_exit():
    pol = relaxed({"max_open_positions": 1})
    engine = RiskEngine(book([position("A", "1"), position("B", "1")]))  # already over
    assert decide(engine, order("A", side="sell", qty="1"), pol)[0].allowed


# --- max_risk_per_trade_pct -----------------------------------------------------------------------


def test_risk_without_a_stop_is_the_whole_notional():
    pol = relaxed({"max_risk_per_trade_pct": 1})
    decision = decide(RiskEngine(book()), order(qty="15"), pol)[0]  # 1,500 = 1.5%
    assert decision.codes == ("max_risk_per_trade_pct",)
    assert decision.violations[0].value == D("1.5") and "whole notional" in decision.violations[0].message


def test_risk_with_a_protective_stop_is_the_distance():
    pol = relaxed({"max_risk_per_trade_pct": 1})
    assert decide(RiskEngine(book()), order(qty="15", stop_loss="95"), pol)[0].allowed  # 15 x 5 = 75


def test_risk_with_a_stop_too_far_is_refused():
    pol = relaxed({"max_risk_per_trade_pct": "0.05"})  # 50
    decision = decide(RiskEngine(book()), order(qty="15", stop_loss="95"), pol)[0]  # 75 at risk
    assert decision.codes == ("max_risk_per_trade_pct",)
    assert "stop 95 from entry 100" in decision.violations[0].message


def test_risk_counts_a_wrong_side_stop_as_none():
    pol = relaxed({"max_risk_per_trade_pct": 1})
    decision = decide(RiskEngine(book()), order(qty="15", stop_loss="105"), pol)[0]
    assert decision.codes == ("max_risk_per_trade_pct",)
    assert "whole notional" in decision.violations[0].message


def test_risk_measures_from_the_limit_price_and_counts_the_option_multiplier():
    pol = relaxed({"max_risk_per_trade_pct": "0.01"})  # 10
    engine = RiskEngine(book())
    # entry at the limit 10.2, stop 10: 0.2 x 100 (multiplier) x 1 contract = 20
    intent = order("AAPL271217C00190000", qty="1", type=OrderType.LIMIT, limit_price="10.2", stop_loss="10")
    decision = decide(engine, intent, pol, price="10.1")[0]
    assert decision.codes == ("max_risk_per_trade_pct",) and decision.violations[0].value == D("0.02")


def test_risk_clamps():
    pol = relaxed({"max_risk_per_trade_pct": {"limit": 1, "on_violation": "clamp"}})
    decision, final, _ = decide(RiskEngine(book()), order(qty="15"), pol)
    assert decision.allowed and final.qty == D(10)


# --- fat finger: max_order_notional, max_order_qty -----------------------------------------------


def test_order_notional_refused_and_allowed():
    pol = relaxed({"max_order_notional": 1000})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="10"), pol)[0].allowed  # 1,000
    decision = decide(engine, order("MSFT", qty="11"), pol)[0]
    assert decision.codes == ("max_order_notional",) and decision.violations[0].value == D(1100)


def test_order_notional_clamps():
    pol = relaxed({"max_order_notional": {"limit": 1000, "on_violation": "clamp"}})
    decision, final, _ = decide(RiskEngine(book()), order(qty="15"), pol)
    assert decision.allowed and final.qty == D(10)
    assert "max_order_notional: quantity clamped from 15 to 10" in decision.notes


def test_order_qty_refused_and_allowed():
    pol = relaxed({"max_order_qty": 10})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="10"), pol)[0].allowed
    assert codes(decide(engine, order("MSFT", qty="11"), pol)) == ("max_order_qty",)


def test_order_qty_clamps_fractional_orders_to_the_limit():
    pol = relaxed({"max_order_qty": {"limit": "0.5", "on_violation": "clamp"}})
    decision, final, _ = decide(RiskEngine(book()), order("BTC/USD", qty="0.75"), pol, price="1000")
    assert decision.allowed and final.qty == D("0.5")


def test_order_qty_limits_a_notional_order_by_its_derived_quantity():
    pol = relaxed({"max_order_qty": 10})
    assert codes(decide(RiskEngine(book()), order(qty=None, notional="1500"), pol)) == ("max_order_qty",)


# --- price_collar_pct ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"type": OrderType.LIMIT, "limit_price": "89.99"},
        {"type": OrderType.LIMIT, "limit_price": "110.01"},
        {"type": OrderType.STOP, "stop_price": "111"},
        {"type": OrderType.STOP_LIMIT, "stop_price": "100", "limit_price": "120"},
    ],
)
def test_price_collar_refuses_prices_too_far_from_the_reference(kw):
    pol = relaxed({"price_collar_pct": 10})
    decision = decide(RiskEngine(book()), order(qty="1", **kw), pol)[0]
    assert decision.codes == ("price_collar_pct",)
    assert "reference price 100" in decision.violations[0].message


def test_price_collar_allows_prices_within_it_and_market_orders():
    pol = relaxed({"price_collar_pct": 10})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="1", type=OrderType.LIMIT, limit_price="90"), pol)[0].allowed
    assert decide(engine, order("B", qty="1", type=OrderType.STOP, stop_price="110"), pol)[0].allowed
    assert decide(engine, order("C", qty="1"), pol)[0].allowed


# --- symbol lists ----------------------------------------------------------------------------------


def test_denylist_refuses_the_symbol_and_options_on_it():
    pol = relaxed({"symbol_denylist": ["gme"]})  # normalised to upper case
    engine = RiskEngine(book())
    assert codes(decide(engine, order("GME", qty="1"), pol)) == ("symbol_denied",)
    decision = decide(engine, order("GME271217C00020000", qty="1"), pol, price="1")[0]
    assert decision.codes == ("symbol_denied",) and "underlying GME" in decision.violations[0].message
    assert decide(engine, order("AAPL", qty="1"), pol)[0].allowed


def test_denylist_lets_a_held_position_be_closed():
    pol = relaxed({"symbol_denylist": ["GME"]})
    engine = RiskEngine(book([position("GME", "5")]))
    assert decide(engine, order("GME", side="sell", qty="5"), pol)[0].allowed


def test_allowlist_refuses_unlisted_symbols_and_allows_listed_ones_and_their_options():
    pol = relaxed({"symbol_allowlist": ["AAPL", "BTC/USD"]})
    engine = RiskEngine(book())
    assert codes(decide(engine, order("MSFT", qty="1"), pol)) == ("symbol_not_allowed",)
    assert decide(engine, order("AAPL", qty="1"), pol)[0].allowed
    assert decide(engine, order("BTC/USD", qty="0.01"), pol)[0].allowed
    assert decide(engine, order("AAPL271217C00190000", qty="1"), pol, price="1")[0].allowed


def test_an_empty_allowlist_allows_nothing_and_off_allows_anything():
    engine = RiskEngine(book())
    assert codes(decide(engine, order("AAPL", qty="1"), relaxed({"symbol_allowlist": []}))) == ("symbol_not_allowed",)
    assert decide(engine, order("AAPL", qty="1"), relaxed({"symbol_allowlist": "off"}))[0].allowed


# --- max_sector_pct ----------------------------------------------------------------------------


def test_sector_cap_refuses_over_the_limit_and_allows_other_sectors():
    pol = relaxed({"max_sector_pct": 3}, sectors={"AAPL": "Technology", "MSFT": "technology", "XOM": "energy"})
    engine = RiskEngine(book([position("AAPL", "20")]))  # 2% technology
    decision = decide(engine, order("MSFT", qty="15"), pol)[0]  # 3.5%
    assert decision.codes == ("max_sector_pct",)
    assert "sector technology would be 3.50%" in decision.violations[0].message
    assert decide(engine, order("XOM", qty="15"), pol)[0].allowed


def test_unmapped_symbols_share_the_unknown_sector_and_are_capped():
    pol = relaxed({"max_sector_pct": 3}, sectors={"AAPL": "technology"})
    engine = RiskEngine(book([position("AAPL", "20")]))
    assert decide(engine, order("A", qty="20"), pol)[0].allowed
    decision = decide(engine, order("B", qty="15"), pol)[0]
    assert decision.codes == ("max_sector_pct",) and "sector unknown" in decision.violations[0].message


def test_options_take_their_underlyings_sector():
    pol = relaxed({"max_sector_pct": 3}, sectors={"AAPL": "technology"})
    engine = RiskEngine(book([position("AAPL", "20")]))
    decision = decide(engine, order("AAPL271217C00190000", qty="1"), pol, price="15")[0]  # 1,500 more
    assert decision.codes == ("max_sector_pct",) and "technology" in decision.violations[0].message


def test_sector_cap_clamps():
    pol = relaxed({"max_sector_pct": {"limit": 3, "on_violation": "clamp"}}, sectors={"AAPL": "tech", "MSFT": "tech"})
    engine = RiskEngine(book([position("AAPL", "20")]))
    decision, final, _ = decide(engine, order("MSFT", qty="15"), pol)
    assert decision.allowed and final.qty == D(10)


def test_a_new_sector_map_regroups_the_book():
    engine = RiskEngine(book([position("AAPL", "20"), position("MSFT", "10")]))
    decide(engine, order("X", qty="1"), relaxed({"max_sector_pct": 25}, sectors={"AAPL": "tech", "MSFT": "tech"}))
    assert engine.portfolio.committed_in_sector("tech") == D(3000)
    decide(engine, order("Y", qty="1"), relaxed({"max_sector_pct": 25}, sectors={"AAPL": "tech"}))
    assert engine.portfolio.committed_in_sector("tech") == D(2000)
    assert engine.portfolio.committed_in_sector("unknown") == D(1000 + 100 + 100)


# --- min_signal_confidence ------------------------------------------------------------------------


def test_confidence_missing_is_refused():
    pol = relaxed({"min_signal_confidence": "0.6"})
    engine = RiskEngine(book())
    decision = decide(engine, order(qty="1"), pol, caller=BOT)[0]
    assert decision.codes == ("signal_confidence",) and "no signal confidence" in decision.violations[0].message
    assert codes(decide(engine, order(qty="1"), pol, caller=None)) == ("signal_confidence",)


def test_confidence_below_the_minimum_is_refused_and_at_it_allowed():
    pol = relaxed({"min_signal_confidence": "0.6"})
    engine = RiskEngine(book())
    low = Caller("bot-1", "alpaca", confidence=D("0.59"))
    assert codes(decide(engine, order(qty="1"), pol, caller=low)) == ("signal_confidence",)
    ok = Caller("bot-1", "alpaca", confidence=D("0.6"))
    assert decide(engine, order(qty="1"), pol, caller=ok)[0].allowed


def test_confidence_is_not_needed_to_exit():
    pol = relaxed({"min_signal_confidence": "0.6"})
    engine = RiskEngine(book([position("AAPL", "10")]))
    assert decide(engine, order(side="sell", qty="10"), pol, caller=BOT)[0].allowed


# --- the exit privilege, account-wide -------------------------------------------------------------


def test_an_exit_passes_every_exposure_type_rule_at_once():
    pol = relaxed(
        {
            "min_cash_buffer_pct": 99,
            "max_open_positions": 1,
            "max_risk_per_trade_pct": "0.01",
            "max_order_notional": 1,
            "max_order_qty": 1,
            "price_collar_pct": 1,
            "max_sector_pct": "0.01",
            "symbol_allowlist": ["NONE"],
            "min_signal_confidence": "0.9",
        },
        classes={
            "us_equity": {
                "allocation_pct": "0.01",
                "leverage": "0.01",
                "stop_loss": {"mode": "reject", "max_distance_pct": 1},
                "universe_size": 1,
            }
        },
    )
    engine = RiskEngine(book([position("AAPL", "500"), position("MSFT", "500")], cash="0"))
    intent = order(side="sell", qty="500", type=OrderType.LIMIT, limit_price="50")
    decision, _, reservation = decide(engine, intent, pol, caller=BOT)
    assert decision.allowed and decision.reduces_only and reservation is not None
    assert decision.notes == ()  # nothing attached to an exit


def test_the_same_order_as_an_entry_is_refused_by_all_of_them():
    pol = relaxed({"max_order_qty": 1, "price_collar_pct": 1, "symbol_allowlist": ["NONE"]})
    engine = RiskEngine(book())
    intent = order(side="sell", qty="5", type=OrderType.LIMIT, limit_price="50")
    assert set(codes(decide(engine, intent, pol))) == {"max_order_qty", "price_collar_pct", "symbol_not_allowed"}


def test_reduce_only_state_still_applies_with_every_rule():
    engine = RiskEngine(book([position("AAPL", "10")]))
    pol = relaxed({"max_order_qty": 1})
    assert codes(decide(engine, order("MSFT", qty="5"), pol, state=TradingState.REDUCE_ONLY)) == (
        "reduce_only",
        "max_order_qty",
    )
    assert decide(engine, order(side="sell", qty="5"), pol, state=TradingState.REDUCE_ONLY)[0].allowed
