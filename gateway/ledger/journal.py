"""The audit log is the ledger's journal. At start it is read once to recover what the venue
cannot tell: who placed each order (credential), why (role: entry, exit, the gateway's own
stop), the stops the gateway still owes a position, and the credentials a rejection burst
suspended. Reconcile then supplies what the venue knows (which orders are open, positions), and
the journal names them. No second write on the order path: the decision records already are it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..model import StopLoss
from .orders import Role

_DECISIONS = ("order.decision", "replace.decision", "close.decision")
_ACCEPTED = ("order.accepted", "replace.accepted", "close.accepted")


@dataclass(frozen=True, slots=True)
class Owner:
    key_id: str | None
    role: Role


@dataclass
class Journal:
    by_client_id: dict[str, Owner] = field(default_factory=dict)
    by_venue_id: dict[str, Owner] = field(default_factory=dict)
    # symbol -> the stop the gateway owes a position it opened (the latest decision's)
    # symbol -> (stop, asset class, entry side): released when the position went flat
    stop_targets: dict[str, tuple[StopLoss, str, str]] = field(default_factory=dict)
    suspended: dict[str, str] = field(default_factory=dict)  # key id -> reason
    records: int = 0

    def owner(self, client_order_id: str | None, venue_id: str | None) -> Owner | None:
        if venue_id is not None and venue_id in self.by_venue_id:
            return self.by_venue_id[venue_id]
        if client_order_id:
            return self.by_client_id.get(client_order_id)
        return None


def read_journal(records: Iterable[Any]) -> Journal:
    """Fold audit records (objects with ``type`` and ``data``) into a Journal."""
    journal = Journal()
    for record in records:
        journal.records += 1
        kind, data = record.type, record.data
        if kind in _DECISIONS and data.get("decision") == "allow" and data.get("client_order_id"):
            _decision(journal, data)
        elif kind in _ACCEPTED:
            _accepted(journal, data)
        elif kind == "protective.place" and data.get("client_order_id"):
            journal.by_client_id[data["client_order_id"]] = Owner(None, Role.PROTECTIVE)
        elif kind == "protective.placed" and data.get("order_id"):
            journal.by_venue_id[data["order_id"]] = Owner(None, Role.PROTECTIVE)
        elif kind == "protective.released" and data.get("symbol"):
            journal.stop_targets.pop(data["symbol"], None)
        elif kind == "key.suspended" and data.get("key_id"):
            journal.suspended[data["key_id"]] = str(data.get("reason", "rejection burst"))
        elif kind == "key.unsuspended" and data.get("key_id"):
            journal.suspended.pop(data["key_id"], None)
    return journal


def _decision(journal: Journal, data: dict) -> None:
    key_id = data.get("key_id")
    role = _role(data.get("role"))
    journal.by_client_id[data["client_order_id"]] = Owner(key_id, role)
    for leg in data.get("legs") or ():
        if leg.get("client_order_id"):
            journal.by_client_id[leg["client_order_id"]] = Owner(key_id, _role(leg.get("role")))
    stop = data.get("gateway_stop")
    intent = data.get("intent") or {}
    if isinstance(stop, dict) and stop.get("stop_price") is not None and intent.get("symbol"):
        limit = stop.get("limit_price")
        target = StopLoss(Decimal(str(stop["stop_price"])), Decimal(str(limit)) if limit is not None else None)
        journal.stop_targets[intent["symbol"]] = (target, str(intent.get("asset_class", "")), str(intent.get("side", "")))


def _accepted(journal: Journal, data: dict) -> None:
    client_id = data.get("gateway_client_order_id") or data.get("client_order_id")
    owner = journal.by_client_id.get(client_id) if client_id else None
    if owner is None:
        return
    if data.get("order_id"):
        journal.by_venue_id[data["order_id"]] = owner
    for leg in data.get("legs") or ():  # each venue leg with the ledger leg it was matched to
        leg_owner = journal.by_client_id.get(leg.get("client_order_id") or "", owner)
        if leg.get("order_id"):
            journal.by_venue_id[leg["order_id"]] = leg_owner


def _role(value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        return Role.ENTRY
