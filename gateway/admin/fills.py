"""Fills into the audit log, and back out as P&L attribution.

A ledger listener notes every increase of an order's filled quantity (whatever told the ledger:
the venue's answer, its stream, or reconcile) as one ``ledger.fill`` record, so the attribution
can be rebuilt from the log alone (``gatewayctl pnl`` works with the gateway stopped). The
execution price is derived from the change of the order's average fill price.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from ..audit.verify import iter_records
from ..ledger import Change
from ..ledger.pnl import UNATTRIBUTED, Fill
from ..model import AssetClass, contract_multiplier
from ..numbers import fmt

log = logging.getLogger("gateway.admin.fills")

FILL_RECORD = "ledger.fill"


class FillRecorder:
    """Ledger listener: one ``ledger.fill`` record per new fill. ``submit(type, data)`` queues an
    audit record without waiting (the listener runs inside a synchronous ledger step)."""

    def __init__(self, submit):
        self._submit = submit
        self._seen: dict[str, tuple[Decimal, Decimal]] = {}  # client id -> (filled qty, avg price)

    def seed(self, fills: Iterable[Fill]) -> None:
        """Fills already in the log (a restart): the ledger may report them again."""
        for f in fills:
            qty, avg = self._seen.get(f.order_id, (Decimal(0), Decimal(0)))
            total = qty + f.qty
            self._seen[f.order_id] = (total, (avg * qty + f.price * f.qty) / total)

    def __call__(self, change: Change) -> None:
        order = change.order
        if order is None:
            return
        for o in (order, *order.legs):
            self._note(o)

    def _note(self, order) -> None:
        before_qty, before_avg = self._seen.get(order.client_order_id, (Decimal(0), Decimal(0)))
        filled, avg = order.filled_qty, order.filled_avg_price
        if filled <= before_qty or avg is None:
            return
        self._seen[order.client_order_id] = (filled, avg)
        delta = filled - before_qty
        # The average is what venues report; this execution's price follows from it (to 1e-12:
        # an average rounded by the venue can make the division repeat).
        price = ((avg * filled - before_avg * before_qty) / delta).quantize(Decimal("1e-12"))
        record = {
            "key_id": order.key_id,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "asset_class": order.asset_class.value,
            "side": order.side.value,
            "role": order.role.value,
            "qty": fmt(delta),
            "price": fmt(price),
        }
        try:
            future = self._submit(FILL_RECORD, record)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        except Exception:  # the audit is down: it has locked the gateway already
            log.warning("could not record a fill of %s", order.client_order_id)


def fills_from_records(records: Iterable) -> list[Fill]:
    out = []
    for rec in records:
        if rec.type != FILL_RECORD:
            continue
        d = rec.data
        multiplier = contract_multiplier(AssetClass(d["asset_class"])) if d.get("asset_class") else Decimal(1)
        out.append(Fill(
            rec.ts, d.get("key_id") or UNATTRIBUTED, d["symbol"], d["side"], Decimal(d["qty"]), Decimal(d["price"]),
            d.get("client_order_id", ""), Decimal(multiplier),
        ))
    return out


def fills_from_log(path: Path, since: str | None = None) -> list[Fill]:
    """Fills in the audit log at ``path`` (from ``since``, an ISO date or time, when given)."""
    fills = fills_from_records(iter_records(path))
    return [f for f in fills if since is None or f.ts >= since]
