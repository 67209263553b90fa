"""The decision feed, tailed from the audit log: the log is the record, so the page shows what
was recorded, not what some in-memory hook saw. Each ``poll`` reads only the bytes appended
since the last one (complete lines only)."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from ...audit.records import AuditCorrupt, parse_line
from ...ledger.pnl import Fill
from ..fills import fills_from_records

MAX_KEPT = 50_000  # decisions kept in memory; older ones stay in the log (`gatewayctl audit query`)


def decision_row(rec) -> dict:
    d = rec.data
    intent = d.get("intent") or {}
    return {
        "seq": rec.seq,
        "ts": rec.ts,
        "action": rec.type.removesuffix(".decision"),
        "bot": d.get("key_id"),
        "symbol": intent.get("symbol"),
        "side": intent.get("side"),
        "qty": intent.get("qty") if intent.get("qty") is not None else intent.get("notional"),
        "decision": d.get("decision"),
        "codes": d.get("codes") or [],
        "message": "; ".join(d.get("messages") or []),
    }


class DecisionFeed:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.decisions: list[dict] = []
        self.fills: list[Fill] = []
        self._today: dict[str, dict[str, dict[str, int]]] = {}  # date -> bot -> counts

    def poll(self) -> int:
        """Read what was appended; returns how many new decisions arrived."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:  # replaced (a restore): start over
                    self.__init__(self.path)
                f.seek(self._offset)
                chunk = f.read(size - self._offset)
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unterminated last line waits for its end
        new = 0
        records = []
        for line in lines:
            if not line:
                continue
            try:
                rec = parse_line(line + b"\n")
            except AuditCorrupt:
                continue  # `audit verify` reports it; the feed shows what it can read
            records.append(rec)
            if rec.type.endswith(".decision"):
                row = decision_row(rec)
                self.decisions.append(row)
                self._count(row)
                new += 1
        self.fills.extend(fills_from_records(records))
        if len(self.decisions) > MAX_KEPT:
            del self.decisions[: len(self.decisions) - MAX_KEPT]
        return new

    def _count(self, row: dict) -> None:
        day = row["ts"][:10]
        bots = self._today.setdefault(day, defaultdict(lambda: {"orders": 0, "refusals": 0}))
        counts = bots[row["bot"] or ""]
        counts["orders"] += 1
        if row["decision"] == "deny":
            counts["refusals"] += 1
        for old in [d for d in self._today if d < day]:
            del self._today[old]

    def today_counts(self) -> dict[str, dict[str, int]]:
        return dict(self._today.get(datetime.now(UTC).date().isoformat(), {}))

    def page(self, *, bot: str | None = None, code: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        """Newest first, filtered by bot (key id) and by code."""
        limit = max(1, min(limit, 500))
        rows = self.decisions
        if bot or code:
            rows = [r for r in rows if (not bot or r["bot"] == bot) and (not code or code in r["codes"])]
        total = len(rows)
        end = total - offset
        start = max(0, end - limit)
        items = list(reversed(rows[start:max(0, end)]))
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    def codes(self) -> list[str]:
        seen: set[str] = set()
        for r in self.decisions[-5000:]:
            seen.update(r["codes"])
        return sorted(seen)
