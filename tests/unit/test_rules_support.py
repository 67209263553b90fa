"""Helpers shared by the rule tests (test_rules_*.py), plus a check of the helpers themselves.

``relaxed(...)`` is the default policy with every optional rule off (the three hard rails at
their ceilings, stop loss off), so a test turns on exactly the rule it is about."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import yaml

from gateway.model import (
    Account,
    AssetClass,
    Caller,
    OrderClass,
    OrderIntent,
    OrderType,
    Position,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    TradingState,
    classify_symbol,
)
from gateway.policy.schema import LoadedPolicy, parse_policy
from gateway.risk.engine import RiskEngine
from gateway.ledger import Ledger
from gateway.risk.portfolio import Portfolio

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)
DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
BOT = Caller("bot-1", "alpaca")
OTHER_BOT = Caller("bot-2", "alpaca")

_OPTIONAL_ACCOUNT = (
    "min_cash_buffer_pct",
    "max_open_positions",
    "max_risk_per_trade_pct",
    "max_order_notional",
    "max_order_qty",
    "price_collar_pct",
    "duplicate_window_s",
    "min_signal_confidence",
    "max_sector_pct",
    "symbol_allowlist",
    "symbol_denylist",
    "orders_per_second",
    "orders_per_minute",
    "orders_per_day",
    "replaces_per_second",
    "replaces_per_minute",
    "replaces_per_day",
)


def default_doc() -> dict[str, Any]:
    doc = yaml.safe_load(DEFAULT.read_bytes())
    doc["gateway_id"] = "gw-test"
    return doc


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "sectors":
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def relaxed_doc() -> dict[str, Any]:
    doc = default_doc()
    for name in _OPTIONAL_ACCOUNT:
        doc["account"][name] = False
    for cls in doc["asset_classes"].values():
        for name in list(cls):
            cls[name] = False
    doc["asset_classes"]["us_option"]["long_only"] = False
    for name in ("daily_loss_pct", "weekly_loss_pct", "monthly_loss_pct"):
        doc["circuit_breakers"][name] = False
    return doc


def make(doc: dict[str, Any]) -> LoadedPolicy:
    return parse_policy(yaml.safe_dump(doc).encode())


def relaxed(account: dict | None = None, classes: dict | None = None, **sections: Any) -> LoadedPolicy:
    """Every optional rule off, then ``account`` / ``classes`` / other sections merged in."""
    doc = relaxed_doc()
    _merge(doc, {"account": account or {}, "asset_classes": classes or {}, **sections})
    return make(doc)


def default(account: dict | None = None, classes: dict | None = None, **sections: Any) -> LoadedPolicy:
    doc = default_doc()
    _merge(doc, {"account": account or {}, "asset_classes": classes or {}, **sections})
    return make(doc)


def account(equity: str = "100000", cash: str | None = None, last_equity: str | None = None) -> Account:
    e = D(equity)
    return Account(
        id="acct",
        equity=e,
        cash=D(cash) if cash is not None else e,
        buying_power=2 * e,
        long_market_value=D(0),
        short_market_value=D(0),
        last_equity=D(last_equity) if last_equity is not None else e,
    )


def book(positions=(), orders=(), equity: str = "100000", cash: str | None = None, t: float = 100.0) -> Portfolio:
    p = Portfolio()
    ledger = Ledger(p)
    ledger.apply_snapshot(account(equity, cash), list(positions), list(orders), ledger.begin_snapshot(), t)
    return p


def position(symbol: str = "AAPL", qty: str = "10", price: str = "100") -> Position:
    return Position(symbol, classify_symbol(symbol), D(qty), D(price), D(price))


def order(
    symbol: str = "AAPL",
    side: str = "buy",
    qty: str | None = "10",
    *,
    type: OrderType = OrderType.MARKET,
    tif: TimeInForce = TimeInForce.DAY,
    stop_loss: str | None = None,
    take_profit: str | None = None,
    order_class: OrderClass | None = None,
    **kw: Any,
) -> OrderIntent:
    """An intent; ``stop_loss``/``take_profit`` make it oto/bracket unless order_class is given."""
    for name in ("limit_price", "stop_price", "notional", "trail_percent", "trail_price"):
        if isinstance(kw.get(name), str):
            kw[name] = D(kw[name])
    if stop_loss is not None:
        kw["stop_loss"] = StopLoss(D(stop_loss))
    if take_profit is not None:
        kw["take_profit"] = TakeProfit(D(take_profit))
    if order_class is None:
        legs = (stop_loss is not None) + (take_profit is not None)
        order_class = {0: OrderClass.SIMPLE, 1: OrderClass.OTO, 2: OrderClass.BRACKET}[legs]
    return OrderIntent(
        symbol=symbol,
        asset_class=kw.pop("asset_class", None) or classify_symbol(symbol),
        side=Side(side),
        type=type,
        time_in_force=tif,
        qty=D(qty) if qty is not None else None,
        order_class=order_class,
        **kw,
    )


def decide(
    engine: RiskEngine,
    intent: OrderIntent,
    pol: LoadedPolicy,
    price: str = "100",
    *,
    state: TradingState = TradingState.ACTIVE,
    t: float = 101.0,
    caller: Caller | None = None,
    action: str = "submit",
    now: datetime = NOW,
):
    """check_and_reserve: (decision, final intent, reservation)."""
    return engine.check_and_reserve(
        intent,
        policy=pol,
        state=state,
        price=D(price) if price is not None else None,
        now=now,
        monotonic=t,
        caller=caller,
        action=action,
    )


def codes(result) -> tuple[str, ...]:
    return result[0].codes


def test_relaxed_policy_turns_every_optional_rule_off():
    from gateway.risk.engine import compile_policy

    compiled = compile_policy(relaxed().policy)
    for cls in AssetClass:
        on = [r.code for r, _ in compiled.entries[cls]]
        assert on == ["trading_locked", "max_leverage", "max_position_pct", "max_exposure_pct"]


def test_default_policy_turns_every_rule_on_somewhere():
    from gateway.risk.engine import compile_policy
    from gateway.risk.rules import RULES

    compiled = compile_policy(default().policy)
    on = {r.code for cls in AssetClass for r, _ in compiled.entries[cls]}
    assert on == {r.code for r in RULES} - {"signal_confidence", "symbol_not_allowed", "symbol_denied"}
    # options-only rules run for options only
    assert "naked_option" in {r.code for r, _ in compiled.entries[AssetClass.US_OPTION]}
    assert "naked_option" not in {r.code for r, _ in compiled.entries[AssetClass.US_EQUITY]}
