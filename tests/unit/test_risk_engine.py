"""One test per denial path of the risk engine, plus exits, reservations and clamping."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from gateway.model import Account, AssetClass, Order, OrderIntent, OrderStatus, OrderType, Position, Side, TimeInForce, TradingState
from gateway.policy.schema import parse_policy
from gateway.risk.engine import EngineConfig, RiskEngine
from gateway.ledger import Ledger
from gateway.risk.portfolio import Portfolio

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)
DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def policy(**account):
    """The default policy with stop losses and risk-per-trade off: these tests are about the
    headline limits (those two rules have their own tests)."""
    doc = yaml.safe_load(DEFAULT.read_bytes())
    doc["gateway_id"] = "gw-test"
    doc["account"]["max_risk_per_trade_pct"] = False
    doc["account"].update(account)
    for rules in doc["asset_classes"].values():
        rules["stop_loss"] = {"mode": "off"}
    return parse_policy(yaml.safe_dump(doc).encode())


def account(equity="100000"):
    e = D(equity)
    return Account(id="acct", equity=e, cash=e, buying_power=2 * e, long_market_value=D(0), short_market_value=D(0), last_equity=e)


def book(positions=(), orders=(), equity="100000", t=100.0):
    p = Portfolio()
    ledger = Ledger(p)
    ledger.apply_snapshot(account(equity), list(positions), list(orders), ledger.begin_snapshot(), t)
    return p


def buy(symbol="AAPL", qty="10", **kw):
    return OrderIntent(symbol=symbol, asset_class=kw.pop("asset_class", AssetClass.US_EQUITY), side=Side.BUY,
                       type=kw.pop("type", OrderType.MARKET), time_in_force=TimeInForce.DAY, qty=D(qty) if qty else None, **kw)


def sell(symbol="AAPL", qty="10", **kw):
    return OrderIntent(symbol=symbol, asset_class=AssetClass.US_EQUITY, side=Side.SELL, type=OrderType.MARKET,
                       time_in_force=TimeInForce.DAY, qty=D(qty), **kw)


def decide(engine, intent, pol=None, price="100", state=TradingState.ACTIVE, t=101.0):
    return engine.check_and_reserve(intent, policy=pol or policy(), state=state,
                                    price=D(price) if price is not None else None, now=NOW, monotonic=t)


def position(symbol="AAPL", qty="10", price="100"):
    return Position(symbol, AssetClass.US_EQUITY, D(qty), D(price), D(price))


# --- fail-closed preconditions ----------------------------------------------------------

def test_no_policy_rejects():
    decision, _, reservation = RiskEngine(book()).check_and_reserve(
        buy(), policy=None, state=TradingState.ACTIVE, price=D(100), now=NOW, monotonic=101.0)
    assert not decision.allowed and decision.codes == ("no_policy",) and reservation is None


def test_never_snapshotted_account_is_stale():
    decision, _, _ = decide(RiskEngine(Portfolio()), buy())
    assert decision.codes == ("stale_account",)
    assert "never" in decision.violations[0].message


def test_old_snapshot_is_stale():
    engine = RiskEngine(book(t=100.0), EngineConfig(max_snapshot_age_s=15))
    assert decide(engine, buy(), t=114.0)[0].allowed
    assert decide(engine, buy(), t=116.0)[0].codes == ("stale_account",)


@pytest.mark.parametrize("price", [None, "0", "NaN"])
def test_missing_reference_price_rejects(price):
    decision, _, _ = decide(RiskEngine(book()), buy(), price=price)
    assert decision.codes == ("no_reference_price",)


def test_no_equity_rejects():
    decision, _, _ = decide(RiskEngine(book(equity="0")), buy())
    assert decision.codes == ("no_equity",)


# --- trading state ----------------------------------------------------------------------

def test_locked_refuses_entries_and_exits():
    engine = RiskEngine(book([position(qty="10")]))
    assert decide(engine, buy(qty="1"), state=TradingState.LOCKED)[0].codes == ("trading_locked",)
    assert decide(engine, sell(qty="5"), state=TradingState.LOCKED)[0].codes == ("trading_locked",)


def test_reduce_only_refuses_entries_passes_exits():
    engine = RiskEngine(book([position(qty="10")]))
    assert decide(engine, buy(qty="1"), state=TradingState.REDUCE_ONLY)[0].codes == ("reduce_only",)
    decision, _, _ = decide(engine, sell(qty="5"), state=TradingState.REDUCE_ONLY)
    assert decision.allowed and decision.reduces_only


def test_reduce_only_counts_pending_exits():
    # Two sells of 6 against a long of 10: the second would flip the position short.
    engine = RiskEngine(book([position(qty="10")]))
    assert decide(engine, sell(qty="6"), state=TradingState.REDUCE_ONLY)[0].allowed
    assert decide(engine, sell(qty="6"), state=TradingState.REDUCE_ONLY)[0].codes == ("reduce_only",)


# --- the three headline limits ---------------------------------------------------------

def test_max_position_pct_rejects_three_percent():
    decision, _, reservation = decide(RiskEngine(book()), buy(qty="30"), price="100")  # 3,000 of 100,000
    assert not decision.allowed and reservation is None
    violation = decision.violations[0]
    assert violation.code == "max_position_pct"
    assert violation.limit == D(2) and violation.value == D(3)
    assert "3.00%" in violation.message and "limit 2%" in violation.message
    assert decision.policy_version == 1


def test_max_position_pct_counts_existing_position_and_open_orders():
    open_order = Order(id="o1", client_order_id="c1", symbol="AAPL", asset_class=AssetClass.US_EQUITY, side=Side.BUY,
                       type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, status=OrderStatus.NEW,
                       created_at=NOW, updated_at=NOW, submitted_at=NOW, qty=D(5), limit_price=D(100))
    engine = RiskEngine(book([position(qty="10")], [open_order]))  # 1,000 held + 500 pending
    assert decide(engine, buy(qty="5"))[0].allowed  # 2.0% exactly
    assert decide(engine, buy(qty="1"))[0].codes == ("max_position_pct",)


def test_max_exposure_pct_rejects_over_twenty_percent():
    engine = RiskEngine(book())
    for i in range(13):  # 13 x 1.5% = 19.5%
        assert decide(engine, buy(symbol=f"S{i}", qty="15"))[0].allowed
    decision, _, _ = decide(engine, buy(symbol="S13", qty="15"))
    assert decision.codes == ("max_exposure_pct",)
    assert decision.violations[0].value == D("21")


def test_max_leverage_rejects_gross_notional():
    pol = policy(max_leverage="0.05")  # 5% gross
    engine = RiskEngine(book())
    for i in range(2):
        assert decide(engine, buy(symbol=f"S{i}", qty="20"), pol)[0].allowed  # 2% each
    decision, _, _ = decide(engine, buy(symbol="S2", qty="20"), pol)
    assert decision.codes == ("max_leverage",)
    assert decision.violations[0].value == D("0.06")


def test_max_leverage_rejects_a_leverage_setting_above_the_limit():
    portfolio = book()
    portfolio.set_leverage("BTC/USDT", AssetClass.CRYPTO, D(50))
    decision, _, _ = decide(RiskEngine(portfolio), buy(symbol="BTC/USDT", qty="0.001", asset_class=AssetClass.CRYPTO),
                            price="60000")
    assert decision.codes[0] == "max_leverage"
    assert "50x" in decision.violations[0].message


def test_multiple_violations_are_all_reported():
    decision, _, _ = decide(RiskEngine(book()), buy(qty="250"))  # 25%: position and exposure
    assert set(decision.codes) == {"max_position_pct", "max_exposure_pct"}


# --- valuation --------------------------------------------------------------------------

def test_limit_above_reference_is_valued_at_the_limit():
    engine = RiskEngine(book())
    decision, _, _ = decide(engine, buy(qty="19", type=OrderType.LIMIT, limit_price=D("110")), price="100")
    assert decision.codes == ("max_position_pct",)  # 19 x 110 = 2.09%


def test_notional_order_is_sized_at_the_reference_price():
    engine = RiskEngine(book())
    assert decide(engine, buy(qty=None, notional=D("2000")))[0].allowed
    assert decide(engine, buy(symbol="MSFT", qty=None, notional=D("2000.01")))[0].codes == ("max_position_pct",)


def test_option_contracts_count_one_hundred_shares():
    engine = RiskEngine(book())
    intent = buy(symbol="AAPL271217C00190000", qty="1", asset_class=AssetClass.US_OPTION)
    decision, _, _ = decide(engine, intent, price="25")  # 1 x 25 x 100 = 2,500 = 2.5%
    assert decision.codes == ("max_position_pct",)


# --- exits are privileged ---------------------------------------------------------------

def test_exit_passes_even_when_book_is_over_the_limits():
    engine = RiskEngine(book([position(qty="500")]))  # 50% of equity in one symbol
    decision, _, reservation = decide(engine, sell(qty="500"))
    assert decision.allowed and decision.reduces_only and reservation is not None


def test_sell_beyond_the_position_is_an_entry():
    engine = RiskEngine(book([position(qty="10")]))
    decision, _, _ = decide(engine, sell(qty="40"))  # flips to short 30 = 3%
    assert decision.codes == ("max_position_pct",)


# --- reservations -----------------------------------------------------------------------

def test_check_and_reserve_is_atomic_across_twenty_orders():
    engine = RiskEngine(book())
    allowed = [decide(engine, buy(symbol=f"S{i}", qty="15"))[0].allowed for i in range(20)]
    assert sum(allowed) == 13
    assert engine.portfolio.committed == D(13 * 1500)


def test_uncount_returns_capacity():
    engine = RiskEngine(book())
    _, _, counted = decide(engine, buy(qty="20"))
    assert decide(engine, buy(qty="1"))[0].codes == ("max_position_pct",)
    engine.portfolio.uncount(counted)
    assert engine.portfolio.committed == D(0)
    assert decide(engine, buy(qty="1"))[0].allowed


# --- clamp ------------------------------------------------------------------------------

def test_clamp_sizes_the_order_down_and_says_so():
    pol = policy(max_position_pct={"limit": 2, "on_violation": "clamp"})
    decision, intent, reservation = decide(RiskEngine(book()), buy(qty="30"), pol)
    assert decision.allowed and decision.clamped_qty == D(20) and intent.qty == D(20)
    assert "clamped from 30 to 20" in decision.notes[0]
    assert reservation.qty == D(20)


def test_clamp_is_refused_when_another_violated_rail_rejects():
    pol = policy(max_position_pct={"limit": 2, "on_violation": "clamp"})
    decision, _, _ = decide(RiskEngine(book()), buy(qty="250"), pol)  # exposure (reject) also violated
    assert not decision.allowed and "max_exposure_pct" in decision.codes


def test_clamp_with_no_room_rejects():
    pol = policy(max_position_pct={"limit": 2, "on_violation": "clamp"})
    engine = RiskEngine(book([position(qty="20")]))
    assert decide(engine, buy(qty="5"), pol)[0].codes == ("max_position_pct",)


def test_a_reduce_only_exit_is_an_exit_where_the_venue_enforces_reduce_only():
    """freqtrade keeps its own reduce-only stop open while it sells: on Binance neither can open a
    position, so the sell is an exit even though the stop already uses the exit capacity."""
    engine = RiskEngine(book([position(qty="10")]))
    stop = sell(qty="10", stop_price=D(90), reduce_only=True)
    assert decide(engine, stop)[0].reduces_only  # (a market sell standing in for the resting stop)
    exit_ = sell(qty="10", reduce_only=True)
    assert not engine.decide(exit_, policy=policy(), state=TradingState.ACTIVE, price=D(100), now=NOW,
                             monotonic=101.0)[0].reduces_only  # without enforcement: beyond the capacity
    decision = engine.decide(exit_, policy=policy(), state=TradingState.ACTIVE, price=D(100), now=NOW,
                             monotonic=101.0, reduce_only_enforced=True)[0]
    assert decision.allowed and decision.reduces_only
    too_big = sell(qty="11", reduce_only=True)  # more than the position is never "only reducing"
    assert not engine.decide(too_big, policy=policy(), state=TradingState.ACTIVE, price=D(100), now=NOW,
                             monotonic=101.0, reduce_only_enforced=True)[0].reduces_only
