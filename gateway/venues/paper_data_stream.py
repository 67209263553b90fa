"""The paper venue's market data streams: a trade, a quote and the bars for each symbol whose
mark moves (the live walk, ``POST /_paper/prices``, the engine's own price changes).

The paper venue compresses time: every move of a mark is a trade at the new mark and closes a
bar, so a bot subscribed to ``bars`` sees one per move rather than one a minute. The messages
come from the seeded price path (``paper_prices``), the same that serves the historical data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..market import ONE_DAY, ONE_MINUTE
from ..model import utcnow
from ..ports import STREAM_FEEDS, MarketFeed, MarketTick, TickSink
from ..model import classify_symbol


class PaperFeed(MarketFeed):
    """One feed of a paper venue; the venue calls ``marks_moved`` with the symbols that moved."""

    def __init__(self, venue, feed: str, sink: TickSink, on_close):
        self.venue = venue
        self.asset_class = STREAM_FEEDS[feed]
        self.sink = sink
        self.subscriptions: dict[str, frozenset[str]] = {}
        self._on_close = on_close

    async def update(self, subscriptions: Mapping[str, frozenset[str]]) -> None:
        self.subscriptions = dict(subscriptions)

    async def close(self) -> None:
        self.subscriptions = {}
        self._on_close(self)

    def marks_moved(self, symbols: Iterable[str]) -> None:
        marks = self.venue.engine.marks()
        now = utcnow()
        for symbol in symbols:
            if symbol not in marks or classify_symbol(symbol) is not self.asset_class:
                continue
            wanted = [c for c, subs in self.subscriptions.items() if symbol in subs or "*" in subs]
            if not wanted:
                continue
            mark, venue = marks[symbol], self.venue
            items = {
                "trades": lambda: venue.prices.latest_trade(symbol, mark, now, venue._volume(symbol)),
                "quotes": lambda: venue.prices.latest_quote(symbol, mark, now, venue._tick(symbol), venue._volume(symbol)),
                "bars": lambda: venue._bar(symbol, mark, now, ONE_MINUTE),
                "updatedBars": lambda: venue._bar(symbol, mark, now, ONE_MINUTE),
                "dailyBars": lambda: venue._bar(symbol, mark, now, ONE_DAY),
            }
            for channel in wanted:
                self.sink(MarketTick(channel, symbol, items[channel]()))
