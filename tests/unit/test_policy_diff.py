"""Classifying policy changes as tightening or loosening."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import Field

from gateway.policy import diff as diff_module
from gateway.policy.diff import FieldChange, diff_policies, is_loosening, render_diff
from gateway.policy.schema import AccountRules, Policy, Rail, parse_policy

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


def policy(**rails: str) -> Policy:
    """The default policy with some rails rewritten in the YAML text (``name="1"``)."""
    text = DEFAULT_POLICY.read_text()
    text = re.sub(r'^gateway_id: .*$', 'gateway_id: "gw-test"', text, flags=re.M)
    for name, value in rails.items():
        if name in ("version", "expires", "description"):
            text = re.sub(rf"^{name}: .*$", f"{name}: {value}", text, flags=re.M)
        else:
            text, n = re.subn(rf"^(\s+{name}:)[^#\n]*", rf"\1 {value}   ", text, flags=re.M)
            assert n == 1, name
    return parse_policy(text.encode()).policy


def constructed(**account: Rail) -> Policy:
    """A policy built without validation, for states the hard ceilings forbid (rails off)."""
    base = policy()
    rails = {name: getattr(base.account, name) for name in AccountRules.model_fields}
    rails.update(account)
    return Policy.model_construct(**{**dict(base), "account": AccountRules.model_construct(**rails)})


def one(changes: list[FieldChange], name: str) -> FieldChange:
    (match,) = [c for c in changes if c.name == name]
    return match


def test_identical_policies_have_no_changes():
    assert diff_policies(policy(), policy()) == []
    assert diff_policies(policy(max_position_pct="2"), policy(max_position_pct="2.0")) == []


def test_lowering_a_maximum_tightens_and_raising_it_loosens():
    tight = diff_policies(policy(), policy(max_position_pct="1.5"))
    assert [(c.name, c.old.limit, c.new.limit, c.direction) for c in tight] == [
        ("account.max_position_pct", Decimal("2"), Decimal("1.5"), "tighten")
    ]
    assert not is_loosening(tight)
    loose = diff_policies(policy(max_position_pct="1.5"), policy())
    assert one(loose, "account.max_position_pct").direction == "loosen"
    assert is_loosening(loose)


def test_higher_is_tighter_rails_go_the_other_way(monkeypatch):
    monkeypatch.setattr(diff_module, "rail_meta", lambda name: {"tighter": "higher", "clampable": False})
    assert one(diff_policies(policy(), policy(max_leverage="5")), "account.max_leverage").direction == "loosen"
    assert one(diff_policies(policy(max_leverage="5"), policy()), "account.max_leverage").direction == "tighten"


@pytest.mark.parametrize("meta", [{}, {"tighter": "sideways"}])
def test_undeclared_direction_fails_safe(monkeypatch, meta):
    monkeypatch.setattr(diff_module, "rail_meta", lambda name: meta)
    for old, new in ((policy(), policy(max_leverage="5")), (policy(max_leverage="5"), policy())):
        change = one(diff_policies(old, new), "account.max_leverage")
        assert change.direction == "loosen" and "fail safe" in change.reason


def test_turning_a_rail_off_loosens_and_on_tightens():
    on, off = policy(), constructed(max_leverage=Rail(enabled=False))
    assert one(diff_policies(on, off), "account.max_leverage").direction == "loosen"
    assert one(diff_policies(on, off), "account.max_leverage").reason == "turned off"
    assert one(diff_policies(off, on), "account.max_leverage").direction == "tighten"
    # off on both sides: a stale limit on an off rail changes nothing
    off_with_limit = constructed(max_leverage=Rail(enabled=False, limit=Decimal("3")))
    assert one(diff_policies(off, off_with_limit), "account.max_leverage").direction == "same"


def test_reject_to_clamp_loosens_and_back_tightens():
    reject = policy()
    clamp = policy(max_position_pct="{limit: 2, on_violation: clamp}")
    assert one(diff_policies(reject, clamp), "account.max_position_pct").direction == "loosen"
    assert one(diff_policies(clamp, reject), "account.max_position_pct").direction == "tighten"


def test_a_mixed_rail_change_takes_the_worst_direction():
    old = policy()
    new = policy(max_position_pct="{limit: 1, on_violation: clamp}")  # lower limit but clamps now
    change = one(diff_policies(old, new), "account.max_position_pct")
    assert change.direction == "loosen"
    assert "clamps" in change.reason


def test_metadata_changes_are_listed_but_neither_tighten_nor_loosen():
    old = policy()
    new = policy(version="7", expires="2031-01-01T00:00:00Z", description='"other"')
    changes = diff_policies(old, new)
    assert {c.name: c.direction for c in changes} == {"version": "same", "expires": "same", "description": "same"}
    assert one(changes, "expires").new == datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert not is_loosening(changes)


class ListPolicy(Policy):
    """A future schema with non-rail fields."""

    symbols: list[str] = []
    allowlist: list[str] = Field(default=[], json_schema_extra={"tighter": "subset"})
    denylist: list[str] = Field(default=[], json_schema_extra={"tighter": "superset"})
    max_orders: int = Field(default=10, json_schema_extra={"tighter": "lower"})
    venues: dict[str, AccountRules] = {}


def list_policy(**fields) -> ListPolicy:
    return ListPolicy.model_validate({**policy().model_dump(), **fields})


def test_unclassified_field_changes_count_as_loosening():
    change = one(diff_policies(list_policy(symbols=["AAPL"]), list_policy(symbols=[])), "symbols")
    assert change.direction == "loosen"  # even a removal: the field's meaning is unknown
    assert "fail safe" in change.reason


def test_declared_collections_and_numbers_are_classified():
    assert one(diff_policies(list_policy(allowlist=["A", "B"]), list_policy(allowlist=["A"])), "allowlist").direction == "tighten"
    assert one(diff_policies(list_policy(allowlist=["A"]), list_policy(allowlist=["A", "B"])), "allowlist").direction == "loosen"
    assert one(diff_policies(list_policy(denylist=["A"]), list_policy(denylist=["A", "B"])), "denylist").direction == "tighten"
    assert one(diff_policies(list_policy(denylist=["A", "B"]), list_policy(denylist=["B"])), "denylist").direction == "loosen"
    assert one(diff_policies(list_policy(), list_policy(max_orders=5)), "max_orders").direction == "tighten"
    assert one(diff_policies(list_policy(), list_policy(max_orders=50)), "max_orders").direction == "loosen"


def test_rails_inside_mappings_appearing_or_disappearing_loosen():
    rules = policy().account.model_dump()
    without, with_crypto = list_policy(), list_policy(venues={"crypto": rules})
    added = diff_policies(without, with_crypto)
    assert {c.name for c in added} == {f"venues.crypto.{n}" for n in AccountRules.model_fields}
    assert all(c.direction == "loosen" and c.old is None for c in added)
    removed = diff_policies(with_crypto, without)
    assert all(c.direction == "loosen" and c.new is None for c in removed)
    tighter = {**rules, "max_position_pct": 1}
    changed = diff_policies(with_crypto, list_policy(venues={"crypto": tighter}))
    assert [(c.name, c.direction) for c in changed] == [("venues.crypto.max_position_pct", "tighten")]


def test_render_diff_shows_each_field_old_new_and_direction():
    old = policy()
    new = policy(version="2", max_position_pct="1", max_exposure_pct="{limit: 20, on_violation: clamp}")
    text = render_diff(diff_policies(old, new), old_version=1, new_version=2)
    assert "policy v1 → v2" in text
    assert re.search(r"account\.max_position_pct\s+2 → 1\s+TIGHTEN", text)
    assert re.search(r"account\.max_exposure_pct\s+20 → 20 \(clamp\)\s+LOOSEN", text)
    assert re.search(r"version\s+1 → 2\s+SAME", text)
    assert "LOOSENS 1 field(s)" in text
    assert "TIGHTENS 1 field(s)" in render_diff(diff_policies(old, policy(max_position_pct="1")))
    assert "no changes" in render_diff([])
    off = render_diff(diff_policies(old, constructed(max_leverage=Rail(enabled=False))))
    assert re.search(r"account\.max_leverage\s+10 → off\s+LOOSEN", off)


@pytest.mark.parametrize("direction, loosening", [("tighten", False), ("same", False), ("loosen", True)])
def test_is_loosening(direction, loosening):
    assert is_loosening([FieldChange("x", 1, 2, direction)]) is loosening
