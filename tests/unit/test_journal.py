"""The ledger's journal: what the audit log's records tell a restarted gateway."""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace

from gateway.ledger import Role
from gateway.ledger.journal import read_journal


def rec(type_: str, **data):
    return SimpleNamespace(type=type_, data=data)


def decision(cid="c1", role="entry", decision="allow", **extra):
    return rec("order.decision", key_id="GK1", client_order_id=cid, role=role, decision=decision,
               intent={"symbol": "BTC/USD", "asset_class": "crypto", "side": "buy"}, **extra)


def test_owners_by_client_id_and_by_the_venue_id_of_the_order_and_its_legs():
    journal = read_journal([
        decision(legs=[{"client_order_id": "c1:leg0", "role": "protective"}]),
        rec("order.accepted", client_order_id="c1", order_id="v1",
            legs=[{"order_id": "v1-leg", "client_order_id": "c1:leg0", "role": "protective"}]),
    ])
    assert journal.owner("c1", None).key_id == "GK1"
    assert journal.owner(None, "v1").role is Role.ENTRY
    assert journal.owner("anything", "v1-leg").role is Role.PROTECTIVE


def test_a_refused_decision_owns_nothing():
    journal = read_journal([decision(decision="deny")])
    assert journal.owner("c1", None) is None


def test_a_stop_owed_is_remembered_until_it_is_released():
    owed = decision(gateway_stop={"stop_price": D("54000"), "limit_price": None})
    journal = read_journal([owed])
    stop, asset_class, side = journal.stop_targets["BTC/USD"]
    assert stop.stop_price == D(54000) and asset_class == "crypto" and side == "buy"
    released = read_journal([owed, rec("protective.released", symbol="BTC/USD", why="the position is flat")])
    assert released.stop_targets == {}


def test_suspensions_hold_until_lifted():
    journal = read_journal([rec("key.suspended", key_id="GK1", reason="20 rejections in 60s"),
                            rec("key.suspended", key_id="GK2", reason="x"), rec("key.unsuspended", key_id="GK2")])
    assert journal.suspended == {"GK1": "20 rejections in 60s"}


def test_the_gateways_own_stops_are_known_by_client_and_venue_id():
    journal = read_journal([rec("protective.place", client_order_id="gw-stop-1"),
                            rec("protective.placed", client_order_id="gw-stop-1", order_id="v7")])
    assert journal.owner("gw-stop-1", None).role is Role.PROTECTIVE
    assert journal.owner(None, "v7").role is Role.PROTECTIVE
