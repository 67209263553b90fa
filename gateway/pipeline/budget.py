"""One upstream request budget per broker account, shared by the gateway and every bot behind it.

The broker's rate limit belongs to the account (Alpaca: 200 requests a minute; Binance USDⓈ-M:
2,400 request weight a minute). Every request the venue sends is counted here (the venue calls
``spend`` for each one). Orders, cancels and the gateway's own reads are never held back: they
are what keeps the account safe. A bot's reads go first through ``admit_read``: once what is
left of the minute would fall under ``reserve`` (a quarter of the limit by default), they are
refused with a 429 in the bot's own wire format and a Retry-After, so a bot polling hard can
never starve another bot's order or the gateway's reconcile into the broker's own 429s.

A venue with no known limit (the embedded paper venue) has no budget: everything passes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from ..errors import RateLimited

WINDOW_S = 60.0
DEFAULT_RESERVE = 0.25


class UpstreamBudget:
    def __init__(
        self,
        per_min: int | None,
        *,
        reserve: float = DEFAULT_RESERVE,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if per_min is not None and per_min <= 0:
            raise ValueError("an upstream budget must be positive")
        if not 0 <= reserve < 1:
            raise ValueError("the reserve is a fraction of the limit, from 0 to under 1")
        self.per_min = per_min
        self.reserve = reserve
        self.monotonic = monotonic
        self._window: deque[tuple[float, int]] = deque()
        self._used = 0
        self.spent_total = 0
        self.refused_reads = 0

    def spend(self, weight: int = 1) -> None:
        """The venue sent a request of this weight (always counted, never refused here)."""
        now = self.monotonic()
        self._window.append((now, weight))
        self._used += weight
        self.spent_total += weight

    def used(self) -> int:
        """Weight sent in the trailing minute."""
        horizon = self.monotonic() - WINDOW_S
        while self._window and self._window[0][0] <= horizon:
            self._used -= self._window.popleft()[1]
        return self._used

    def admit_read(self, weight: int = 1) -> None:
        """A bot's read is about to reach the venue: refused (RateLimited with retry_after_s)
        when it would eat into what is kept for orders."""
        if self.per_min is None:
            return
        ceiling = self.per_min * (1 - self.reserve)
        if self.used() + weight <= ceiling:
            return
        self.refused_reads += 1
        raise RateLimited(
            f"the broker account's request budget is nearly spent ({self.used()} of {self.per_min} a minute); "
            "reads wait so orders can go through",
            retry_after_s=self._wait_for(weight, ceiling),
        )

    def _wait_for(self, weight: int, ceiling: float) -> float:
        """Seconds until enough of the window has aged out for ``weight`` more."""
        excess = self._used + weight - ceiling
        now = self.monotonic()
        for at, spent in self._window:
            excess -= spent
            if excess <= 0:
                return max(1.0, math.ceil(at + WINDOW_S - now))
        return WINDOW_S

    def snapshot(self) -> dict:
        used = self.used()
        return {
            "limit_per_min": self.per_min,
            "used_last_min": used,
            "share": (used / self.per_min) if self.per_min else None,
            "reserved_for_orders": self.reserve,
            "spent_total": self.spent_total,
            "refused_reads": self.refused_reads,
        }
