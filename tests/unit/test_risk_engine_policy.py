"""The engine and the policy: compiled once per policy object, O(1) in the book, every code
documented."""

from __future__ import annotations

import random
import re
from decimal import Decimal as D
from pathlib import Path

import pytest

from gateway.model import AssetClass
from gateway.policy.schema import Policy
from gateway.risk.engine import RiskEngine, compile_policy
from gateway.risk.portfolio import Portfolio
from gateway.risk.rules import RULES

from .test_rules_support import BOT, book, decide, default, order, position, relaxed

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
PRECONDITIONS = ("no_policy", "stale_account", "no_reference_price", "no_equity", "unknown_symbol")


def test_the_engine_compiles_a_policy_once_per_object(monkeypatch):
    pol = default()
    engine = RiskEngine(book())
    calls = []
    original = Policy.rails
    monkeypatch.setattr(Policy, "rails", lambda self: calls.append(1) or original(self))
    for i in range(20):
        decide(engine, order(f"S{i}", qty="1"), pol, caller=BOT)
    assert len(calls) == 1
    first = engine.compiled(pol.policy)
    assert engine.compiled(pol.policy) is first
    other = default({"max_order_qty": 5})
    decide(engine, order("X", qty="1"), other)
    assert engine.compiled(other.policy) is not first and len(calls) == 2


def test_a_new_policy_object_takes_effect_on_the_next_check():
    engine = RiskEngine(book())
    assert decide(engine, order(qty="5"), relaxed())[0].allowed
    assert decide(engine, order("B", qty="5"), relaxed({"max_order_qty": 4}))[0].codes == ("max_order_qty",)


