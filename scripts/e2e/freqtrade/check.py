"""Checks the outcome of the freqtrade end-to-end run; exits non-zero, saying why, on failure.

What must hold:
- freqtrade completed at least one trade: an entry filled, then its exit (our strategy's
  ``probe_exit``) filled, read from freqtrade's own database;
- the audit log holds an ``allow`` decision for every order freqtrade placed (entries as
  ``entry``, exits as ``exit``), the gateway's stop for each entry (placed after the fill,
  cancelled once the position was flat), and margin mode / leverage decisions;
- every order at the paper broker (plain and conditional) maps to a decision or a protective
  stop in the audit log: nothing reached the broker unrecorded;
- no secret (the bot's or the broker's) appears in the audit log, and freqtrade logged no error.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from urllib.parse import urlsplit

import ccxt

SYMBOL = "BTCUSDT"


def fail(message: str) -> None:
    print(f"e2e-freqtrade: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def closed_trades(db_path: str) -> list[dict]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        trades = [dict(r) for r in db.execute("SELECT id, is_open, exit_reason, amount FROM trades")]
        orders = [dict(r) for r in db.execute("SELECT ft_trade_id, ft_order_side, order_id, status, filled FROM orders")]
    for trade in trades:
        trade["orders"] = [o for o in orders if o["ft_trade_id"] == trade["id"]]
    return [t for t in trades if not t["is_open"]]


def broker_orders(url: str, key: str, secret: str) -> list[tuple[str, str]]:
    """(client id, kind) of every order the paper broker holds for the symbol."""
    exchange = ccxt.binanceusdm({"apiKey": key, "secret": secret, "options": {"fetchCurrencies": False}})
    exchange.urls["api"] = {name: url + urlsplit(value).path for name, value in exchange.urls["api"].items()
                            if isinstance(value, str) and value.startswith("http")}
    plain = exchange.fapiPrivateGetAllOrders({"symbol": SYMBOL})
    algo = exchange.fapiPrivateGetAllAlgoOrders({"symbol": SYMBOL})
    return [(o["clientOrderId"], "order") for o in plain] + [(o["clientAlgoId"], "algo") for o in algo]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--audit", required=True)
    parser.add_argument("--freqtrade-log", required=True)
    parser.add_argument("--trades-db", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--broker-key", required=True)
    parser.add_argument("--broker-secret-env", required=True)
    parser.add_argument("--bot-secret-file", required=True)
    args = parser.parse_args()
    broker_secret = os.environ[args.broker_secret_env]
    bot_secret = open(args.bot_secret_file).read().strip()

    audit_text = open(args.audit).read()
    for name, secret in (("bot", bot_secret), ("broker", broker_secret)):
        if secret in audit_text:
            fail(f"the {name} secret appears in the audit log")
    records = [json.loads(line) for line in audit_text.splitlines() if line.strip()]
    decisions = {r["data"]["client_order_id"]: r["data"] for r in records if r["type"] == "order.decision"}
    accepted = {r["data"]["client_order_id"]: r["data"] for r in records if r["type"] == "order.accepted"}
    stops_placed = [r["data"]["client_order_id"] for r in records if r["type"] == "protective.place"]
    stops_cancelled = {r["data"]["client_order_id"] for r in records if r["type"] == "protective.cancel"}
    types = {r["type"] for r in records}
    for needed in ("margin_mode.set", "leverage.decision", "leverage.set"):
        if needed not in types:
            fail(f"no {needed} record: freqtrade's isolated margin / leverage calls were not recorded")

    trades = closed_trades(args.trades_db)
    if not trades:
        fail("freqtrade closed no trade (no entry followed by its exit)")
    for trade in trades:
        if trade["exit_reason"] != "probe_exit":
            fail(f"trade {trade['id']} closed for {trade['exit_reason']!r}, not the strategy's exit")
        for order in trade["orders"]:
            if order["status"] != "closed" or not order["filled"]:
                continue
            side = order["ft_order_side"]
            found = [d for d in decisions.values() if accepted.get(d["client_order_id"], {}).get("order_id") == order["order_id"]]
            if not found:
                fail(f"freqtrade's {side} order {order['order_id']} has no decision in the audit log")
            want = "entry" if side == "buy" else "exit"
            if found[0]["decision"] != "allow" or found[0]["role"] != want:
                fail(f"freqtrade's {side} order was recorded as {found[0]['decision']}/{found[0]['role']}, not allow/{want}")
    entries = [d for d in decisions.values() if d["role"] == "entry" and d["decision"] == "allow"]
    if len(stops_placed) < len(entries):
        fail(f"{len(entries)} entries allowed but only {len(stops_placed)} protective stops placed")
    if not stops_cancelled & set(stops_placed):
        fail("no protective stop was cancelled after an exit made the position flat")

    known = set(decisions) | set(stops_placed)
    at_broker = broker_orders(args.broker_url, args.broker_key, broker_secret)
    unrecorded = [cid for cid, _ in at_broker if cid not in known]
    if unrecorded:
        print("\n".join(f"{r['seq']} {r['type']} {r['data'].get('client_order_id')}" for r in records), file=sys.stderr)
        fail(f"orders at the broker with no audit record: {unrecorded}")
    if not any(kind == "algo" for _, kind in at_broker):
        fail("the broker never saw the gateway's stop (no conditional order)")

    errors = [line for line in open(args.freqtrade_log) if " - ERROR - " in line or "Traceback" in line]
    if errors:
        fail("freqtrade logged errors:\n" + "".join(errors[:10]))
    print(
        f"e2e-freqtrade: OK: {len(trades)} closed trade(s), {len(decisions)} order decisions, "
        f"{len(stops_placed)} gateway stops, {len(at_broker)} broker orders all recorded, {len(records)} audit records"
    )


if __name__ == "__main__":
    main()
