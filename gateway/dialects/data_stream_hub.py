"""Fan-out of market data feeds: one upstream connection per feed, shared by every bot on it.

Each bot session holds its own subscriptions; the hub keeps the union subscribed upstream
(``MarketFeed.update`` whenever it changes) and hands each tick to the sessions that asked for
that channel and symbol. Sessions per credential and feed are capped, as Alpaca caps
connections per account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..ports import MarketFeed, MarketStreams, MarketTick

log = logging.getLogger(__name__)

MAX_SESSIONS_PER_CREDENTIAL = 5  # per feed; beyond it: Alpaca's 406 connection limit exceeded


class FeedSession:
    """One bot connection's subscriptions on a feed."""

    def __init__(self, key_id: str, deliver: Callable[[MarketTick], None]):
        self.key_id = key_id
        self.deliver = deliver
        self.subscriptions: dict[str, set[str]] = {}

    def wants(self, tick: MarketTick) -> bool:
        subs = self.subscriptions.get(tick.channel)
        return bool(subs) and (tick.symbol in subs or "*" in subs)

    def symbol_count(self) -> int:
        return len(set().union(*self.subscriptions.values())) if self.subscriptions else 0


class FeedHub:
    """Every feed of one venue, opened on first use."""

    def __init__(self, venue: MarketStreams):
        self.venue = venue
        self.sessions: dict[str, set[FeedSession]] = {}
        self.feeds: dict[str, MarketFeed] = {}
        self._lock = asyncio.Lock()

    def join(self, feed: str, session: FeedSession) -> bool:
        """Add a session; False when its credential already has the most sessions allowed."""
        sessions = self.sessions.setdefault(feed, set())
        if sum(1 for s in sessions if s.key_id == session.key_id) >= MAX_SESSIONS_PER_CREDENTIAL:
            return False
        sessions.add(session)
        return True

    async def leave(self, feed: str, session: FeedSession) -> None:
        """Remove a session; the last one to leave a feed closes it (no idle upstream connection)."""
        self.sessions.get(feed, set()).discard(session)
        session.subscriptions = {}
        if self.sessions.get(feed):
            await self.resubscribe(feed)
            return
        async with self._lock:
            if self.sessions.get(feed):  # someone joined while we waited: keep the feed
                return
            upstream = self.feeds.pop(feed, None)
        if upstream is not None:
            await upstream.close()

    async def resubscribe(self, feed: str) -> None:
        """Bring the upstream subscription to the union of the sessions' (opening the feed first
        if needed: NotServed and UpstreamUnavailable propagate to the session that asked)."""
        async with self._lock:
            union: dict[str, set[str]] = {}
            for session in self.sessions.get(feed, ()):
                for channel, symbols in session.subscriptions.items():
                    union.setdefault(channel, set()).update(symbols)
            upstream = self.feeds.get(feed)
            if upstream is None:
                if not any(union.values()):
                    return
                upstream = self.feeds[feed] = await self.venue.open_feed(feed, lambda tick: self._fan_out(feed, tick))
            await upstream.update({c: frozenset(s) for c, s in union.items() if s})

    def _fan_out(self, feed: str, tick: MarketTick) -> None:
        for session in list(self.sessions.get(feed, ())):
            if session.wants(tick):
                session.deliver(tick)

    async def close(self) -> None:
        feeds, self.feeds = self.feeds, {}
        for feed in feeds.values():
            try:
                await feed.close()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing a market data feed failed")