class NoWalk(dict):
    """A book that refuses to be walked: any O(n) pass over it fails the test."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the engine walked the whole book")

    __iter__ = values = items = keys = _refuse


def test_a_check_never_walks_the_book():
    positions = [position(f"S{i:04d}", "1", "1") for i in range(2000)]  # 2% of equity in all
    portfolio = book(positions)
    engine = RiskEngine(portfolio)
    wide = {cls: {"universe_size": "off"} for cls in ("crypto", "us_option", "us_equity")}
    wide["us_equity"]["stop_loss"] = {"mode": "attach", "max_distance_pct": 8}
    pol = default({"max_open_positions": "off"}, wide, sectors={"S0001": "tech"})
    decide(engine, order("S0001", qty="1"), pol, price="10")  # installs the sector map (one recount)
    portfolio.books = NoWalk(portfolio.books)
    for symbol in ("S0002", "NEW", "BTC/USD", "S0003"):
        decision, _, reservation = decide(engine, order(symbol, qty="1"), pol, price="10", caller=BOT)
        assert decision.allowed, decision.codes
        portfolio.uncount(reservation)
    assert decide(engine, order("S0004", side="sell", qty="1"), pol, price="10", caller=BOT)[0].reduces_only


def test_exits_skip_every_exempt_rule_and_run_only_the_others():
    compiled = compile_policy(default().policy)
    for cls in AssetClass:
        assert [r.code for r, _ in compiled.exits[cls]] == ["trading_locked", "rate_limit", "duplicate_order"]


def test_every_rule_reads_fields_the_schema_has():
    for r in RULES:
        paths = r.rail if isinstance(r.rail, tuple) else (r.rail,) if r.rail else ()
        for path in paths:
            for cls in AssetClass:
                resolved = path.format(asset_class=cls.value)
                model, parts = Policy, resolved.split(".")
                found = True
                for part in parts:
                    field = model.model_fields.get(part)
                    if field is None:
                        found = False
                        break
                    model = field.annotation
                if "{asset_class}" not in path:
                    assert found, resolved
    # the options-only rules resolve for options
    options = {r.code for r, _ in compile_policy(default().policy).entries[AssetClass.US_OPTION]}
    assert {"naked_option", "option_near_expiry"} <= options


def test_every_code_is_documented():
    text = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    every = {c for r in RULES for c in r.codes} | set(PRECONDITIONS) | {"reduce_only", "trading_locked"}
    assert every <= documented, sorted(every - documented)
    for r in RULES:
        paths = r.rail if isinstance(r.rail, tuple) else (r.rail,) if r.rail else ()
        for path in paths:
            leaf = path.rsplit(".", 1)[-1]
            assert re.search(rf"\b{leaf}\b", text), leaf


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        decide(RiskEngine(book()), order(qty="1"), default(), action="cancel")


def test_the_default_policy_allows_an_ordinary_order_and_reports_everything_it_trips():
    engine = RiskEngine(book())
    # An entry without a stop gets one attached; one with its own stop keeps it.
    decision, final, _ = decide(engine, order(qty="10"), default(), caller=BOT)
    assert decision.allowed and final.stop_loss is not None and final.stop_loss.stop_price == D("92")
    protected = order(qty="9", stop_loss="95")  # not the same order again (duplicate_order)
    assert decide(engine, protected, default(), caller=BOT)[0].allowed
    decision, final, _ = decide(engine, order("BTC/USD", qty="0.01"), default(), price="60000", caller=BOT)
    assert decision.allowed and final.stop_loss is not None
    decision = decide(engine, order("GME", qty="300"), default(), caller=BOT)[0]
    assert set(decision.codes) >= {"max_position_pct", "max_exposure_pct", "max_risk_per_trade_pct"}


def test_aggregates_match_a_full_recount_after_random_changes():
    rng = random.Random(7)
    symbols = ["AAPL", "MSFT", "BTC/USD", "ETH/USD", "AAPL271217C00190000", "SPY"]
    portfolio = book([position("AAPL", "10"), position("BTC/USD", "0.5", "60000")])
    engine = RiskEngine(portfolio)
    pol = relaxed(sectors={"AAPL": "tech", "MSFT": "tech", "BTC/USD": "crypto"})
    held = []
    for _ in range(300):
        step = rng.random()
        symbol = rng.choice(symbols)
        if step < 0.5:
            side = rng.choice(["buy", "sell"])
            _, _, reservation = decide(engine, order(symbol, side=side, qty=str(rng.randint(1, 3))), pol,
                                       price=str(rng.randint(50, 150)))
            if reservation is not None:
                held.append(reservation)
        elif step < 0.7 and held:
            portfolio.uncount(held.pop(rng.randrange(len(held))))
        elif step < 0.9:
            book_ = portfolio.book(symbol)
            cls = book_.asset_class if book_ else AssetClass.US_EQUITY
            portfolio.update_mark(symbol, cls, D(rng.randint(50, 150)))
        else:
            book_ = portfolio.book(symbol)
            if book_ is not None:
                portfolio.set_leverage(symbol, book_.asset_class, D(rng.choice([1, 2, 5])))
    snapshot = (
        portfolio.gross_notional,
        portfolio.committed,
        dict(portfolio.gross_by_class),
        dict(portfolio.committed_by_class),
        {k: v for k, v in portfolio.committed_by_sector.items() if v},
        portfolio.pending_buy_committed,
        portfolio.occupied,
        dict(portfolio.occupied_by_class),
        portfolio.open_positions,
    )
    portfolio._recount()
    again = (
        portfolio.gross_notional,
        portfolio.committed,
        dict(portfolio.gross_by_class),
        dict(portfolio.committed_by_class),
        {k: v for k, v in portfolio.committed_by_sector.items() if v},
        portfolio.pending_buy_committed,
        portfolio.occupied,
        dict(portfolio.occupied_by_class),
        portfolio.open_positions,
    )
    for a, b in zip(snapshot, again, strict=True):
        if isinstance(a, dict):
            assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < D("1e-12") for k in a)
        else:
            assert abs(a - b) < D("1e-12")


def test_a_fresh_portfolio_is_empty_in_every_aggregate():
    p = Portfolio()
    assert p.occupied == 0 and p.committed_by_class[AssetClass.CRYPTO] == 0 and p.committed_in_sector("x") == 0
    assert p.sector_of("AAPL", AssetClass.US_EQUITY) == "unknown"
