"""What each bot credential has recently sent: order rates and order fingerprints.

Kept by the engine next to the book, in memory (no I/O), on the caller's monotonic clock.
Only orders the engine allowed are recorded: a refused order never reached the venue, and a
bot retrying a refused order must not lock itself out for the rest of the window.

Every operation is O(1) amortised: each timestamp enters a deque once and leaves it once.

- per second and per minute: exact rolling windows (a deque of timestamps each);
- per day: a rolling 24 hours at minute resolution (a deque of at most 1,440 per-minute
  buckets plus a running total), so a busy day costs bounded memory;
- fingerprints (duplicate detection): a dict of last-seen times plus a deque in time order
  for expiry; entries live at most as long as the window asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

SECOND = 1.0
MINUTE = 60.0
DAY_MINUTES = 1440


@dataclass(slots=True)
class RateWindow:
    """Counts of one kind of request (orders or replaces) for one credential."""

    seconds: deque[float] = field(default_factory=deque)
    minutes: deque[float] = field(default_factory=deque)
    day_buckets: deque[list] = field(default_factory=deque)  # [minute index, count]
    day_total: int = 0

    def _expire(self, now: float) -> None:
        seconds, minutes, buckets = self.seconds, self.minutes, self.day_buckets
        while seconds and seconds[0] <= now - SECOND:
            seconds.popleft()
        while minutes and minutes[0] <= now - MINUTE:
            minutes.popleft()
        oldest = int(now // MINUTE) - DAY_MINUTES
        while buckets and buckets[0][0] <= oldest:
            self.day_total -= buckets.popleft()[1]

    def counts(self, now: float) -> tuple[int, int, int]:
        """Requests in the last second, minute and 24 hours."""
        self._expire(now)
        return len(self.seconds), len(self.minutes), self.day_total

    def record(self, now: float) -> None:
        self._expire(now)
        self.seconds.append(now)
        self.minutes.append(now)
        minute = int(now // MINUTE)
        buckets = self.day_buckets
        if buckets and buckets[-1][0] == minute:
            buckets[-1][1] += 1
        else:
            buckets.append([minute, 1])
        self.day_total += 1


class Activity:
    """Recent activity of every credential. Owned by one engine, one event loop."""

    def __init__(self) -> None:
        self._rates: dict[str, dict[str, RateWindow]] = {"order": {}, "replace": {}}
        self._seen: dict[Hashable, float] = {}
        self._seen_order: deque[tuple[float, Hashable]] = deque()

    # -- rates ----------------------------------------------------------------------------

    def counts(self, key_id: str, kind: str, now: float) -> tuple[int, int, int]:
        window = self._rates[kind].get(key_id)
        return (0, 0, 0) if window is None else window.counts(now)

    # -- duplicates -----------------------------------------------------------------------

    def last_seen(self, fingerprint: Hashable, now: float, window_s: float) -> float | None:
        """When this fingerprint was last recorded, if within ``window_s`` of now."""
        self._expire_seen(now, window_s)
        seen = self._seen.get(fingerprint)
        if seen is None or seen <= now - window_s:
            return None
        return seen

    def _expire_seen(self, now: float, window_s: float) -> None:
        order, seen = self._seen_order, self._seen
        horizon = now - window_s
        while order and order[0][0] <= horizon:
            at, fingerprint = order.popleft()
            if seen.get(fingerprint) == at:
                del seen[fingerprint]

    # -- recording ------------------------------------------------------------------------

    def record(self, key_id: str, kind: str, fingerprint: Hashable | None, now: float, window_s: float) -> None:
        """Count an allowed request; remember its fingerprint for ``window_s`` (0: not at all)."""
        windows = self._rates[kind]
        window = windows.get(key_id)
        if window is None:
            window = windows[key_id] = RateWindow()
        window.record(now)
        if fingerprint is not None and window_s > 0:
            self._expire_seen(now, window_s)
            self._seen[fingerprint] = now
            self._seen_order.append((now, fingerprint))
