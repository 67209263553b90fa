"""Connection-level error logging is rate-limited per message, with a count of what was dropped."""

from __future__ import annotations

import logging

from gateway.log_rate import RateLimit


def _record(msg: str, name: str = "asyncio") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_a_flood_of_one_message_logs_a_few_lines_then_says_how_many_were_dropped():
    now = [0.0]
    limit = RateLimit(per_window=5, window_s=60, clock=lambda: now[0])
    # asyncio adds the socket to each line: the same message all the same.
    passed = [limit.filter(_record(f"socket.accept() out of system resource\nsocket: <fd={i}>")) for i in range(10_000)]
    assert sum(passed) == 5
    assert limit.filter(_record("another message"))  # counted apart
    now[0] = 61.0
    summary = _record("socket.accept() out of system resource")
    assert limit.filter(summary)
    assert "9995 similar messages suppressed" in summary.getMessage()
