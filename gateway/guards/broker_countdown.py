"""The exchange-side dead man's switch: while the gateway serves, it renews the exchange's
``countdownCancelAll`` for every symbol it trades (an open order in the ledger, or a position).
If the gateway goes silent (killed, hung, cut off), the countdown runs out and the exchange
itself cancels that symbol's open orders, conditional ones too. Positions stay open.

Each symbol is armed as soon as it becomes traded (checked every ``tick_s``), then renewed every
``countdown_s / BEATS_PER_COUNTDOWN``, so a few lost beats never let it expire while the gateway
is alive. A symbol that stops being traded gets countdown 0 (stopped). A graceful stop leaves the
countdowns running: a gateway that is not running does not watch its orders either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from ..errors import GatewayError
from ..model import utcnow
from ..ports import Venue
from .options import Option

log = logging.getLogger("gateway.broker_countdown")

BEATS_PER_COUNTDOWN = 4
DEFAULT_COUNTDOWN_S = 120


@dataclass
class SymbolBeat:
    last_beat: datetime | None = None
    last_error: str | None = None
    beat_at: float = float("-inf")  # monotonic time of the last successful beat

    def to_json(self) -> dict:
        return {
            "last_beat": self.last_beat.isoformat() if self.last_beat else None,
            "error": self.last_error,
        }


class BrokerCountdown:
    OPTIONS = (
        Option(
            "broker_countdown_s",
            Annotated[int, Field(ge=1, le=3600)] | Literal["off"],
            DEFAULT_COUNTDOWN_S,
            "Binance (ccxt venue): seconds of the exchange's countdownCancelAll per traded symbol, renewed "
            "while serving; the exchange cancels the symbol's open orders if the gateway goes silent; \"off\"",
        ),
    )

    def __init__(
        self,
        venue: Venue,
        traded: Callable[[], Iterable[str]],
        countdown_s: int,
        *,
        tick_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.venue = venue
        self.traded = traded
        self.countdown_s = countdown_s
        self.interval_s = countdown_s / BEATS_PER_COUNTDOWN
        self.tick_s = min(tick_s, self.interval_s)
        self.clock = clock
        self.beats: dict[str, SymbolBeat] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.beat_once()
            except Exception as exc:  # noqa: BLE001 - the switch must outlive one odd failure
                # The type only: an unexpected exception's text could carry a request or a key.
                log.error("countdown heartbeat failed unexpectedly (%s); retrying", type(exc).__name__)
            await asyncio.sleep(self.tick_s)

    async def beat_once(self) -> None:
        """Arm newly traded symbols, renew those due, stop those no longer traded."""
        wanted = set(self.traded())
        now = self.clock()
        for symbol in sorted(wanted):
            beat = self.beats.setdefault(symbol, SymbolBeat())
            if now - beat.beat_at >= self.interval_s:
                await self._send(symbol, beat, self.countdown_s * 1000)
        for symbol in sorted(set(self.beats) - wanted):
            beat = self.beats[symbol]
            if await self._send(symbol, beat, 0):
                del self.beats[symbol]

    async def _send(self, symbol: str, beat: SymbolBeat, countdown_ms: int) -> bool:
        try:
            await self.venue.countdown_cancel_all(symbol, countdown_ms)
        except GatewayError as exc:
            if beat.last_error != exc.message:
                log.warning("countdownCancelAll for %s failed: %s", symbol, exc.message)
            beat.last_error = exc.message
            return False
        beat.last_error = None
        beat.last_beat = utcnow()
        beat.beat_at = self.clock()
        return True

    def status(self) -> dict:
        return {
            "countdown_s": self.countdown_s,
            "interval_s": self.interval_s,
            "symbols": {symbol: beat.to_json() for symbol, beat in sorted(self.beats.items())},
        }
