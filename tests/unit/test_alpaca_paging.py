"""Listing every open order Alpaca's way (pages of at most 500, bounded by submission time),
against the paper engine's own list, which pages exactly like Alpaca's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from gateway.model import AssetClass, OrderIntent, OrderQuery, OrderType, Side, TimeInForce
from gateway.venues.paper_engine import PaperEngine
from gateway.wire.alpaca import IncompletePage, next_page_query


class Clock:
    def __init__(self):
        self.now = datetime(2025, 1, 6, 15, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


def resting(engine, n: int, clock: Clock, step_us: int) -> list[str]:
    ids = []
    for i in range(n):
        clock.now += timedelta(microseconds=step_us)
        order = engine.submit_order(OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.LIMIT,
                                                TimeInForce.GTC, qty=D(1), limit_price=D(50 + i % 10)))
        ids.append(order.id)
    return ids


PAGE = 50  # Alpaca's cap is 500; a smaller page pages the same way, faster


def list_all(engine, direction: str) -> list[str]:
    query, seen, found = OrderQuery(status="open", limit=PAGE, direction=direction), set(), []
    while query is not None:
        page = engine.list_orders(query)
        found += [o.id for o in page if o.id not in seen]
        query = next_page_query(query, page, seen)
    return found


@pytest.fixture
def clock():
    return Clock()


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_order_is_listed_once_even_when_times_repeat(clock, direction):
    engine = PaperEngine(starting_equity=D(10_000_000), now=clock)
    engine.set_prices({"AAPL": D(100)})
    ids = resting(engine, 140, clock, step_us=1)
    clock.now -= timedelta(microseconds=70)  # 70 more orders reuse times already taken
    ids += resting(engine, 70, clock, step_us=1)
    found = list_all(engine, direction)
    assert sorted(found) == sorted(ids) and len(found) == len(set(found)) == 210


def test_a_full_page_at_one_instant_is_reported_incomplete(clock):
    engine = PaperEngine(starting_equity=D(10_000_000), now=clock)
    engine.set_prices({"AAPL": D(100)})
    resting(engine, PAGE + 1, clock, step_us=0)
    with pytest.raises(IncompletePage, match=f"more than {PAGE} orders share"):
        list_all(engine, "asc")
