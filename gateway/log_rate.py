"""Rate-limited logging for the loggers an attack can make chatty: asyncio's accept errors,
aiohttp's per-connection errors, the listener's cap warnings. A few lines a minute per message,
then one line saying how many were dropped: the disk cannot be filled through the log."""

from __future__ import annotations

import logging
import time

_NOISY_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "gateway.listener")


class RateLimit(logging.Filter):
    """At most ``per_window`` records per (logger, message template) each ``window_s``; the
    first record after a quiet window says how many were dropped."""

    def __init__(self, per_window: int = 5, window_s: float = 60.0, clock=time.monotonic):
        super().__init__()
        self.per_window, self.window_s, self.clock = per_window, window_s, clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        # The first line only: asyncio appends the socket (fd, addresses) to each accept error.
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        now = self.clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window_s:
            dropped = int(state[2]) if state is not None else 0
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar messages suppressed in the last {self.window_s:g}s]"
            return True
        if state[1] < self.per_window:
            state[1] += 1
            return True
        state[2] += 1
        return False


_installed: RateLimit | None = None


def limit_log_rate() -> RateLimit:
    """Install one RateLimit on the loggers an attack can make chatty (idempotent)."""
    global _installed
    if _installed is None:
        _installed = RateLimit()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed
