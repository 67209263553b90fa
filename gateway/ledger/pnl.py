"""P&L attribution: each exit linked (FIFO) to the entries it closes, per bot and per symbol.

Pure: fills in, attribution out. One FIFO queue of open lots per symbol, across bots, because
the account holds one position per symbol: when bot B's sell closes shares bot A bought, the
realized P&L belongs to A's lot (A took the risk) and the link names B as the closer. A fill
larger than the open lots on the other side opens a new lot the other way for its own bot.

A "trade" for the win rate is one link (one exit slice against one entry lot); it wins when its
realized P&L is positive. Unrealized P&L values the remaining lots at the given marks.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ..numbers import fmt

ZERO = Decimal(0)
UNATTRIBUTED = "(gateway)"  # fills of orders no bot placed: the gateway's protective stops, foreign orders


@dataclass(frozen=True, slots=True)
class Fill:
    ts: str  # ISO-8601 UTC
    bot: str  # key id of the credential whose order filled
    symbol: str
    side: str  # "buy" or "sell"
    qty: Decimal  # this execution's quantity, > 0
    price: Decimal
    order_id: str = ""  # the gateway's client order id
    multiplier: Decimal = Decimal(1)  # contract size (options: 100)

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1


@dataclass(slots=True)
class _Lot:
    bot: str
    order_id: str
    ts: str
    qty: Decimal  # remaining, > 0
    sign: int  # +1 long, -1 short
    price: Decimal
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Link:
    """One slice of an exit closing one entry lot."""

    symbol: str
    entry_bot: str
    entry_order: str
    entry_ts: str
    entry_price: Decimal
    exit_bot: str
    exit_order: str
    exit_ts: str
    exit_price: Decimal
    qty: Decimal
    pnl: Decimal  # attributed to entry_bot


@dataclass(slots=True)
class Tally:
    realized: Decimal = ZERO
    unrealized: Decimal = ZERO
    wins: int = 0
    trades: int = 0
    open_qty: Decimal = ZERO  # signed

    @property
    def win_rate(self) -> Decimal | None:
        return Decimal(self.wins) / Decimal(self.trades) if self.trades else None

    def to_json(self) -> dict:
        rate = self.win_rate
        return {
            "realized": fmt(self.realized),
            "unrealized": fmt(self.unrealized),
            "total": fmt(self.realized + self.unrealized),
            "trades": self.trades,
            "wins": self.wins,
            "win_rate": None if rate is None else str(rate.quantize(Decimal("0.0001"))),
            "open_qty": fmt(self.open_qty),
        }


@dataclass(slots=True)
class Attribution:
    links: list[Link] = field(default_factory=list)
    by_bot: dict[str, Tally] = field(default_factory=dict)
    by_symbol: dict[str, Tally] = field(default_factory=dict)
    by_bot_symbol: dict[tuple[str, str], Tally] = field(default_factory=dict)
    open_lots: dict[str, list[_Lot]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "by_bot": {bot: t.to_json() for bot, t in sorted(self.by_bot.items())},
            "by_symbol": {sym: t.to_json() for sym, t in sorted(self.by_symbol.items())},
            "by_bot_symbol": [
                {"bot": bot, "symbol": sym, **t.to_json()} for (bot, sym), t in sorted(self.by_bot_symbol.items())
            ],
            "links": [
                {
                    "symbol": l.symbol, "qty": fmt(l.qty), "pnl": fmt(l.pnl),
                    "entry": {"bot": l.entry_bot, "order": l.entry_order, "ts": l.entry_ts, "price": fmt(l.entry_price)},
                    "exit": {"bot": l.exit_bot, "order": l.exit_order, "ts": l.exit_ts, "price": fmt(l.exit_price)},
                }
                for l in self.links
            ],
        }


def attribute(fills: Iterable[Fill], marks: Mapping[str, Decimal] | None = None) -> Attribution:
    """Fills in time order (ties keep their given order) -> FIFO attribution."""
    lots: dict[str, deque[_Lot]] = defaultdict(deque)
    out = Attribution()

    def tally(bot: str, symbol: str) -> list[Tally]:
        return [
            out.by_bot.setdefault(bot, Tally()),
            out.by_symbol.setdefault(symbol, Tally()),
            out.by_bot_symbol.setdefault((bot, symbol), Tally()),
        ]

    for fill in sorted(fills, key=lambda f: f.ts):
        if fill.qty <= 0:
            raise ValueError(f"a fill's quantity must be positive, not {fill.qty}")
        queue = lots[fill.symbol]
        remaining = fill.qty
        tally(fill.bot, fill.symbol)  # every bot that traded shows up, even with nothing closed
        while remaining > 0 and queue and queue[0].sign != fill.sign:
            lot = queue[0]
            closed = min(lot.qty, remaining)
            pnl = (fill.price - lot.price) * closed * lot.sign * lot.multiplier
            out.links.append(Link(
                fill.symbol, lot.bot, lot.order_id, lot.ts, lot.price,
                fill.bot, fill.order_id, fill.ts, fill.price, closed, pnl,
            ))
            for t in tally(lot.bot, fill.symbol):
                t.realized += pnl
                t.trades += 1
                t.wins += 1 if pnl > 0 else 0
            lot.qty -= closed
            remaining -= closed
            if lot.qty == 0:
                queue.popleft()
        if remaining > 0:
            queue.append(_Lot(fill.bot, fill.order_id, fill.ts, remaining, fill.sign, fill.price, fill.multiplier))

    for symbol, queue in lots.items():
        out.open_lots[symbol] = list(queue)
        mark = (marks or {}).get(symbol)
        for lot in queue:
            for t in tally(lot.bot, symbol):
                t.open_qty += lot.qty * lot.sign
                if mark is not None:
                    t.unrealized += (mark - lot.price) * lot.qty * lot.sign * lot.multiplier
    return out
