"""JSON views of a running gateway for the dashboard: every limit against its current value,
positions and open orders from the ledger, per-bot activity and P&L, policy, audit, venue."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...ledger import Phase, Role
from ...ledger.pnl import attribute
from ...model import AssetClass
from ...numbers import fmt

if TYPE_CHECKING:
    from ...server import Gateway

# Limits judged per order (no running total to draw a bar against): shown with their limit only.
PER_ORDER = "per order"


def _pct(amount: Decimal, equity: Decimal) -> Decimal | None:
    return amount / equity * 100 if equity > 0 else None


def limits(gateway: "Gateway") -> list[dict]:
    """Every rail of the active policy; ``value`` is the book's running total where one exists.
    ``kind``: "max" (value must stay under), "min" (must stay over) or per-order."""
    portfolio = gateway.portfolio
    equity = portfolio.equity
    policy = gateway.active_policy.policy
    rails = policy.rails()
    current: dict[str, tuple[Decimal | None, str]] = {
        "account.max_leverage": (portfolio.gross_notional / equity if equity > 0 else None, "max"),
        "account.max_exposure_pct": (_pct(portfolio.committed, equity), "max"),
        "account.min_cash_buffer_pct": (_pct(portfolio.cash, equity), "min"),
        "account.max_open_positions": (Decimal(portfolio.open_positions), "max"),
        "account.max_position_pct": (None, "max"),
        "account.max_sector_pct": (
            max((_pct(v, equity) or Decimal(0) for v in portfolio.committed_by_sector.values()), default=Decimal(0)),
            "max",
        ),
    }
    symbols = sorted(
        ((b.symbol, _pct(b.worst_notional() / b.leverage, equity)) for b in portfolio.books.values()),
        key=lambda item: item[1] or Decimal(0),
        reverse=True,
    )
    if symbols:
        current["account.max_position_pct"] = (symbols[0][1], "max")
    for cls in AssetClass:
        prefix = f"asset_classes.{cls.value}."
        current[prefix + "allocation_pct"] = (_pct(portfolio.committed_by_class.get(cls, Decimal(0)), equity), "max")
        current[prefix + "universe_size"] = (Decimal(portfolio.occupied_by_class.get(cls, 0)), "max")
    periods = gateway.pipeline.breakers.periods() if gateway.pipeline.breakers is not None else {}
    for period, name in (("day", "daily"), ("week", "weekly"), ("month", "monthly")):
        start = periods.get(period)
        loss = None
        if start is not None and start.equity > 0 and equity > 0:
            loss = max(Decimal(0), (start.equity - equity) / start.equity * 100)
        current[f"circuit_breakers.{name}_loss_pct"] = (loss, "max")
    out = []
    for name, rail in rails.items():
        value, kind = current.get(name, (None, PER_ORDER))
        row: dict[str, Any] = {
            "name": name,
            "limit": fmt(rail.limit) if rail.enabled and rail.limit is not None else "off",
            "value": fmt(value.quantize(Decimal("0.0001"))) if value is not None else None,
            "kind": kind,
        }
        if rail.enabled and rail.limit and value is not None and kind != PER_ORDER:
            row["ratio"] = float(min(value / rail.limit, Decimal(2)))
        if name == "account.max_position_pct":
            row["symbols"] = [
                {"symbol": s, "value": fmt(v.quantize(Decimal("0.0001"))) if v is not None else None} for s, v in symbols[:20]
            ]
        out.append(row)
    return out


def positions(gateway: "Gateway") -> list[dict]:
    out = []
    for book in gateway.portfolio.books.values():
        if book.position_qty == 0:
            continue
        out.append({
            "symbol": book.symbol,
            "asset_class": book.asset_class.value,
            "qty": fmt(book.position_qty),
            "mark": fmt(book.mark),
            "notional": fmt(abs(book.position_qty) * book.mark * book.multiplier),
            "protected_qty": fmt(book.protective_sell_qty if book.position_qty > 0 else book.protective_buy_qty),
        })
    return sorted(out, key=lambda p: p["symbol"])


def order_row(order) -> dict:
    return {
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "qty": fmt(order.qty) if order.qty is not None else None,
        "filled_qty": fmt(order.filled_qty),
        "limit_price": fmt(order.limit_price) if order.limit_price is not None else None,
        "stop_price": fmt(order.stop_price) if order.stop_price is not None else None,
        "role": order.role.value,
        "protective": order.role is Role.PROTECTIVE,
        "phase": order.phase.value,
        "status": order.status.value,
        "bot": order.key_id,
    }


def open_orders(gateway: "Gateway", offset: int = 0, limit: int = 50) -> dict:
    orders = sorted(gateway.pipeline.ledger.open_orders(), key=lambda o: (o.symbol, o.client_order_id))
    return {"total": len(orders), "offset": offset, "items": [order_row(o) for o in orders[offset : offset + limit]]}


def bots(gateway: "Gateway", feed) -> list[dict]:
    """Per credential (label and key id, never a secret): orders and refusals today, suspension."""
    guard = gateway.rejection_burst
    suspended: dict[str, str] = guard.suspended if guard is not None else {}
    today = feed.today_counts()
    rows = []
    for cred in gateway.clients.list():
        key_id = cred["key_id"]
        counts = today.get(key_id, {"orders": 0, "refusals": 0})
        rows.append({
            "key_id": key_id,
            "label": cred["label"],
            "status": cred["status"],
            "orders_today": counts["orders"],
            "refusals_today": counts["refusals"],
            "suspended": suspended.get(key_id),
        })
    return rows


def pnl(gateway: "Gateway", fills) -> dict:
    marks = {b.symbol: b.mark for b in gateway.portfolio.books.values() if b.mark > 0}
    return attribute(fills, marks).to_json()


def policy_view(gateway: "Gateway") -> dict:
    from .policy_history import history

    active = gateway.active_policy
    return {
        "version": active.version,
        "sha256": active.sha256,
        "signers": sorted(active.signers),
        "expires": active.policy.expires.isoformat(),
        "history": history(gateway.home),
    }


def audit_view(gateway: "Gateway") -> dict:
    from ...audit.checkpoint import last_checkpoint

    cp = last_checkpoint(gateway.home.audit_checkpoints)
    return {
        "records": gateway.audit.seq,
        "broken": gateway.audit.broken,
        "last_checkpoint": {"seq": cp.seq, "ts": cp.ts, "key_id": cp.key_id} if cp is not None else None,
    }


def venue_view(gateway: "Gateway") -> dict:
    pipeline = gateway.pipeline
    ledger = pipeline.ledger
    last = pipeline.reconciler.last_success
    return {
        "name": gateway.options.venue,
        "stream": "up" if ledger.stream_live else ("down" if pipeline.streaming else "none"),
        "last_reconcile_ago_s": round(time.monotonic() - last, 1) if last is not None else None,
        "reconciles": pipeline.reconciler.runs,
        "last_reconcile_error": pipeline.last_reconcile_error,
        "uncertain_orders": sum(1 for o in ledger.open_orders() if o.phase is Phase.UNCERTAIN),
        "budget": pipeline.budget.snapshot(),
    }
