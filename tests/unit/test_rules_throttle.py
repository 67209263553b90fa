"""Per-credential throttles: rate limits and duplicate orders. Neither is exempt for exits."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from gateway.model import OrderType, TradingState
from gateway.risk.activity import Activity, RateWindow
from gateway.risk.engine import EngineConfig, RiskEngine

from .test_rules_support import (
    BOT,
    OTHER_BOT,
    book,
    codes,
    decide,
    order,
    position,
    relaxed,
)

# --- rate_limit ------------------------------------------------------------------------------------


def test_orders_per_second():
    pol = relaxed({"orders_per_second": 2})
    engine = RiskEngine(book())
    assert decide(engine, order("A", qty="1"), pol, caller=BOT, t=101.0)[0].allowed
    assert decide(engine, order("B", qty="1"), pol, caller=BOT, t=101.5)[0].allowed
    decision = decide(engine, order("C", qty="1"), pol, caller=BOT, t=101.9)[0]
    assert decision.codes == ("rate_limit",)
    assert "bot-1 already had 2 orders accepted in the last second, limit 2 per second" in decision.violations[0].message
    assert decide(engine, order("C", qty="1"), pol, caller=BOT, t=102.01)[0].allowed  # the first one aged out


def test_orders_per_minute():
    pol = relaxed({"orders_per_minute": 3})
    engine = RiskEngine(book(), EngineConfig(max_snapshot_age_s=1e9))
    for i, t in enumerate((101.0, 110.0, 150.0)):
        assert decide(engine, order(f"S{i}", qty="1"), pol, caller=BOT, t=t)[0].allowed
    decision = decide(engine, order("X", qty="1"), pol, caller=BOT, t=160.9)[0]
    assert decision.codes == ("rate_limit",) and "last minute" in decision.violations[0].message
    assert decide(engine, order("X", qty="1"), pol, caller=BOT, t=161.01)[0].allowed


def test_orders_per_day():
    pol = relaxed({"orders_per_day": 2})
    portfolio = book(t=100.0)
    engine = RiskEngine(portfolio)
    assert decide(engine, order("A", qty="1"), pol, caller=BOT, t=101.0)[0].allowed
    portfolio.snapshot_at = 40_000.0
    assert decide(engine, order("B", qty="1"), pol, caller=BOT, t=40_001.0)[0].allowed
    portfolio.snapshot_at = 86_000.0
    decision = decide(engine, order("C", qty="1"), pol, caller=BOT, t=86_001.0)[0]
    assert decision.codes == ("rate_limit",) and "24 hours" in decision.violations[0].message
    portfolio.snapshot_at = 86_570.0
    assert decide(engine, order("C", qty="1"), pol, caller=BOT, t=86_571.0)[0].allowed  # A's minute left the day


def test_rates_are_per_credential():
    pol = relaxed({"orders_per_second": 1})
    engine = RiskEngine(book())
    assert decide(engine, order("A", qty="1"), pol, caller=BOT)[0].allowed
    assert codes(decide(engine, order("B", qty="1"), pol, caller=BOT)) == ("rate_limit",)
    assert decide(engine, order("B", qty="1"), pol, caller=OTHER_BOT)[0].allowed


def test_replaces_have_their_own_limits():
    pol = relaxed({"orders_per_second": 1, "replaces_per_second": 1})
    engine = RiskEngine(book())
    assert decide(engine, order("A", qty="1"), pol, caller=BOT)[0].allowed
    assert decide(engine, order("B", qty="1"), pol, caller=BOT, action="replace")[0].allowed  # a different budget
    decision = decide(engine, order("C", qty="1"), pol, caller=BOT, action="replace")[0]
    assert decision.codes == ("rate_limit",) and "replaces" in decision.violations[0].message


@pytest.mark.parametrize("window", ["replaces_per_minute", "replaces_per_day"])
def test_replace_minute_and_day_limits(window):
    pol = relaxed({window: 1})
    engine = RiskEngine(book())
    assert decide(engine, order("A", qty="1"), pol, caller=BOT, action="replace", t=101.0)[0].allowed
    assert codes(decide(engine, order("B", qty="1"), pol, caller=BOT, action="replace", t=105.0)) == ("rate_limit",)


def test_rate_limits_apply_to_exits():
    pol = relaxed({"orders_per_second": 1})
    engine = RiskEngine(book([position("AAPL", "10")]))
    assert decide(engine, order(side="sell", qty="1"), pol, caller=BOT)[0].allowed
    decision = decide(engine, order(side="sell", qty="2"), pol, caller=BOT)[0]
    assert decision.codes == ("rate_limit",)


def test_refused_orders_do_not_count():
    pol = relaxed({"orders_per_second": 1, "max_order_qty": 5})
    engine = RiskEngine(book())
    for _ in range(3):
        assert codes(decide(engine, order("A", qty="9"), pol, caller=BOT)) == ("max_order_qty",)
    assert decide(engine, order("A", qty="1"), pol, caller=BOT)[0].allowed


def test_decide_alone_records_nothing():
    pol = relaxed({"orders_per_second": 1})
    engine = RiskEngine(book())
    for _ in range(3):
        decision, _, _ = engine.decide(order(qty="1"), policy=pol, state=TradingState.ACTIVE, price=D(100),
                                       now=None, monotonic=101.0, caller=BOT)
        assert decision.allowed


def test_orders_without_a_caller_are_not_throttled():
    pol = relaxed({"orders_per_second": 1, "duplicate_window_s": 5})
    engine = RiskEngine(book())
    for _ in range(3):
        assert decide(engine, order(qty="1"), pol, caller=None)[0].allowed


def test_rate_window_is_amortised_constant_and_bounded():
    window = RateWindow()
    for i in range(100_000):
        window.record(i * 0.5)  # two a second for ~14 hours
    seconds, minutes, day = window.counts(50_000.0)
    assert (seconds, minutes, day) == (1, 119, 100_000)  # (49999, 50000] and (49940, 50000]
    assert len(window.day_buckets) <= 1441  # minute buckets, not one entry per order


# --- duplicate_order -------------------------------------------------------------------------------


def test_the_same_order_again_inside_the_window_is_refused():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book())
    intent = order(qty="3", type=OrderType.LIMIT, limit_price="99")
    assert decide(engine, intent, pol, caller=BOT, t=101.0)[0].allowed
    decision = decide(engine, intent, pol, caller=BOT, t=103.0)[0]
    assert decision.codes == ("duplicate_order",)
    assert "buy AAPL (qty 3, limit 99) was accepted 2.0s ago; window 5s" in decision.violations[0].message


def test_after_the_window_it_is_allowed_again():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="3"), pol, caller=BOT, t=101.0)[0].allowed
    assert decide(engine, order(qty="3"), pol, caller=BOT, t=106.01)[0].allowed


@pytest.mark.parametrize(
    "second",
    [
        {"qty": "4"},
        {"side": "sell"},
        {"symbol": "MSFT"},
        {"type": OrderType.LIMIT, "limit_price": "98"},
    ],
)
def test_a_different_order_is_not_a_duplicate(second):
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="3", type=OrderType.LIMIT, limit_price="99"), pol, caller=BOT)[0].allowed
    kw = {"qty": "3", "type": OrderType.LIMIT, "limit_price": "99", **second}
    symbol = kw.pop("symbol", "AAPL")
    assert decide(engine, order(symbol, **kw), pol, caller=BOT)[0].allowed


def test_another_credential_is_not_a_duplicate():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="3"), pol, caller=BOT)[0].allowed
    assert decide(engine, order(qty="3"), pol, caller=OTHER_BOT)[0].allowed


def test_duplicates_apply_to_exits():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book([position("AAPL", "10")]))
    assert decide(engine, order(side="sell", qty="2"), pol, caller=BOT)[0].allowed
    assert codes(decide(engine, order(side="sell", qty="2"), pol, caller=BOT)) == ("duplicate_order",)


def test_a_refused_order_is_not_remembered():
    pol = relaxed({"duplicate_window_s": 5, "max_order_qty": 2})
    engine = RiskEngine(book())
    assert codes(decide(engine, order(qty="3"), pol, caller=BOT)) == ("max_order_qty",)
    pol2 = relaxed({"duplicate_window_s": 5})
    assert decide(engine, order(qty="3"), pol2, caller=BOT)[0].allowed


def test_a_replace_does_not_collide_with_a_submit():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book())
    assert decide(engine, order(qty="3"), pol, caller=BOT)[0].allowed
    assert decide(engine, order(qty="3"), pol, caller=BOT, action="replace")[0].allowed
    assert codes(decide(engine, order(qty="3"), pol, caller=BOT, action="replace")) == ("duplicate_order",)


def test_the_fingerprint_is_the_order_as_sent_not_as_clamped():
    pol = relaxed({"duplicate_window_s": 5, "max_order_qty": {"limit": 2, "on_violation": "clamp"}})
    engine = RiskEngine(book())
    decision, final, _ = decide(engine, order(qty="3"), pol, caller=BOT)
    assert decision.allowed and final.qty == D(2)
    again = decide(engine, order(qty="3"), pol, caller=BOT)[0]
    assert not again.allowed and "duplicate_order" in again.codes  # and a duplicate is never clamped


def test_fingerprints_expire():
    activity = Activity()
    for i in range(10_000):
        activity.record("k", "order", ("k", i), float(i), 5.0)
    assert len(activity._seen) <= 6 and len(activity._seen_order) <= 6


# --- exits: the privileged path stops at the throttles and the lock -----------------------------


def test_exits_pass_exposure_rules_but_not_locked_rate_or_duplicate():
    pol = relaxed({"duplicate_window_s": 5, "orders_per_second": 5, "max_order_qty": 1})
    engine = RiskEngine(book([position("AAPL", "500")]))  # 50% in one symbol
    exit_order = order(side="sell", qty="10")
    assert decide(engine, exit_order, pol, caller=BOT)[0].allowed  # over qty and position limits: exempt
    assert codes(decide(engine, exit_order, pol, caller=BOT)) == ("duplicate_order",)
    assert codes(decide(engine, order(side="sell", qty="11"), pol, caller=BOT, state=TradingState.LOCKED)) == (
        "trading_locked",
    )
    for i in range(4):
        decide(engine, order(side="sell", qty=str(20 + i)), pol, caller=BOT)
    assert codes(decide(engine, order(side="sell", qty="30"), pol, caller=BOT)) == ("rate_limit",)


def test_a_close_after_a_trailing_stop_sell_of_the_same_size_is_not_a_duplicate():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book([position("AAPL", "10")]))
    trailing = order(side="sell", qty="5", type=OrderType.TRAILING_STOP, trail_percent="2")
    assert decide(engine, trailing, pol, caller=BOT)[0].allowed
    assert decide(engine, order(side="sell", qty="5"), pol, caller=BOT, action="close")[0].allowed


def test_a_market_sell_after_a_trailing_stop_sell_of_the_same_size_is_not_a_duplicate():
    pol = relaxed({"duplicate_window_s": 5})
    engine = RiskEngine(book([position("AAPL", "10")]))
    assert decide(engine, order(side="sell", qty="5", type=OrderType.TRAILING_STOP, trail_percent="2"), pol,
                  caller=BOT)[0].allowed
    assert decide(engine, order(side="sell", qty="5"), pol, caller=BOT)[0].allowed
